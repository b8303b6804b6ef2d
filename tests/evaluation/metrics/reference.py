"""Straightforward reference formulations (scipy / numpy loops) and synthetic videos shared
by the metric tests."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.spatial.distance import cdist
from scipy.stats import kendalltau


def line(*values: float) -> np.ndarray:
    """1-D embeddings ``[N, 1]``."""
    return np.asarray(values, dtype=np.float64)[:, None]


# --------------------------------------------------------------------- reference formulations


def ref_tau(embs, stride=2, metric="sqeuclidean"):
    taus = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, a in enumerate(embs):
            for j, b in enumerate(embs):
                if i != j:
                    nn = cdist(a[::stride], b[::stride], metric).argmin(1)
                    taus.append(kendalltau(np.arange(len(nn)), nn).statistic)
    return float(np.nanmean(taus))


def ref_ap(embs, labels, k, stride=2):
    xs = [e[y >= 0][::stride] for e, y in zip(embs, labels)]
    ys = [y[y >= 0][::stride] for y in labels]
    per_video = []
    for i in range(len(xs)):
        cand = np.concatenate([xs[j] for j in range(len(xs)) if j != i])
        cand_y = np.concatenate([ys[j] for j in range(len(xs)) if j != i])
        nn = np.argsort(cdist(xs[i], cand, "sqeuclidean"), axis=1, kind="stable")[:, :k]
        per_video.append((cand_y[nn] == ys[i][:, None]).mean(1).mean())
    return float(np.mean(per_video))


def ref_targets(y, num_classes):
    return np.stack(
        [(np.arange(len(y)) - np.argwhere(y == i)[-1, 0]) / len(y) for i in range(num_classes - 1)],
        1,
    )


def phase_videos(rng, count, num_classes=4, dim=16, noise=1.0, lengths=(30, 60)):
    """Random videos whose frames drift through ordered phases (every phase present)."""
    centers = rng.normal(size=(num_classes, dim))
    embs, labels = [], []
    for _ in range(count):
        n = int(rng.integers(*lengths))
        cuts = np.sort(rng.choice(np.arange(1, n), num_classes - 1, replace=False))
        y = np.searchsorted(cuts, np.arange(n), side="right")
        t = np.arange(n)[:, None] / n
        x = 0.5 * centers[y] + t * centers[0] + noise * rng.normal(size=(n, dim))
        embs.append(x.astype(np.float32))
        labels.append(y.astype(np.int64))
    return embs, labels


# --------------------------------------------------------------------- Kendall's tau


def near_tie_videos(rng, count=5, frames=12, dim=8, gap=1e-9):
    """Videos whose frames come in pairs ``gap`` apart: nearest-neighbour and k-th / (k+1)-th
    decisions that float32 cannot resolve but float64 can."""
    embs = []
    for _ in range(count):
        base = rng.normal(size=(frames // 2, dim))
        twin = base + gap * rng.normal(size=base.shape)
        x = np.empty((frames, dim))
        x[0::2], x[1::2] = base, twin
        embs.append(x)
    # queries half-way between pairs of another video: near-ties at both ends of the gap
    embs.append(0.5 * (embs[0][0::2] + embs[0][1::2]) + gap * rng.normal(size=(frames // 2, dim)))
    return embs
