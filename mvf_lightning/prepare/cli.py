"""``python -m mvf_lightning prepare <dataset> ...``: the converters as subcommands.

Every converter writes ``<out>/index/<split>.json`` (video paths relative to ``<out>``),
mp4 files under ``<out>/videos/`` where the source has none, and a JSON report under
``<out>/reports/``. Runs are restartable: finished videos are reused, indexes are written
at the end, and an existing index is only replaced with ``--overwrite``.

The subcommands are the converter modules of this package (each defines ``CONVERTER``,
:class:`~mvf_lightning.prepare.common.Converter`), plus ``check``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mvf_lightning.errors import MVFError
from mvf_lightning.prepare.common import PrepareError, converters, default_workers


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True,
                   help="dataset root to write (index/, videos/)")
    p.add_argument("--workers", type=int, default=default_workers(),
                   help="parallel worker processes (default: all cores)")
    p.add_argument("--overwrite", action="store_true", help="replace existing index files")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mvf_lightning prepare",
        description="Convert public or CARL releases into mvf_lightning's JSON index.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="<dataset>")
    for converter in converters().values():
        p = sub.add_parser(converter.name, help=converter.help,
                           description=converter.description or converter.help)
        converter.add_arguments(p)
        _common(p)
    p = sub.add_parser("check", help="verify an index against its video files")
    p.add_argument("root", type=Path, help="dataset root (holding index/)")
    p.add_argument("--split", default=None, help="check only this split (default: all)")
    p.add_argument("--full", action="store_true", help="decode every frame (slow, thorough)")
    p.add_argument("--workers", type=int, default=default_workers())
    return parser


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "workers", 1) < 1:
        raise PrepareError(f"--workers must be >= 1, got {args.workers}")
    if args.command == "check":
        from mvf_lightning.prepare.check import check

        return check(args.root, args.split, args.workers, args.full)
    report = converters()[args.command].run(args)
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
