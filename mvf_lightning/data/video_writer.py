"""Write uint8 RGB frames to an mp4 file with PyAV, atomically.

Used by the demo dataset and the ``prepare`` converters. The file appears under its
final name only once it is complete (temp file in the same folder, then rename), so an
interrupted run or a parallel reader never sees half a video.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..utils.atomic import atomic_path

__all__ = ["CODECS", "write_video"]

CODECS = ("libx264", "mpeg4")
"""The encoders ``write_video`` accepts."""


def _check_frame(frame: np.ndarray, i: int, path: Path, shape: tuple[int, ...] | None):
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(
            f"write_video({path}): frame {i} must be uint8 [H, W, 3], "
            f"got {frame.dtype} {list(frame.shape)}"
        )
    if shape is not None and frame.shape != shape:
        raise ValueError(
            f"write_video({path}): frame {i} has shape {list(frame.shape)}, "
            f"earlier frames {list(shape)}"
        )
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(
            f"write_video({path}): frame size {h}x{w} must be even for yuv420p; "
            "resize or crop to even height and width first"
        )


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float,
    codec: str = "libx264",
    *,
    crf: int | None = None,
    bit_rate: int | None = None,
) -> Path:
    """Encode ``frames`` (uint8 ``[N, H, W, 3]`` RGB, or an iterable of ``[H, W, 3]``) to ``path``.

    ``codec`` is ``"libx264"`` (H.264, small files) or ``"mpeg4"`` (MPEG-4 Part 2, ~10x
    faster to encode). ``crf`` sets H.264 quality (default: the encoder's, 23);
    ``bit_rate`` (bits/s) applies to mpeg4 (default: generous, ~0.25 bit per pixel).
    Returns the path written. Parent folders are created.
    """
    path = Path(path)
    if codec not in CODECS:
        raise ValueError(f"write_video({path}): codec must be one of {CODECS}, got {codec!r}")
    if not fps or fps <= 0:
        raise ValueError(f"write_video({path}): fps must be > 0, got {fps!r}")
    if isinstance(frames, np.ndarray) and (frames.ndim != 4 or frames.shape[0] == 0):
        raise ValueError(
            f"write_video({path}): frames must be uint8 [N, H, W, 3] with N > 0, "
            f"got {frames.dtype} {list(frames.shape)}"
        )
    import av

    rate = Fraction(float(fps)).limit_denominator(1001)
    count = 0
    with (
        atomic_path(path, suffix=path.suffix or ".mp4") as tmp,
        av.open(str(tmp), mode="w", format="mp4") as container,
    ):
        stream = None
        shape = None
        for frame in frames:
            frame = np.asarray(frame)
            _check_frame(frame, count, path, shape)
            if stream is None:
                shape = frame.shape
                stream = container.add_stream(codec, rate=rate)
                stream.height, stream.width = shape[0], shape[1]
                stream.pix_fmt = "yuv420p"
                if codec == "libx264" and crf is not None:
                    stream.options = {"crf": str(int(crf))}
                if codec == "mpeg4":
                    stream.bit_rate = int(bit_rate or max(shape[0] * shape[1] * fps / 4, 2e5))
            video_frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(frame), format="rgb24"
            )
            for packet in stream.encode(video_frame):
                container.mux(packet)
            count += 1
        if stream is None:
            raise ValueError(f"write_video({path}): no frames given")
        for packet in stream.encode():
            container.mux(packet)
    return path
