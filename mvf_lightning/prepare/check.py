"""``prepare check``: verify that an index matches the videos it points at.

For every video of ``<root>/index/<split>.json``: the file exists, it decodes, its decoded
frame count equals ``num_frames`` (which the labels already cover, see
:mod:`mvf_lightning.data.index`), and it is not empty. By default the frame count is
decord's (container index, first frame decoded); ``--full`` decodes every frame with PyAV,
which also catches files that are damaged in the middle. Prints a summary per split and
every problem with the file it concerns; returns 1 when there is any problem.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from mvf_lightning.data.index import INDEX_DIRNAME, DatasetIndexError, VideoIndex, index_path
from mvf_lightning.prepare.common import PrepareError, parallel_map
from mvf_lightning.prepare.media import probe

MAX_PRINTED = 100


def count_decoded_frames(path: str) -> int | str:
    """Decode every frame of ``path`` with PyAV; the count, or the reason decoding failed."""
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                return "undecodable: no video stream"
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            return sum(1 for _ in container.decode(stream))
    except Exception as e:
        return f"undecodable: {type(e).__name__}: {e}"


def _check_video(task: tuple[str, int, bool]) -> dict:
    path, expected, full = task
    info = probe(path)
    if isinstance(info, str):
        kind = info.split(":")[0]
        return {"kind": kind, "message": info}
    decoded = count_decoded_frames(path) if full else info.num_frames
    if isinstance(decoded, str):
        return {"kind": "undecodable", "message": decoded}
    if decoded == 0:
        return {"kind": "empty", "message": "video has no frames"}
    if decoded != expected:
        return {
            "kind": "frame_count_mismatch",
            "message": f"index says num_frames={expected} (labels cover that many), "
            f"the file decodes to {decoded} frames",
        }
    return {"kind": "ok", "fps": info.fps}


def _index_files(root: Path, split: str | None) -> list[Path]:
    if not root.is_dir():
        raise PrepareError(f"dataset root not found: {root}")
    if split is not None:
        path = index_path(root, split)
        if not path.is_file():
            raise PrepareError(f"index not found: {path}")
        return [path]
    files = sorted((root / INDEX_DIRNAME).glob("*.json"))
    if not files:
        raise PrepareError(f"no index files in {root / INDEX_DIRNAME}; run a prepare converter")
    return files


def check(root: Path, split: str | None = None, workers: int = 1, full: bool = False) -> int:
    """Check every index under ``root`` (or just ``split``); 0 when all is well, else 1."""
    problems: list[str] = []
    lines: list[str] = []
    for file in _index_files(root, split):
        try:
            idx = VideoIndex.load(file, root=root)
        except (DatasetIndexError, OSError) as e:
            problems.append(f"{file}: {e}")
            lines.append(f"{file.stem}: unreadable index")
            continue
        tasks = [(str(idx.video_path(v)), v.num_frames, full) for v in idx]
        results = list(
            parallel_map(_check_video, tasks, workers, f"check {idx.split}", chunksize=8)
        )
        bad = 0
        for v, (path, _, _), res in zip(idx, tasks, results):
            if v.num_frames == 0:
                problems.append(f"{idx.split}: video {v.id!r} ({path}): empty (num_frames=0)")
                bad += 1
            elif res["kind"] != "ok":
                problems.append(f"{idx.split}: video {v.id!r} ({path}): {res['message']}")
                bad += 1
        total = sum(v.num_frames for v in idx)
        labelled = [v for v in idx if v.label_runs is not None]
        lab_frames = sum(int(np.sum(v.labels >= 0)) for v in labelled)
        share = f"{lab_frames / total:.1%}" if total else "n/a"
        lines.append(
            f"{idx.split}: {len(idx)} videos, {total} frames, {len(idx.groups)} groups, "
            f"{len(labelled)} labelled videos, labelled frames {share}, {bad} problems"
        )
    print(f"index check of {root} ({'full decode' if full else 'probe'}):")
    for line in lines:
        print(f"  {line}")
    if problems:
        print(f"{len(problems)} problem(s):", file=sys.stderr)
        for p in problems[:MAX_PRINTED]:
            print(f"  {p}", file=sys.stderr)
        if len(problems) > MAX_PRINTED:
            print(f"  ... and {len(problems) - MAX_PRINTED} more", file=sys.stderr)
        return 1
    print("no problems found")
    return 0
