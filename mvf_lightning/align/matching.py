"""Frame correspondences between two embedded videos: distances, nearest neighbour, DTW,
and the phase labels carried over a correspondence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dtw import dtw

__all__ = ["METHODS", "Match", "match_frames", "pairwise_distances", "transfer_labels"]

METHODS = ("dtw", "nn")


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance of every frame of ``a [N, E]`` to every frame of ``b [M, E]``
    (for L2-normalised embeddings, ``sqrt(2 - 2 cos)``) -> ``[N, M]`` float64."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected [N, E] and [M, E] embeddings, got {a.shape} and {b.shape}")
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


@dataclass
class Match:
    """For each query frame ``q``: the matched frame ``index[q]`` of the other video and their
    ``distance[q]``; ``path [L, 2]`` the (query, other) pairs of the correspondence (drawn on
    the matrix) with ``path_distance [L]``; ``total`` the DTW cost (None for ``nn``)."""

    method: str
    index: np.ndarray
    distance: np.ndarray
    path: np.ndarray
    path_distance: np.ndarray
    total: float | None = None


def match_frames(dist: np.ndarray, method: str = "dtw", window: int | None = None) -> Match:
    """Match every query frame (row of ``dist [N, M]``) to a frame of the other video.

    ``nn``: the nearest frame, independently per query frame (first on ties). ``dtw``: the
    monotonic DTW path; a query frame the path pairs with several frames takes the closest
    of them (first on ties), so the matched indices never decrease.
    """
    d = np.asarray(dist, dtype=np.float64)
    if d.ndim != 2 or 0 in d.shape:
        raise ValueError(f"match_frames: dist must be a non-empty [N, M] matrix, got {d.shape}")
    n = d.shape[0]
    if method == "nn":
        index = d.argmin(1)
        path = np.stack([np.arange(n), index], axis=1)
        return Match("nn", index, d[np.arange(n), index], path, d[np.arange(n), index])
    if method != "dtw":
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    path, total = dtw(d, window)
    rows, cols = path[:, 0], path[:, 1]
    cell = d[rows, cols]
    # per row, the path cell with the smallest distance: sort by (row, distance, col)
    order = np.lexsort((cols, cell, rows))
    first = np.flatnonzero(np.r_[True, rows[order][1:] != rows[order][:-1]])
    index = cols[order][first]
    return Match("dtw", index, d[np.arange(n), index], path, cell, total)


def transfer_labels(query_labels: np.ndarray, match: Match, num_other: int) -> np.ndarray:
    """Phase labels for the other video's ``num_other`` frames, carried over ``match``.

    Each other frame takes the label of the query frame paired with it on the match's path
    (the closest one when several are); frames no pair reaches (``nn``) take the label of
    the nearest reached frame before them (after them at the start).
    """
    q = np.asarray(query_labels).reshape(-1)
    if len(q) != len(match.index):
        raise ValueError(
            f"query labels: {len(q)} given for a query of {len(match.index)} frames"
        )
    rows, cols = match.path[:, 0], match.path[:, 1]
    out = np.full(num_other, -1, dtype=np.int64)
    reached = np.zeros(num_other, dtype=bool)
    order = np.argsort(-match.path_distance, kind="stable")  # the nearest pair writes last
    out[cols[order]] = q[rows[order]]
    reached[cols] = True
    if not reached.any():
        return out
    idx = np.where(reached, np.arange(num_other), -1)
    np.maximum.accumulate(idx, out=idx)
    idx[idx < 0] = int(np.flatnonzero(reached)[0])
    return out[idx]
