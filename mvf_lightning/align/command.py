"""``python -m mvf_lightning align``: frame-by-frame alignment of videos with a trained model.

Every other video is aligned to the query (nearest neighbour or monotonic DTW over the
distances of the frame embeddings); ``DIR`` receives ``alignment.json``, ``similarity.png``,
``aligned.mp4`` and, with query phase labels, ``phases_<name>.npy`` per other video.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError, ExistingFileError, MissingFileError
from .matching import METHODS, Match, match_frames, pairwise_distances, transfer_labels

__all__ = ["FORMAT", "main", "run_align"]

FORMAT = "mvf_lightning.alignment"
VERSION = 1
OUTPUTS = ("alignment.json", "similarity.png", "aligned.mp4")


@dataclass
class _Video:
    path: Path
    name: str
    info: Any  # VideoInfo
    identity: dict
    phases: np.ndarray | None = None
    embeddings: np.ndarray | None = None


def _say(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def _names(paths: list[Path]) -> list[str]:
    """File stems, made unique (``clip``, ``clip_2``, ...)."""
    names, seen = [], {}
    for p in paths:
        stem = p.stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


def _labels(path: str | None, num_frames: int, what: str) -> np.ndarray | None:
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"{what}: labels file not found: {p}")
    try:
        labels = np.load(p, allow_pickle=False)
    except ValueError as e:
        raise DataError(f"{p}: not a numpy .npy array of labels ({e})") from e
    labels = np.asarray(labels).reshape(-1)
    if labels.dtype.kind not in "iu" or len(labels) != num_frames:
        raise DataError(
            f"{p}: expected {num_frames} integer phase labels (one per frame of {what}), got "
            f"{labels.dtype} with {len(labels)} entries"
        )
    return labels.astype(np.int64)


def _check_out(out: Path, inputs: dict, overwrite: bool) -> None:
    """Refuse a folder that holds another alignment; the same inputs are simply redone.
    Only the keys of ``inputs`` are compared (the model is known only once it is loaded)."""
    if out.exists() and not out.is_dir():
        raise ExistingFileError(f"{out}: exists and is not a folder")
    existing = out / "alignment.json"
    if overwrite:
        return
    if not existing.is_file():
        # No alignment of ours: files with our output names are someone else's.
        taken = [p.name for p in sorted(out.glob("*")) if p.name in OUTPUTS
                 or p.name.startswith("phases_") and p.suffix == ".npy"] if out.is_dir() else []
        if taken:
            raise ExistingFileError(
                f"{out}: already holds {', '.join(taken)} (not written by an alignment: no "
                "alignment.json); choose another --out or pass --overwrite"
            )
        return
    try:
        old = json.loads(existing.read_text()).get("inputs")
        old = {k: old.get(k) for k in inputs}
    except (ValueError, AttributeError):
        old = None
    if old != inputs:
        raise ExistingFileError(
            f"{out}: holds another alignment (alignment.json with other inputs); choose another "
            "--out or pass --overwrite"
        )


def run_align(
    query: str,
    others: list[str],
    out: str,
    ckpt: str | None = None,
    config: str | None = None,
    method: str = "dtw",
    window: int | None = None,
    positions: str = "fixed",
    phases: str | None = None,
    other_phases: list[str] | None = None,
    phase_names: list[str] | None = None,
    device: str | None = None,
    bf16: bool = False,
    cache_dir: str | None = None,
    overwrite: bool = False,
    video: bool = True,
    quiet: bool = False,
) -> dict:
    """Align ``others`` to ``query`` and write the results into ``out``; returns the JSON."""
    import torch

    from ..data.decode import probe_video
    from ..models.temporal_encoder import POSITION_MODES, position_mode
    from ..utils.atomic import atomic_path
    from ..visualization import similarity_matrix_image
    from .embed import decode_for_model, embed_frames, feature_cache
    from .model import file_identity, load_model

    if method not in METHODS:
        raise ConfigError(f"--method must be one of {METHODS}, got {method!r}")
    if positions not in POSITION_MODES:
        raise ConfigError(f"--positions must be one of {POSITION_MODES}, got {positions!r}")
    if not others:
        raise ConfigError("align needs a query video and at least one other video")
    if other_phases and len(other_phases) != len(others):
        raise ConfigError(
            f"--other-phases: {len(other_phases)} files for {len(others)} other videos"
        )
    out_dir = Path(out).expanduser()
    paths = [Path(p).expanduser() for p in (query, *others)]
    videos = []
    for path, name in zip(paths, _names(paths)):
        info = probe_video(path)  # an unreadable video fails here, before the model loads
        if info.num_frames < 1:
            from ..data.decode import VideoDecodeError

            raise VideoDecodeError(path, "no frames")
        videos.append(_Video(path, name, info, file_identity(path)))
    q, rest = videos[0], videos[1:]
    q.phases = _labels(phases, q.info.num_frames, f"the query {q.path}")
    for v, lab in zip(rest, other_phases or [None] * len(rest)):
        v.phases = _labels(lab, v.info.num_frames, str(v.path))
    inputs = {
        "videos": [v.identity for v in videos],
        "method": method,
        "window": window,
        "positions": positions,
    }
    _check_out(out_dir, inputs, overwrite)

    t0 = time.time()
    module, prep, model_identity = load_model(ckpt, config)
    inputs["model"] = model_identity
    _check_out(out_dir, inputs, overwrite)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if bf16 and dev.type != "cuda":
        _say("--bf16 applies on a GPU only: embedding in float32", quiet)
    module.to(dev)
    cache = feature_cache(module, prep, cache_dir)
    _say(f"model ready on {dev} ({time.time() - t0:.1f} s)", quiet)
    for v in videos:
        t = time.time()
        frames = decode_for_model(v.path, prep, progress=not quiet)
        key = f"{v.identity['sha256']}|{len(frames)}"
        hits = module.cached_backbone.stats().get("hits", 0)
        with position_mode(module.model, positions):
            v.embeddings = embed_frames(module, frames, dev, bf16, cache, key)
        cached = module.cached_backbone.stats().get("hits", 0) > hits
        _say(
            f"embedded {v.path.name}: {len(frames)} frames in {time.time() - t:.1f} s"
            + (" (cached backbone features)" if cached else ""),
            quiet,
        )
    del module

    out_dir.mkdir(parents=True, exist_ok=True)
    results, images, matches = [], [], []
    for v in rest:
        dist = pairwise_distances(q.embeddings, v.embeddings)
        match = match_frames(dist, method, window)
        matches.append(match)
        entry = {
            "name": v.name,
            **v.identity,
            "num_frames": v.info.num_frames,
            "fps": v.info.fps,
            "matched_frame": match.index.tolist(),
            "distance": [round(float(d), 6) for d in match.distance],
            "mean_distance": float(match.distance.mean()),
            "dtw_cost": match.total,
        }
        if q.phases is not None:
            transferred = transfer_labels(q.phases, match, v.info.num_frames)
            phase_file = out_dir / f"phases_{v.name}.npy"
            with atomic_path(phase_file, suffix=".npy") as tmp:
                np.save(tmp, transferred)
            entry["phases_file"] = phase_file.name
            if v.phases is not None:
                known = v.phases >= 0
                entry["phase_accuracy"] = (
                    float((transferred[known] == v.phases[known]).mean()) if known.any() else None
                )
                _say(f"{v.name}: phase transfer accuracy {entry['phase_accuracy']:.3f}", quiet)
        results.append(entry)
        images.append(similarity_matrix_image(
            dist,
            row_name=q.name,
            col_name=v.name,
            value_name="embedding distance",
            higher_is_closer=False,
            row_phases=q.phases,
            col_phases=v.phases,
            path=match.path,
            path_name="DTW path" if method == "dtw" else "nearest neighbour",
        ))
    from PIL import Image

    with atomic_path(out_dir / "similarity.png", suffix=".png") as tmp:
        Image.fromarray(np.concatenate(images, axis=1)).save(tmp, format="PNG")
    if video:
        _write_video(out_dir / "aligned.mp4", q, rest, matches, phase_names, quiet)
    record = {
        "format": FORMAT,
        "version": VERSION,
        "inputs": inputs,
        "method": method,
        "window": window,
        "positions": positions,
        "distance": "euclidean distance of L2-normalised frame embeddings",
        "preprocessing": prep.as_dict(),
        "query": {"name": q.name, **q.identity, "num_frames": q.info.num_frames,
                  "fps": q.info.fps},
        "videos": results,
        "files": {"similarity": "similarity.png", "video": "aligned.mp4" if video else None},
    }
    with atomic_path(out_dir / "alignment.json", suffix=".json") as tmp:
        tmp.write_text(json.dumps(record, indent=1))
    _say(f"wrote {out_dir}/alignment.json, similarity.png" + (", aligned.mp4" if video else ""),
         quiet)
    return record


def _write_video(path: Path, q: _Video, rest: list[_Video], matches: list[Match],
                 phase_names: list[str] | None, quiet: bool) -> None:
    """Query and aligned videos side by side, one output frame per query frame."""
    from ..data.decode import VideoFile
    from ..data.video_writer import write_video
    from ..visualization import AlignmentCanvas, Track
    from .embed import CHUNK, _progress

    tracks = [Track(v.name, v.info.num_frames, (v.info.height, v.info.width), v.phases)
              for v in (q, *rest)]
    canvas = AlignmentCanvas(tracks, phase_names)
    readers = [VideoFile(v.path, size) for v, size in zip((q, *rest), canvas.sizes)]
    n = q.info.num_frames
    indices = np.stack([np.arange(n), *(m.index for m in matches)])

    def frames():
        starts = range(0, n, CHUNK)
        for start in _progress(starts, len(starts), "render aligned.mp4", not quiet):
            step = indices[:, start:start + CHUNK]
            chunk = [r.read(i) for r, i in zip(readers, step)]
            for t in range(step.shape[1]):
                yield canvas.draw([c[t] for c in chunk], step[:, t])

    write_video(path, frames(), fps=q.info.fps or 25.0, codec="libx264")


def build_parser() -> argparse.ArgumentParser:
    from ..models.temporal_encoder import POSITION_MODES

    p = argparse.ArgumentParser(
        prog="python -m mvf_lightning align",
        description="Align videos frame by frame to a query video with a trained model; "
        "writes alignment.json, similarity.png and aligned.mp4 into --out.",
    )
    p.add_argument("query", help="the query video")
    p.add_argument("others", nargs="+", metavar="other", help="videos to align to the query")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--ckpt", help="mvf_lightning checkpoint (model and preprocessing)")
    p.add_argument("--config", help="training config: build the model (and its pretrained "
                   "backbone) and the preprocessing from it; with --ckpt, load its weights")
    p.add_argument("--method", choices=METHODS, default="dtw",
                   help="dtw: monotonic dynamic time warping (default); nn: nearest neighbour")
    p.add_argument("--window", type=int, default=None,
                   help="DTW Sakoe-Chiba band half-width in frames (long videos)")
    p.add_argument("--positions", choices=POSITION_MODES, default="fixed",
                   help="fixed (default): every frame at one temporal position, so content "
                   "alone matches frames and videos may differ in pace; spread: evaluation's "
                   "positions, the embeddings then also encode each frame's relative time")
    p.add_argument("--phases", help="query phase labels (.npy, one int per frame): transfer "
                   "them to every other video (phases_<name>.npy)")
    p.add_argument("--other-phases", nargs="+", metavar="LABELS",
                   help="true labels of the other videos, in order: report transfer accuracy")
    p.add_argument("--phase-names", help="comma-separated phase names for the video")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast on GPU")
    p.add_argument("--cache-dir", default=str(Path.home() / ".cache/mvf_lightning/features"),
                   help="backbone feature cache folder (reused when a video is aligned again)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    p.add_argument("--no-video", action="store_true", help="skip aligned.mp4")
    p.add_argument("--overwrite", action="store_true",
                   help="replace another alignment in --out")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    record = run_align(
        args.query,
        args.others,
        args.out,
        ckpt=args.ckpt,
        config=args.config,
        method=args.method,
        window=args.window,
        positions=args.positions,
        phases=args.phases,
        other_phases=args.other_phases,
        phase_names=args.phase_names.split(",") if args.phase_names else None,
        device=args.device,
        bf16=args.bf16,
        cache_dir=None if args.no_cache else args.cache_dir,
        overwrite=args.overwrite,
        video=not args.no_video,
        quiet=args.quiet,
    )
    if not args.quiet:
        for v in record["videos"]:
            print(f"{v['name']}: mean distance {v['mean_distance']:.4f}"
                  + (f", phase accuracy {v['phase_accuracy']:.3f}"
                     if v.get("phase_accuracy") is not None else ""))
    return 0
