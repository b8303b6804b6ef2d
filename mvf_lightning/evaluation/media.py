"""The pictures of one evaluation, from embedded videos: a similarity matrix with the DTW
path and phase boundaries, the LSTP attention of the entity tokens, and an alignment video.

Lightning-free: arrays in, uint8 RGB images / videos out (drawn by
:mod:`mvf_lightning.visualization`). The media callback decides what to show and when.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..align.matching import match_frames, pairwise_distances
from ..visualization import Track, alignment_video, attention_image, similarity_matrix_image

__all__ = ["EmbeddedVideo", "alignment_clip", "attention_picture", "evenly", "similarity_picture"]

THUMBNAIL = (320, 280)


@dataclass
class EmbeddedVideo:
    """One evaluation video: its name, per-frame embeddings ``[N, E]`` (L2-normalised) and
    labels ``[N]`` (-1 unknown), and, when decoded, its frames uint8 ``[N, H, W, 3]``."""

    name: str
    embeddings: np.ndarray
    labels: np.ndarray | None = None
    frames: np.ndarray | None = None


def evenly(n: int, k: int) -> np.ndarray:
    """``min(n, k)`` evenly spaced indices in ``[0, n)``."""
    if k >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max(k, 1)).round().astype(np.int64))


def _phases(video: EmbeddedVideo) -> np.ndarray | None:
    if video.labels is None or not (np.asarray(video.labels) >= 0).any():
        return None
    return np.asarray(video.labels)


def similarity_picture(a: EmbeddedVideo, b: EmbeddedVideo, thumbnail: bool = False) -> np.ndarray:
    """Cosine similarity of every frame of ``a`` (rows) with every frame of ``b`` (columns),
    phase boundaries from the labels and the DTW path on top."""
    sim = np.asarray(a.embeddings, np.float64) @ np.asarray(b.embeddings, np.float64).T
    path = match_frames(pairwise_distances(a.embeddings, b.embeddings), "dtw").path
    kwargs = {"size": THUMBNAIL} if thumbnail else {}
    return similarity_matrix_image(
        sim, row_name=a.name, col_name=b.name, value_name="cosine similarity",
        row_phases=_phases(a), col_phases=_phases(b), path=path, **kwargs,
    )


def attention_picture(
    frames: np.ndarray, attention: np.ndarray, grid: tuple[int, int], num_frames: int,
    name: str,
) -> tuple[np.ndarray, str]:
    """``num_frames`` evenly spaced frames (uint8 ``[N, H, W, 3]``, as the model saw them)
    with the entity tokens' attention ``[N, K, S]`` (``S = grid[0] * grid[1]``) over them."""
    att = np.asarray(attention)
    n, k, s = att.shape
    if grid[0] * grid[1] != s:
        raise ValueError(f"cannot lay {s} attention tokens out on the feature grid {grid}")
    idx = evenly(n, num_frames)
    image = attention_image(
        frames[idx], att[idx].reshape(len(idx), k, *grid), idx.tolist(), video_name=name
    )
    caption = (f"{name}: frames {', '.join(map(str, idx.tolist()))}; the frame, all {k} "
               "entity tokens, then each token's attention")
    return image, caption


def alignment_clip(
    query: EmbeddedVideo, other: EmbeddedVideo, max_frames: int = 200
) -> tuple[np.ndarray, str]:
    """``query``'s frames (at most ``max_frames``, evenly spaced) beside the frames of
    ``other`` that DTW matches to them -> uint8 ``[T, H, W, 3]`` and a caption."""
    if query.frames is None or other.frames is None:
        raise ValueError("alignment_clip needs the decoded frames of both videos")
    match = match_frames(pairwise_distances(query.embeddings, other.embeddings), "dtw")
    steps = evenly(len(query.frames), max_frames)
    tracks = [
        Track(v.name, len(v.frames), tuple(v.frames.shape[1:3]), _phases(v))
        for v in (query, other)
    ]
    indices = np.stack([steps, match.index[steps]])
    clip = alignment_video(tracks, [query.frames[steps], other.frames[match.index[steps]]],
                           indices)
    return clip, f"{query.name} (left) and the frames of {other.name} DTW matches to them"
