"""Which frames of a video each view sees: MV-Former / CARL "time augment" and whole-video strides.

Pure numpy, no torch or Lightning. Randomness comes only from the ``np.random.Generator``
passed in, so a (seed, epoch, index)-seeded generator reproduces a sample exactly.

Reading of the reference's ``randint``: it is numpy's ``randint(low, high)`` whose ``high``
is exclusive (the ``+ 1`` in ``L - block + 1`` and ``s0 + shift + 1`` only makes sense that
way), so we call ``rng.integers(low, high)``, also exclusive.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np

from ..errors import ConfigError

__all__ = [
    "OffsetUniformSampler",
    "StrideSampler",
    "TimeAugmentSampler",
    "TimeWindow",
    "ViewSample",
    "with_positives",
]

TimeWindow = Literal["video", "frames"]
"""What the time-augment block scales: the whole video (``ceil(r L)``: Penn Action, K400,
Pouring) or the frames of one view (``ceil(r min(L, T))``: FineGym, a local window)."""


class ViewSample(NamedTuple):
    """Frames chosen for the views of one video.

    ``steps`` int64 ``[V, T]``, sorted per view and clamped to ``[0, L - 1]``;
    ``masks`` bool ``[V, T]``, False where the unclamped step fell outside ``[0, L)``
    (block positions past the end, or padding when ``L < T``).
    """

    steps: np.ndarray
    masks: np.ndarray


def _view_sample(raw: np.ndarray, length: int) -> ViewSample:
    """Unclamped steps ``[V, T]`` -> masks (False outside ``[0, L)``) and clamped steps."""
    masks = (raw >= 0) & (raw < length)
    return ViewSample(steps=np.clip(raw, 0, length - 1), masks=masks)


def with_positives(anchors: np.ndarray, window: int, rng: np.random.Generator) -> np.ndarray:
    """TCN's layout: each anchor step followed by a positive step drawn uniformly from
    ``[anchor - window, anchor - 1]`` (unclamped): ``[..., n]`` -> ``[..., 2n]``."""
    positives = anchors + rng.integers(-window, 0, size=anchors.shape)
    return np.stack([anchors, positives], axis=-1).reshape(*anchors.shape[:-1], -1)


class TimeAugmentSampler:
    """One or two views of ``num_frames`` steps each, following MV-Former's "time augment".

    Per view: ``n = min(L, T)``; ``r ~ U(min_scale, max_scale)``; ``block = ceil(r L)`` with
    ``window="video"`` (Penn Action, K400, Pouring) or ``ceil(r n)`` with ``window="frames"``
    (FineGym: a local window of ``n`` to ``1.5 n`` frames at a random offset);
    ``steps = sort(offset + permutation(block)[:n])``, padded with ``L`` up to ``T``; a step
    ``>= L`` is masked, then steps are clamped to ``[0, L - 1]``. View 1's offset is drawn in
    ``[0, max(L - block, 1))``; view 2's near view 1's smallest step ``s0`` with
    ``shift = int((1 - view_overlap) n)``. With ``r >= 1`` both offsets are 0: the
    randomness is which block positions are kept, and those past the end are masked, so a
    view has at most ``n`` valid frames (exactly ``n`` when ``r = 1``). With
    ``window="frames"`` and ``L > 1.5 T`` the offsets move and a view spans at most
    ``ceil(max_scale T)`` frames. If ``min_scale < 1``
    makes ``block < n``, only ``block`` positions exist and the rest is padding.
    ``views=1`` samples the first view only (the reference's single-view methods).
    """

    def __init__(
        self,
        num_frames: int,
        min_scale: float = 1.0,
        max_scale: float = 1.5,
        view_overlap: float = 0.2,
        window: TimeWindow = "video",
        views: int = 2,
    ) -> None:
        if int(num_frames) < 1:
            raise ConfigError(f"TimeAugmentSampler: num_frames must be >= 1, got {num_frames}")
        if not 0 < min_scale <= max_scale:
            raise ConfigError(
                "TimeAugmentSampler: need 0 < min_scale <= max_scale, "
                f"got min_scale={min_scale}, max_scale={max_scale}"
            )
        if not 0.0 <= view_overlap <= 1.0:
            raise ConfigError(
                f"TimeAugmentSampler: view_overlap must be in [0, 1], got {view_overlap}"
            )
        if window not in ("video", "frames"):
            raise ConfigError(
                f"TimeAugmentSampler: window must be 'video' or 'frames', got {window!r}"
            )
        if views not in (1, 2):
            raise ConfigError(f"TimeAugmentSampler: views must be 1 or 2, got {views!r}")
        self.num_views = int(views)
        self.num_frames = int(num_frames)
        self.window = window
        self.min_scale = float(min_scale)
        self.max_scale = float(max_scale)
        self.view_overlap = float(view_overlap)

    def __repr__(self) -> str:
        return (
            f"TimeAugmentSampler(num_frames={self.num_frames}, min_scale={self.min_scale}, "
            f"max_scale={self.max_scale}, view_overlap={self.view_overlap}, "
            f"window={self.window!r}, views={self.num_views})"
        )

    def _view(self, length: int, rng: np.random.Generator, s0: int | None) -> np.ndarray:
        """Unclamped steps of one view, int64 ``[T]``; ``s0`` = smallest step of view 1."""
        n = min(length, self.num_frames)
        span = length if self.window == "video" else n
        block = math.ceil(rng.uniform(self.min_scale, self.max_scale) * span)
        if s0 is None:
            offset = rng.integers(0, max(length - block, 1))
        else:
            shift = int((1.0 - self.view_overlap) * n)
            low = max(0, min(length - block, s0 - shift))
            high = max(1, min(length - block + 1, s0 + shift + 1))
            offset = rng.integers(low, high)
        chosen = np.sort(offset + rng.permutation(block)[:n])
        steps = np.full(self.num_frames, length, dtype=np.int64)
        steps[: chosen.size] = chosen
        return steps

    def __call__(self, video_len: int, rng: np.random.Generator) -> ViewSample:
        """Sample the views of a video of ``video_len`` frames."""
        length = int(video_len)
        if length < 1:
            raise ValueError(f"TimeAugmentSampler: video_len must be >= 1, got {video_len}")
        views = [self._view(length, rng, None)]
        if self.num_views == 2:
            views.append(self._view(length, rng, int(views[0][0])))
        return _view_sample(np.stack(views), length)


class OffsetUniformSampler:
    """One view: the reference's ``offset_uniform`` sampling (its ``datasets/*.py``).

    A video of ``L >= n`` frames gives ``n`` distinct frames drawn uniformly from the whole
    video, sorted; a shorter one gives ``0 .. n - 1``, the steps ``>= L`` masked and clamped.
    ``n = num_frames``, or ``num_frames / 2`` anchors with ``positive_window > 0``: then each
    anchor is followed by a positive step from the ``positive_window`` frames before it
    (:func:`with_positives`; a step before the video's start is masked and clamped to 0), the
    reference's TCN batches.
    """

    num_views = 1

    def __init__(self, num_frames: int, positive_window: int = 0) -> None:
        if int(num_frames) < 1:
            raise ConfigError(f"OffsetUniformSampler: num_frames must be >= 1, got {num_frames}")
        if int(positive_window) < 0:
            raise ConfigError(
                f"OffsetUniformSampler: positive_window must be >= 0, got {positive_window}"
            )
        if positive_window and int(num_frames) % 2:
            raise ConfigError(
                "OffsetUniformSampler: anchors and positives alternate, so num_frames must be "
                f"even, got {num_frames}"
            )
        self.num_frames = int(num_frames)
        self.positive_window = int(positive_window)

    def __repr__(self) -> str:
        return (
            f"OffsetUniformSampler(num_frames={self.num_frames}, "
            f"positive_window={self.positive_window})"
        )

    def __call__(self, video_len: int, rng: np.random.Generator) -> ViewSample:
        length = int(video_len)
        if length < 1:
            raise ValueError(f"OffsetUniformSampler: video_len must be >= 1, got {video_len}")
        n = self.num_frames // 2 if self.positive_window else self.num_frames
        if length >= n:
            steps = np.sort(rng.permutation(length)[:n]).astype(np.int64)
        else:
            steps = np.arange(n, dtype=np.int64)
        if self.positive_window:
            steps = with_positives(steps, self.positive_window, rng)
        return _view_sample(steps[None], length)


class StrideSampler:
    """Evaluation: every ``stride``-th frame of the whole video, int64 ``[ceil(L / stride)]``."""

    def __init__(self, stride: int = 1) -> None:
        if int(stride) < 1:
            raise ConfigError(f"StrideSampler: stride must be >= 1, got {stride}")
        self.stride = int(stride)

    def __repr__(self) -> str:
        return f"StrideSampler(stride={self.stride})"

    def __call__(self, video_len: int) -> np.ndarray:
        if int(video_len) < 0:
            raise ValueError(f"StrideSampler: video_len must be >= 0, got {video_len}")
        return np.arange(0, int(video_len), self.stride, dtype=np.int64)
