"""Probing videos without decoding them all: is a file readable, how many frames has it?

:func:`probe` never raises for one bad file (it returns the reason) and :class:`ProbeCache`
keeps results across runs, keyed by path, size and modification time; the dataset converters
(``prepare``) and the training-video check use both. :func:`check_training_videos` opens
every training video once before training (cached), so that too many broken files stop a run
before its first step instead of in the middle of an epoch, and frame counts that disagree
with the index are reported.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .decode import VideoDecodeError, VideoInfo, probe_video
from .index import INDEX_DIRNAME, VideoIndex

__all__ = [
    "ProbeCache",
    "ProbeReport",
    "check_training_videos",
    "probe",
    "probe_cache_dir",
    "warn_frame_mismatches",
]

PROGRESS_MIN_VIDEOS = 200
"""Checks of at least this many files show a progress bar."""
MAX_WARNED_MISMATCHES = 10


def probe(path: str | os.PathLike) -> VideoInfo | str:
    """``VideoInfo`` of a readable video, else a short reason (``"missing"``, decode error)."""
    path = Path(path)
    if not path.is_file():
        return "missing"
    try:
        info = probe_video(path)
    except VideoDecodeError as e:
        return f"undecodable: {e.reason}"
    except Exception as e:  # a decoder bug on one file must not stop a conversion
        return f"undecodable: {type(e).__name__}: {e}"
    if info.num_frames <= 0:
        return "empty: no frames"
    return info




class ProbeCache:
    """Append-only JSON-lines cache of probe results, so a restarted scan skips probed files.

    Keyed by absolute path, file size and modification time: a replaced file is probed
    again. A truncated last line (the run was killed mid-write) is ignored.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[str, dict] = {}
        self._lock = threading.Lock()
        if path.is_file():
            with open(path) as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                        self._entries[entry["key"]] = entry
                    except (json.JSONDecodeError, KeyError, TypeError):
                        continue
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a")  # noqa: SIM115 - kept open for the scan, closed in close()

    @staticmethod
    def key(path: Path) -> str | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"

    def get(self, path: Path) -> VideoInfo | str | None:
        """The cached result for ``path`` (VideoInfo or failure reason), None if not cached."""
        key = self.key(path)
        entry = self._entries.get(key) if key else None
        if entry is None:
            return None
        if "error" in entry:
            return entry["error"]
        return VideoInfo(**entry["info"])

    def put(self, path: Path, result: VideoInfo | str) -> None:
        key = self.key(path)
        if key is None:  # missing files are not cached: they may appear later
            return
        entry = {"key": key}
        if isinstance(result, str):
            entry["error"] = result
        else:
            entry["info"] = asdict(result)
        with self._lock:
            self._entries[key] = entry
            self._file.write(json.dumps(entry) + "\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ProbeCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class ProbeReport:
    """What the check found: unreadable files (path -> reason) and frame-count mismatches
    ``(video id, listed, decodable)`` among ``num_videos``."""

    num_videos: int
    broken: dict[str, str] = field(default_factory=dict)
    mismatched: list[tuple[str, int, int]] = field(default_factory=list)


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


def check_training_videos(
    index: VideoIndex, cache_path: Path, num_threads: int = 4
) -> ProbeReport:
    """Probe every video of ``index`` (results cached in ``cache_path``), listing unreadable
    files and videos whose frame count differs from the index's ``num_frames`` (if known)."""
    from tqdm.auto import tqdm

    paths = [index.video_path(v) for v in index]
    with ProbeCache(cache_path) as cache:
        results = {p: cache.get(p) for p in dict.fromkeys(paths)}
        todo = [p for p, r in results.items() if r is None]
        bar = tqdm(
            total=len(todo),
            desc=f"checking {index.dataset}/{index.split} training videos",
            unit="video",
            disable=len(todo) < PROGRESS_MIN_VIDEOS,
        )
        with ThreadPoolExecutor(max(1, int(num_threads))) as pool:
            for p, result in zip(todo, pool.map(probe, todo)):
                cache.put(p, result)
                results[p] = result
                bar.update()
        bar.close()
    report = ProbeReport(num_videos=len(index))
    for video, p in zip(index, paths):
        result = results[p]
        if isinstance(result, str):
            report.broken[str(p)] = result
        elif video.num_frames > 0 and result.num_frames != video.num_frames:
            report.mismatched.append((video.id, video.num_frames, result.num_frames))
    return report


def warn_frame_mismatches(report: ProbeReport, where: str) -> None:
    """One warning line per video whose file and index disagree on the frame count (the first
    few, then a count), saying what training does about it."""
    for vid, listed, found in report.mismatched[:MAX_WARNED_MISMATCHES]:
        warnings.warn(
            f"{where}: video {vid!r}: the index lists {listed} frames, the file has {found}; "
            f"training uses {min(listed, found)} (CARL's rule: the longer is resampled to the "
            "shorter)",
            stacklevel=2,
        )
    extra = len(report.mismatched) - MAX_WARNED_MISMATCHES
    if extra > 0:
        warnings.warn(
            f"{where}: {extra} more videos whose frame count differs from the index",
            stacklevel=2,
        )
