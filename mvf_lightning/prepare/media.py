"""Video facts the converters need: probing with a restart cache, and reusing finished outputs.

Decoding itself lives in :mod:`mvf_lightning.data.decode` (decord) and writing in
:mod:`mvf_lightning.data.video_writer` (PyAV); this module only wraps them in the
"never raise for one bad file" form a converter over thousands of files needs.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict
from pathlib import Path

from mvf_lightning.data.decode import VideoDecodeError, VideoInfo, probe_video


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


def reusable_output(
    path: Path,
    num_frames: int | None = None,
    size_hw: tuple[int, int] | None = None,
    fps: float | None = None,
) -> VideoInfo | None:
    """The probe of an mp4 a previous run wrote, if it is complete and as expected, else None.

    Outputs are written atomically, so an existing file is finished; probing guards against
    files from a different run (other size, frame count or rate), which are then redone.
    """
    if not path.is_file():
        return None
    info = probe(path)
    if isinstance(info, str):
        return None
    if num_frames is not None and info.num_frames != num_frames:
        return None
    if size_hw is not None and (info.height, info.width) != tuple(size_hw):
        return None
    if fps is not None and abs(info.fps - fps) > 0.01:
        return None
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
