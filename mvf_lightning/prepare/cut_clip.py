"""Cut a time range out of a long video, resample it to a fixed frame rate, scale it.

What CARL's ``finegym_process.py`` does with three ffmpeg runs (a stream copy of
``-ss start -to end``, then ``scale=640:360``, then ``fps=25``, each re-encoding), done with
PyAV in one decoding pass so an hour-long raw video never has to fit in memory: seek to the
keyframe before ``start``, decode forward, and for each output time ``start + k / fps``
(``k = 0 .. round((end - start) * fps) - 1``) emit the decoded frame whose timestamp is
nearest, scaled bicubically (ffmpeg's default scaler). Output frames stop early if the
source ends first. Timestamps are measured from the stream's first timestamp, as ffmpeg's
``-ss`` does. docs/fidelity.md compares the frames of both cuts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mvf_lightning.data.video_writer import write_video
from mvf_lightning.errors import DataError


class ClipError(DataError, RuntimeError):
    """The source could not be opened/decoded or the range holds no frames. Still a
    ``RuntimeError``, as it was before :mod:`mvf_lightning.errors`."""


def output_frame_count(start: float, end: float, fps: float) -> int:
    """Frames a clip of ``[start, end)`` seconds has at ``fps`` if the source covers it."""
    return max(0, int(round((end - start) * fps)))


def iter_clip_frames(
    src: str | os.PathLike, start: float, end: float, fps: float, size_wh: tuple[int, int]
) -> Iterator[np.ndarray]:
    """Yield uint8 ``[H, W, 3]`` RGB frames of ``src`` between ``start`` and ``end`` seconds."""
    import av

    n_out = output_frame_count(start, end, fps)
    if n_out == 0:
        return
    width, height = size_wh
    try:
        container = av.open(os.fspath(src))
    except Exception as e:
        raise ClipError(f"cannot open {src}: {e}") from e
    with container:
        if not container.streams.video:
            raise ClipError(f"{src}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = float(stream.time_base)
        t0 = float(stream.start_time * tb) if stream.start_time is not None else 0.0
        seek_to = max(0.0, start - 1.0)
        if seek_to > 0:
            try:
                container.seek(int((t0 + seek_to) / tb), stream=stream, backward=True)
            except av.FFmpegError as e:
                raise ClipError(f"{src}: cannot seek to {seek_to:.2f}s: {e}") from e
        k = 0
        prev = None
        prev_t = 0.0

        def convert(frame) -> np.ndarray:
            # bicubic: the default scaler of ffmpeg's command line, which CARL's cut used
            return frame.to_ndarray(
                width=width, height=height, format="rgb24", interpolation="BICUBIC"
            )

        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t = float(frame.pts * tb) - t0
                # Emit every output time that is nearer to ``prev`` than to this frame.
                while k < n_out:
                    target = start + k / fps
                    if prev is None:
                        if t < target:
                            break  # still before the first output time
                        yield convert(frame)  # the first frame already lies past the target
                        k += 1
                        continue
                    if target <= (prev_t + t) / 2:
                        yield convert(prev)
                        k += 1
                    else:
                        break
                if k >= n_out:
                    return
                prev, prev_t = frame, t
        except av.FFmpegError as e:
            raise ClipError(f"{src}: decoding failed near {prev_t:.2f}s: {e}") from e
        if prev is None:
            return
        # Source ended: the last frame covers targets up to one source frame after it.
        frame_dur = 1.0 / float(stream.average_rate) if stream.average_rate else 1.0 / fps
        while k < n_out and start + k / fps < prev_t + frame_dur:
            yield convert(prev)
            k += 1


def cut_clip(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    start: float,
    end: float,
    fps: float,
    size_wh: tuple[int, int],
    codec: str = "libx264",
) -> int:
    """Write ``src[start:end]`` at ``fps`` and ``size_wh`` to ``dst`` atomically; returns frames."""
    count = 0

    def counted():
        nonlocal count
        for f in iter_clip_frames(src, start, end, fps, size_wh):
            count += 1
            yield f

    try:
        write_video(Path(dst), counted(), fps, codec=codec)
    except ClipError:  # the source's own error (a ValueError too): kept as it is
        raise
    except ValueError as e:
        if count == 0:
            raise ClipError(f"{src}: no frames between {start:.3f}s and {end:.3f}s") from e
        raise
    return count
