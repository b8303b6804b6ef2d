"""Up-front check of the training videos: can each be opened, and does its frame count match
the index? Run once before training, cached per index split, so that too many broken files
stop a run before its first step instead of in the middle of an epoch.

Only the container is opened (header and frame index, no frames decoded), in a thread pool.
The cache (``<root>/index/.probe/<split>.json``, or under ``~/.cache/mvf_lightning/probe``
when the dataset folder is read-only) keeps one entry per file, reused while the file's size
and modification time are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..utils.atomic import atomic_path
from .decode import VideoDecodeError, VideoFile
from .index import INDEX_DIRNAME, VideoIndex

__all__ = ["ProbeReport", "probe_cache_dir", "probe_training_videos", "warn_frame_mismatches"]

CACHE_VERSION = 1
PROGRESS_MIN_VIDEOS = 200
"""Sets at least this large show a progress bar while they are checked."""
MAX_WARNED_MISMATCHES = 10


@dataclass
class ProbeReport:
    """What the check found: unreadable files (path -> reason) and frame-count mismatches
    ``(video id, listed, decodable)``; ``num_videos`` checked; where the cache lives."""

    num_videos: int
    broken: dict[str, str] = field(default_factory=dict)
    mismatched: list[tuple[str, int, int]] = field(default_factory=list)
    cache_dir: Path | None = None


def probe_cache_dir(root: str | os.PathLike) -> Path:
    """``<root>/index/.probe`` if it can be written, else a per-root folder in the user cache."""
    local = Path(root) / INDEX_DIRNAME / ".probe"
    try:
        local.mkdir(parents=True, exist_ok=True)
        if os.access(local, os.W_OK):
            return local
    except OSError:
        pass
    key = hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()[:12]
    cache_home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    fallback = cache_home / "mvf_lightning" / "probe" / key
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def _stamp(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [int(st.st_size), int(st.st_mtime_ns)]


def _probe_one(path: str) -> dict:
    """``{"stamp", "num_frames", "error"}`` of one file (``error`` None when readable)."""
    stamp = _stamp(path)
    try:
        frames = len(VideoFile(path))
        if frames < 1:
            raise VideoDecodeError(path, "video has no frames")
        return {"stamp": stamp, "num_frames": frames, "error": None}
    except VideoDecodeError as e:
        return {"stamp": stamp, "num_frames": 0, "error": e.reason}


def _load_cache(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    entries = data.get("videos")
    return entries if isinstance(entries, dict) else {}


def probe_training_videos(
    index: VideoIndex, num_threads: int = 4, cache_dir: Path | None = None
) -> ProbeReport:
    """Open every video of ``index`` once (cached), listing unreadable files and videos whose
    decodable frame count differs from the index's ``num_frames`` (when that is known)."""
    cache_file = None if cache_dir is None else Path(cache_dir) / f"{index.split}.json"
    cached = {} if cache_file is None else _load_cache(cache_file)
    paths = [str(index.video_path(v)) for v in index]
    todo = []
    for p in dict.fromkeys(paths):
        stamp = _stamp(p)
        if stamp is None or cached.get(p, {}).get("stamp") != stamp:
            todo.append(p)
    if todo:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(todo),
            desc=f"checking {index.dataset}/{index.split} training videos",
            unit="video",
            disable=len(todo) < PROGRESS_MIN_VIDEOS,
        )
        with ThreadPoolExecutor(max(1, int(num_threads))) as pool:
            for p, entry in zip(todo, pool.map(_probe_one, todo)):
                cached[p] = entry
                bar.update()
        bar.close()
        if cache_file is not None:
            try:
                with atomic_path(cache_file) as tmp:
                    tmp.write_text(json.dumps({"version": CACHE_VERSION, "videos": cached}))
            except OSError as e:
                warnings.warn(f"could not write the video check cache {cache_file}: {e}",
                              stacklevel=2)
    report = ProbeReport(num_videos=len(index), cache_dir=cache_file and cache_file.parent)
    for video, p in zip(index, paths):
        entry = cached[p]
        if entry["error"] is not None:
            report.broken[p] = str(entry["error"])
        elif video.num_frames > 0 and entry["num_frames"] != video.num_frames:
            report.mismatched.append((video.id, video.num_frames, int(entry["num_frames"])))
    return report


def warn_frame_mismatches(report: ProbeReport, where: str) -> None:
    """One warning line per video whose file and index disagree on the frame count (the first
    few, then a count), saying what training does about it."""
    for vid, listed, found in report.mismatched[:MAX_WARNED_MISMATCHES]:
        warnings.warn(
            f"{where}: video {vid!r}: the index lists {listed} frames, the file has {found}; "
            f"training resamples the longer to the shorter ({min(listed, found)} frames, "
            "CARL's rule)",
            stacklevel=2,
        )
    extra = len(report.mismatched) - MAX_WARNED_MISMATCHES
    if extra > 0:
        warnings.warn(f"{where}: {extra} more videos whose frame count differs from the index",
                      stacklevel=2)
