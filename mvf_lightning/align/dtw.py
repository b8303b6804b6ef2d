"""Monotonic dynamic time warping over a precomputed cost matrix, vectorised along
anti-diagonals (every cell of one anti-diagonal depends only on the two before it).

No library is used (checked 2026-11): ``dtaidistance`` 2.5 (numpy only) warps series with
its own distances, not a given matrix; ``tslearn`` 0.10 takes a precomputed matrix but
brings numba, scikit-learn and statsmodels. The frame distances come from the model's
embeddings, so the textbook recurrence over a given matrix is what is needed:

    D[i, j] = C[i, j] + min(D[i-1, j], D[i, j-1], D[i-1, j-1]),  D[0, 0] = C[0, 0]

The path starts at ``(0, 0)`` and ends at ``(N-1, M-1)``. Memory: the float64 table and
one int8 back-pointer per cell, ``9 N M`` bytes (36 MB for 2,000 x 2,000).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

__all__ = ["band_mask", "dtw"]

# back-pointers: which neighbour the cell's best path came from
_DIAG, _UP, _LEFT = 0, 1, 2


def band_mask(n: int, m: int, window: int | None) -> np.ndarray | None:
    """Sakoe-Chiba band for unequal lengths: cell ``(i, j)`` is allowed when ``j`` is within
    ``window`` frames of the diagonal ``j = i (m-1)/(n-1)``. None: no band."""
    if window is None:
        return None
    if window < 0:
        raise ConfigError(f"window must be >= 0 frames, got {window}")
    slope = (m - 1) / (n - 1) if n > 1 else 0.0
    centre = np.arange(n)[:, None] * slope
    # widen by the slope so that consecutive rows' allowed ranges overlap (a path exists)
    half = window + max(slope, 1.0) / 2
    return np.abs(np.arange(m)[None, :] - centre) <= half


def dtw(cost: np.ndarray, window: int | None = None) -> tuple[np.ndarray, float]:
    """Best monotonic alignment of the rows and columns of ``cost [N, M]``.

    Returns ``(path [L, 2] int64 of (row, col) from (0, 0) to (N-1, M-1), total cost)``;
    steps are ``(1, 0)``, ``(0, 1)`` or ``(1, 1)``. ``window`` restricts the path to a
    Sakoe-Chiba band (see :func:`band_mask`). Ties prefer the diagonal step.
    """
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2 or 0 in c.shape:
        raise ValueError(f"dtw: cost must be a non-empty [N, M] matrix, got shape {c.shape}")
    if not np.isfinite(c).all():
        raise ValueError("dtw: cost has NaN or infinite entries")
    n, m = c.shape
    mask = band_mask(n, m, window)
    if mask is not None:
        c = np.where(mask, c, np.inf)
    # D with a border row/column of +inf: D[i+1, j+1] is the cost of ending at cell (i, j)
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    back = np.zeros((n, m), dtype=np.int8)
    for k in range(n + m - 1):  # anti-diagonal i + j = k
        i = np.arange(max(0, k - m + 1), min(n - 1, k) + 1)
        j = k - i
        candidates = np.stack([acc[i, j], acc[i, j + 1], acc[i + 1, j]])  # diag, up, left
        step = candidates.argmin(0)
        back[i, j] = step
        acc[i + 1, j + 1] = c[i, j] + candidates[step, np.arange(len(i))]
    total = float(acc[n, m])
    if not np.isfinite(total):
        raise ConfigError(f"dtw: window={window} is too narrow for {n} x {m} frames")
    path = [(n - 1, m - 1)]
    i, j = n - 1, m - 1
    while i > 0 or j > 0:
        step = back[i, j]
        if step == _DIAG:
            i, j = i - 1, j - 1
        elif step == _UP:
            i -= 1
        else:
            j -= 1
        path.append((i, j))
    return np.array(path[::-1], dtype=np.int64), total
