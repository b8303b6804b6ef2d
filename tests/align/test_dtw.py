"""DTW against brute force: every monotone path enumerated on tiny cases, the textbook
dynamic program (one cell at a time) on larger ones, bands included; and a 2,000 x 2,000
case within memory."""

from __future__ import annotations

import functools
import tracemalloc

import numpy as np
import pytest

from mvf_lightning.align.dtw import band_mask, dtw


def all_paths_min(cost: np.ndarray) -> float:
    """Cheapest of every path (0,0) -> (N-1,M-1) with steps (1,0), (0,1), (1,1)."""
    n, m = cost.shape

    @functools.cache
    def best(i: int, j: int) -> float:
        if (i, j) == (n - 1, m - 1):
            return cost[i, j]
        options = [best(i + di, j + dj) for di, dj in ((1, 0), (0, 1), (1, 1))
                   if i + di < n and j + dj < m]
        return cost[i, j] + min(options)

    return best(0, 0)


def textbook(cost: np.ndarray, mask: np.ndarray | None = None) -> float:
    n, m = cost.shape
    d = np.full((n, m), np.inf)
    for i in range(n):
        for j in range(m):
            if mask is not None and not mask[i, j]:
                continue
            if i == 0 and j == 0:
                d[i, j] = cost[0, 0]
                continue
            prev = min(d[i - 1, j] if i else np.inf, d[i, j - 1] if j else np.inf,
                       d[i - 1, j - 1] if i and j else np.inf)
            d[i, j] = cost[i, j] + prev
    return d[-1, -1]


def path_cost(cost: np.ndarray, path: np.ndarray) -> float:
    return float(cost[path[:, 0], path[:, 1]].sum())


def check_path(path: np.ndarray, n: int, m: int) -> None:
    assert tuple(path[0]) == (0, 0) and tuple(path[-1]) == (n - 1, m - 1)
    steps = np.diff(path, axis=0)
    assert {tuple(s) for s in steps} <= {(1, 0), (0, 1), (1, 1)}


@pytest.mark.parametrize("seed", range(12))
def test_equals_every_path_enumerated(seed):
    rng = np.random.default_rng(seed)
    n, m = rng.integers(1, 6, size=2)
    cost = rng.random((n, m))
    path, total = dtw(cost)
    check_path(path, n, m)
    assert total == pytest.approx(all_paths_min(cost), rel=1e-12)
    assert path_cost(cost, path) == pytest.approx(total, rel=1e-12)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("window", [None, 3])
def test_equals_textbook_dynamic_program(seed, window):
    rng = np.random.default_rng(100 + seed)
    n, m = rng.integers(10, 40, size=2)
    cost = rng.random((n, m))
    path, total = dtw(cost, window=window)
    check_path(path, n, m)
    mask = band_mask(n, m, window)
    assert total == pytest.approx(textbook(cost, mask), rel=1e-12)
    assert path_cost(cost, path) == pytest.approx(total, rel=1e-12)
    if mask is not None:
        assert mask[path[:, 0], path[:, 1]].all()  # the path stays in the band


def test_recovers_a_known_warp():
    """Cost = |a_i - b_j| for b a time-warped copy of a: the path follows the warp."""
    a = np.sin(np.linspace(0, 3, 50)) + np.linspace(0, 2, 50)
    warp = np.concatenate([np.repeat(np.arange(25), 2), np.arange(25, 50, 2)])
    b = a[warp]
    path, _ = dtw(np.abs(a[:, None] - b[None, :]))
    # query frames skipped by the fast part sit between two shown ones: off by at most one
    assert np.abs(warp[path[:, 1]] - path[:, 0]).max() <= 1
    shown = np.isin(path[:, 0], warp)
    assert (warp[path[shown, 1]] == path[shown, 0]).mean() > 0.9


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="non-empty"):
        dtw(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="NaN"):
        dtw(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="window"):
        dtw(np.zeros((3, 3)), window=-1)


def test_2000_by_2000_within_memory():
    cost = np.random.default_rng(0).random((2000, 2000))
    tracemalloc.start()
    path, total = dtw(cost)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    check_path(path, 2000, 2000)
    assert path_cost(cost, path) == pytest.approx(total)
    # table (32 MB) + back-pointers (4 MB) + temporaries: O(N M), far from N M paths
    assert peak < 120 * 2**20, f"peak {peak / 2**20:.0f} MB"
    banded, banded_total = dtw(cost, window=100)
    assert banded_total >= total
