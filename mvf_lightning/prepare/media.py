"""Video facts the converters need: probing with a restart cache, and reusing finished outputs.

Decoding itself lives in :mod:`mvf_lightning.data.decode` (decord) and writing in
:mod:`mvf_lightning.data.video_writer` (PyAV); this module only wraps them in the
"never raise for one bad file" form a converter over thousands of files needs.
"""

from __future__ import annotations

from pathlib import Path

from mvf_lightning.data.decode import VideoInfo
from mvf_lightning.data.probe import ProbeCache, probe

__all__ = ["ProbeCache", "probe", "reusable_output"]


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
