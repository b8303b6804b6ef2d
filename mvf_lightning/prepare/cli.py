"""``python -m mvf_lightning prepare <dataset> ...``: argument parsing for the converters.

Every converter writes ``<out>/index/<split>.json`` (video paths relative to ``<out>``),
mp4 files under ``<out>/videos/`` where the source has none, and a JSON report under
``<out>/reports/``. Runs are restartable: finished videos are reused, indexes are written
at the end, and an existing index is only replaced with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mvf_lightning.errors import MVFError
from mvf_lightning.prepare.common import PrepareError, default_workers

CODECS = ("libx264", "mpeg4")


def _common(p: argparse.ArgumentParser, out_required: bool = True) -> None:
    p.add_argument(
        "--out", type=Path, required=out_required, help="dataset root to write (index/, videos/)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="parallel worker processes (default: all cores)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing index files")


def _trust(p: argparse.ArgumentParser) -> None:
    from mvf_lightning.prepare.safe_pickle import TRUST_HELP

    p.add_argument("--trust-pickle", action="store_true", help=TRUST_HELP)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mvf_lightning prepare",
        description="Convert public or CARL releases into mvf_lightning's JSON index.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="<dataset>")

    p = sub.add_parser(
        "penn-action",
        help="Penn Action (public frames + phase labels, or CARL's train.pkl/val.pkl)",
        description="Public release: --source Penn_Action --labels penn_action_labels. "
        "CARL release: --carl <dir with train.pkl, val.pkl> --trust-pickle. Videos are "
        "encoded at 30 fps (Penn Action's rate).",
    )
    p.add_argument("--source", type=Path, help="Penn_Action folder (frames/, labels/)")
    p.add_argument("--labels", type=Path, help="penn_action_labels folder ({train,val}/<action>/)")
    p.add_argument("--carl", type=Path, help="CARL's penn_action folder with train.pkl, val.pkl")
    p.add_argument(
        "--size",
        type=int,
        default=None,
        help="resize frames to SIZExSIZE ignoring aspect (CARL: 224); default: keep",
    )
    p.add_argument("--codec", choices=CODECS, default="libx264")
    _trust(p)
    _common(p)

    p = sub.add_parser(
        "finegym",
        help="FineGym v1.0 (raw videos + annotations, or CARL's pickles)",
        description="Cuts one clip per labelled event, CARL's way (640x360, 25 fps).",
    )
    p.add_argument("--annotations", type=Path, help="finegym_annotation_info_v1.0.json")
    p.add_argument("--splits-dir", type=Path, help="folder with the gym99/gym288 element txt files")
    p.add_argument("--videos", type=Path, help="raw videos <youtube_id>.mp4|.mkv|.webm")
    p.add_argument("--carl", type=Path, help="CARL's folder with gym99_train_v1.0.pkl etc.")
    p.add_argument("--variant", choices=("gym99", "gym288", "both"), default="both")
    p.add_argument("--size", default="640x360", help="output WIDTHxHEIGHT (default 640x360)")
    p.add_argument("--fps", type=float, default=25.0, help="output frame rate (default 25)")
    p.add_argument("--codec", choices=CODECS, default="libx264")
    _trust(p)
    _common(p)

    p = sub.add_parser("kinetics400", help="Kinetics-400 clips, unlabeled, referenced in place")
    p.add_argument(
        "--source",
        type=Path,
        required=True,
        help="root with annotations/<split>.csv and <split>/<clip>.mp4",
    )
    p.add_argument("--splits", nargs="+", default=["train", "val"])
    _common(p)

    p = sub.add_parser("pouring", help="Pouring from CARL's train/val/test.pkl")
    p.add_argument(
        "--carl", type=Path, required=True, help="folder with train.pkl, val.pkl, test.pkl"
    )
    _trust(p)
    _common(p)

    p = sub.add_parser("check", help="verify an index against its video files")
    p.add_argument("root", type=Path, help="dataset root (holding index/)")
    p.add_argument("--split", default=None, help="check only this split (default: all)")
    p.add_argument("--full", action="store_true", help="decode every frame (slow, thorough)")
    p.add_argument("--workers", type=int, default=default_workers())
    return parser


def _need(args: argparse.Namespace, names: list[str], mode: str) -> None:
    missing = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) is None]
    if missing:
        raise PrepareError(f"{args.command} {mode} needs {', '.join(missing)}")


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "workers", 1) < 1:
        raise PrepareError(f"--workers must be >= 1, got {args.workers}")
    if args.command == "check":
        from mvf_lightning.prepare.check import check

        return check(args.root, args.split, args.workers, args.full)
    if args.command == "penn-action":
        from mvf_lightning.prepare import penn_action

        if args.carl is not None:
            if args.source or args.labels:
                raise PrepareError("penn-action: give either --carl or --source/--labels, not both")
            report = penn_action.convert_carl(
                args.carl, args.out, args.trust_pickle, args.workers, args.overwrite
            )
        else:
            _need(args, ["source", "labels"], "(public release)")
            report = penn_action.convert_public(
                args.source,
                args.labels,
                args.out,
                args.size,
                args.workers,
                args.overwrite,
                codec=args.codec,
            )
    elif args.command == "finegym":
        from mvf_lightning.prepare import finegym

        if args.carl is not None:
            if args.annotations or args.splits_dir or args.videos:
                raise PrepareError(
                    "finegym: give either --carl or --annotations/--splits-dir/--videos, not both"
                )
            report = finegym.convert_carl(
                args.carl, args.out, args.variant, args.trust_pickle, args.workers, args.overwrite
            )
        else:
            _need(args, ["annotations", "splits_dir", "videos"], "(raw videos)")
            report = finegym.convert_raw(
                args.annotations,
                args.splits_dir,
                args.videos,
                args.out,
                args.variant,
                args.workers,
                args.overwrite,
                size_wh=finegym.parse_size(args.size),
                fps=args.fps,
                codec=args.codec,
            )
    elif args.command == "kinetics400":
        from mvf_lightning.prepare import kinetics400

        report = kinetics400.convert(
            args.source, args.out, args.splits, args.workers, args.overwrite
        )
    elif args.command == "pouring":
        from mvf_lightning.prepare import pouring

        report = pouring.convert_carl(
            args.carl, args.out, args.trust_pickle, args.workers, args.overwrite
        )
    else:  # pragma: no cover - argparse only accepts the commands above
        raise PrepareError(f"unknown command {args.command!r}")
    videos = ", ".join(f"{split}: {n}" for split, n in report.get("videos", {}).items())
    print(
        f"{args.command}: wrote {args.out / 'index'} ({videos} videos); see {args.out / 'reports'}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mvf_lightning prepare``; returns the process exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help or a usage error: argparse already printed why
        return int(e.code or 0)
    try:
        return _run(args)
    except (MVFError, OSError) as e:  # MVFError: a user's mistake; OSError: unwritable out etc.
        print(f"mvf_lightning prepare {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
