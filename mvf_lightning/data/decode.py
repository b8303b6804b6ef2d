"""Video decoding with decord: read only the frames a sample needs.

decord seeks to the nearest keyframe and decodes forward, so asking for a sorted
set of unique frames costs far less than decoding a whole video and indexing it.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np

from ..errors import DataError

__all__ = ["VideoDecodeError", "VideoFile", "VideoInfo", "probe_video", "read_frames"]


class VideoDecodeError(DataError, RuntimeError):
    """A video could not be opened or decoded; ``path`` names the file. Still a
    ``RuntimeError``, as it was before :mod:`mvf_lightning.errors`."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode video {self.path}: {reason}")

    def __reduce__(self):  # survive pickling across DataLoader worker processes
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class VideoInfo:
    """Container-level facts about a video."""

    num_frames: int
    fps: float
    height: int
    width: int


_OPEN_LOCK = threading.Lock()
"""One open at a time in a process. decord's FFmpeg (4.1) builds some decoders' shared tables on
their first open without a lock; two threads doing it at once abort the process ("incorrect
codes", libavcodec/bitstream.c:346: the demo's fit, checking its MPEG-4 training videos on two
threads). Decoding stays parallel."""


def _decord():
    import decord

    decord.bridge.set_bridge("native")
    return decord


def _open(path: str | os.PathLike, size: tuple[int, int] | None, num_threads: int):
    """Open a decord VideoReader on the CPU; ``size=(H, W)`` resizes while decoding."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise VideoDecodeError(path, "file not found")
    decord = _decord()
    kwargs = {"ctx": decord.cpu(0), "num_threads": int(num_threads)}
    if size is not None:
        if len(size) != 2 or min(int(s) for s in size) <= 0:
            raise ValueError(f"size must be (height, width) with positive entries, got {size!r}")
        kwargs["height"], kwargs["width"] = int(size[0]), int(size[1])
    try:
        with _OPEN_LOCK:
            return decord.VideoReader(path, **kwargs)
    except Exception as e:  # decord raises bare RuntimeError/DECORDError
        raise VideoDecodeError(path, f"cannot open ({type(e).__name__}: {_short(e)})") from e


def _short(e: BaseException) -> str:
    return str(e).strip().splitlines()[0][:200] if str(e).strip() else repr(e)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame count, fps and frame size of a video, without decoding its frames."""
    vr = _open(path, None, 1)
    try:
        num = len(vr)
        fps = float(vr.get_avg_fps())
        h, w = vr[0].shape[:2] if num > 0 else (0, 0)
    except Exception as e:
        raise VideoDecodeError(path, f"cannot read header ({_short(e)})") from e
    return VideoInfo(num_frames=int(num), fps=fps, height=int(h), width=int(w))


class VideoFile:
    """An open video: ``len()`` frames, :meth:`read` decodes any subset of them.

    Lets a dataset learn the decodable frame count and read frames with one open.
    ``size=(H, W)`` resizes while decoding.
    """

    def __init__(
        self, path: str | os.PathLike, size: tuple[int, int] | None = None, num_threads: int = 1
    ) -> None:
        self.path = os.fspath(path)
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.num_threads = int(num_threads)
        self._reader = _open(self.path, self.size, self.num_threads)
        self._len = len(self._reader)

    def __len__(self) -> int:
        return self._len

    def read(self, indices: np.ndarray | list[int]) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) -> uint8 ``[N, H, W, 3]``."""
        path, size = self.path, self.size
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            h, w = size if size is not None else self._reader[0].shape[:2]
            return np.zeros((0, int(h), int(w), 3), dtype=np.uint8)
        if idx.min() < 0 or idx.max() >= self._len:
            raise VideoDecodeError(
                path,
                f"frame indices must be in [0, {self._len - 1}], "
                f"got min {idx.min()} max {idx.max()}",
            )
        unique, inverse = np.unique(idx, return_inverse=True)
        try:
            frames = self._reader.get_batch(unique.tolist()).asnumpy()
        except Exception as e:
            # decord 0.6 cannot copy out frames of some widths (16, 24, 48, 72, ...): at the
            # stored size decode those with PyAV (bit-identical frames); when resizing, fall
            # back to a stored-size read below.
            frames = _read_pyav(path, unique, e) if size is None else None
        if size is not None and (frames is None or frames.shape[1:3] != size):
            frames = _resize(VideoFile(path, None, self.num_threads).read(unique), size)
        if frames.shape[0] != unique.size or frames.ndim != 4 or frames.shape[-1] != 3:
            raise VideoDecodeError(
                path, f"decoder returned shape {frames.shape}, expected [{unique.size}, H, W, 3]"
            )
        if unique.size == idx.size and np.array_equal(unique, idx):
            return np.ascontiguousarray(frames, dtype=np.uint8)
        return np.ascontiguousarray(frames[inverse.reshape(-1)], dtype=np.uint8)


def _read_pyav(path: str, wanted: np.ndarray, decord_error: Exception) -> np.ndarray:
    """Frames at sorted unique ``wanted`` indices, decoding in order with PyAV."""
    import av

    want = set(wanted.tolist())
    last = int(wanted.max())
    found: dict[int, np.ndarray] = {}
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for i, frame in enumerate(container.decode(stream)):
                if i in want:
                    found[i] = frame.to_ndarray(format="rgb24")
                if i >= last:
                    break
    except Exception as e:  # noqa: BLE001 - reported with both decoders' errors
        raise VideoDecodeError(
            path, f"decord failed ({_short(decord_error)}) and PyAV failed ({_short(e)})"
        ) from e
    if len(found) != len(want):
        raise VideoDecodeError(
            path, f"decoding failed ({_short(decord_error)}); PyAV found {len(found)} of "
            f"{len(want)} frames"
        )
    return np.stack([found[i] for i in wanted.tolist()])


def read_frames(
    path: str | os.PathLike,
    indices: np.ndarray | list[int],
    size: tuple[int, int] | None = None,
    num_threads: int = 1,
) -> np.ndarray:
    """Decode the frames at ``indices`` (any order, repeats allowed) -> uint8 ``[N, H, W, 3]``.

    Only the unique frames are decoded (in sorted order, one ``get_batch`` call) and the
    result is re-expanded to the requested order. ``size=(H, W)`` resizes while decoding.
    """
    return VideoFile(path, size, num_threads).read(indices)


def _resize(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear (antialiased) resize of uint8 ``[N, H, W, 3]`` to ``size=(H', W')``."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    x = F.interpolate(
        x, size=tuple(int(s) for s in size), mode="bilinear", antialias=True, align_corners=False
    )
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
