"""Phase progression against scikit-learn and hand-computed targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LinearRegression

from mvf_lightning.evaluation import (
    phase_progression,
    progression_targets,
)
from mvf_lightning.evaluation.metrics.progression import _batched_progression_targets
from tests.evaluation.metrics.reference import phase_videos, ref_targets


def test_progression_targets_hand_computed():
    t = progression_targets(torch.tensor([0, 0, 1, 1, 2]), 3).numpy()
    np.testing.assert_allclose(t[:, 0], (np.arange(5) - 1) / 5)
    np.testing.assert_allclose(t[:, 1], (np.arange(5) - 3) / 5)
    # phase 1 absent: its boundary is the frame before the first later phase
    t = progression_targets(torch.tensor([0, 0, 2, 2]), 3).numpy()
    np.testing.assert_allclose(t[:, 1], (np.arange(4) - 1) / 4)
    # no later phase either: boundary at the last frame
    t = progression_targets(torch.tensor([0, 0, 0]), 3).numpy()
    np.testing.assert_allclose(t[:, 1], (np.arange(3) - 2) / 3)


def _linear_progress_video(labels, num_classes=3):
    """Embeddings from which every target is an exact linear function: [t/L, b_0/L, b_1/L]."""
    y = np.asarray(labels)
    n = len(y)
    bounds = [np.argwhere(y == i)[-1, 0] / n for i in range(num_classes - 1)]
    x = np.column_stack([np.arange(n) / n] + [np.full(n, b) for b in bounds])
    return x, y


def test_progression_perfect_fit_and_negative_labels():
    vids = [_linear_progress_video(y) for y in ([0, 0, 1, 2, 2], [0, 1, 1, 1, 2, 2], [0, 1, 2])]
    tx, ty = [v[0] for v in vids], [v[1] for v in vids]
    vx, vy = _linear_progress_video([0, 0, 0, 1, 2])
    assert phase_progression(tx, ty, [vx], [vy], num_classes=3) == pytest.approx(1.0, abs=1e-9)
    # an unlabelled frame appended to a val video is dropped before the targets are built
    vx2 = np.vstack([vx, np.full((1, 3), 7.0)])
    vy2 = np.append(vy, -1)
    assert phase_progression(tx, ty, [vx2], [vy2], num_classes=3) == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match="num_classes"):
        phase_progression(tx, ty, [vx], [vy], num_classes=1)


def test_progression_agrees_with_sklearn():
    rng = np.random.default_rng(4)
    tx, ty = phase_videos(rng, 12)
    vx, vy = phase_videos(rng, 6)
    c = 4
    x, t = np.concatenate(tx), np.concatenate([ref_targets(y, c) for y in ty])
    xv, tv = np.concatenate(vx), np.concatenate([ref_targets(y, c) for y in vy])
    ref = np.mean([LinearRegression().fit(x, t[:, i]).score(xv, tv[:, i]) for i in range(c - 1)])
    ours = phase_progression(tx, ty, vx, vy, num_classes=c)
    assert ours == pytest.approx(ref, abs=1e-4)
    # fraction: first max(1, int(f N)) train videos
    n = 3
    x3 = np.concatenate(tx[:n])
    t3 = np.concatenate([ref_targets(y, c) for y in ty[:n]])
    ref3 = np.mean([LinearRegression().fit(x3, t3[:, i]).score(xv, tv[:, i]) for i in range(c - 1)])
    assert phase_progression(tx, ty, vx, vy, c, fraction=0.25) == pytest.approx(ref3, abs=1e-4)


def test_batched_progression_targets_match_per_video():
    videos = [[0, 0, 1, 1, 2], [0, 0, 2, 2], [0, 0, 0], [1, 2, 2, 5, 5], [3], [0, 4, 1]]
    for num_classes in (2, 3, 4):
        lens = torch.tensor([len(v) for v in videos])
        got = _batched_progression_targets(
            torch.tensor([y for v in videos for y in v]), lens, num_classes
        )
        want = torch.cat([progression_targets(torch.tensor(v), num_classes) for v in videos])
        torch.testing.assert_close(got, want, rtol=0, atol=1e-15)


def test_progression_rank_deficient_features_agree_with_sklearn():
    rng = np.random.default_rng(10)
    tx, ty = phase_videos(rng, 8, dim=6)
    vx, vy = phase_videos(rng, 4, dim=6)
    # a duplicated and a constant column: the Gram matrix is singular (min-norm lstsq path)
    widen = lambda e: np.column_stack([e, e[:, :1], np.ones(len(e))])  # noqa: E731
    tx, vx = [widen(e) for e in tx], [widen(e) for e in vx]
    c = 4
    x, t = np.concatenate(tx), np.concatenate([ref_targets(y, c) for y in ty])
    xv, tv = np.concatenate(vx), np.concatenate([ref_targets(y, c) for y in vy])
    ref = np.mean([LinearRegression().fit(x, t[:, i]).score(xv, tv[:, i]) for i in range(c - 1)])
    assert phase_progression(tx, ty, vx, vy, num_classes=c) == pytest.approx(ref, abs=1e-4)


