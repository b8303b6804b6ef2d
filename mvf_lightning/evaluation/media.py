"""The pictures of one evaluation, from embedded videos: a similarity matrix with the DTW
path and phase boundaries, the LSTP attention of the entity tokens, and an alignment video.

Lightning-free: arrays in, uint8 RGB images / videos out (drawn by
:mod:`mvf_lightning.visualization`). The media callback decides what to show and when.
"""

from __future__ import annotations

import numpy as np

from ..align.matching import match_frames, pairwise_distances
from ..visualization import Track, alignment_video, attention_image, similarity_matrix_image
from .records import VideoEmbedding

__all__ = ["alignment_clip", "attention_picture", "evenly", "similarity_picture"]

THUMBNAIL = (320, 280)


def evenly(n: int, k: int) -> np.ndarray:
    """``min(n, k)`` evenly spaced indices in ``[0, n)``."""
    if k >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max(k, 1)).round().astype(np.int64))


def _phases(video: VideoEmbedding) -> np.ndarray | None:
    labels = video.known_labels()
    return labels if (labels >= 0).any() else None


def similarity_picture(a: VideoEmbedding, b: VideoEmbedding, thumbnail: bool = False
                       ) -> np.ndarray:
    """Cosine similarity of every frame of ``a`` (rows) with every frame of ``b`` (columns),
    phase boundaries from the labels and the DTW path on top."""
    sim = np.asarray(a.embeddings, np.float64) @ np.asarray(b.embeddings, np.float64).T
    path = match_frames(pairwise_distances(a.embeddings, b.embeddings), "dtw").path
    kwargs = {"size": THUMBNAIL} if thumbnail else {}
    return similarity_matrix_image(
        sim, row_name=a.video_id, col_name=b.video_id, value_name="cosine similarity",
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
    query: VideoEmbedding, other: VideoEmbedding, query_frames: np.ndarray,
    other_frames: np.ndarray, max_frames: int = 200,
) -> tuple[np.ndarray, str]:
    """``query``'s frames (uint8 ``[N, H, W, 3]``, at most ``max_frames`` evenly spaced)
    beside the frames of ``other`` that DTW matches to them -> uint8 ``[T, H, W, 3]`` and a
    caption."""
    match = match_frames(pairwise_distances(query.embeddings, other.embeddings), "dtw")
    steps = evenly(len(query_frames), max_frames)
    tracks = [
        Track(v.video_id, len(f), tuple(f.shape[1:3]), _phases(v))
        for v, f in ((query, query_frames), (other, other_frames))
    ]
    indices = np.stack([steps, match.index[steps]])
    clip = alignment_video(tracks, [query_frames[steps], other_frames[match.index[steps]]],
                           indices)
    return clip, f"{query.video_id} (left) and the frames of {other.video_id} DTW matches to them"
