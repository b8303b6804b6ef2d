"""The logistic-regression probe against scikit-learn and hand-checkable cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from mvf_lightning.evaluation import (
    phase_classification,
)
from mvf_lightning.evaluation.metrics.classification import _fit_logistic
from tests.evaluation.metrics.reference import line, phase_videos


def test_classification_separable_and_negative_labels():
    train = [line(-2, -1, 1, 2)]
    train_y = [np.array([0, 0, 1, 1])]
    val = [line(-1.5, 1.5, 50.0)]
    val_y = [np.array([0, 1, -1])]
    assert phase_classification(train, train_y, val, val_y) == 1.0


def test_classification_fraction_uses_first_videos():
    good = line(-2, -1, 1, 2)
    good_y = np.array([0, 0, 1, 1])
    flipped_y = 1 - good_y
    train = [good, good.copy(), good.copy()]
    train_y = [good_y, flipped_y, flipped_y]
    val, val_y = [line(-1.5, 1.5)], [np.array([0, 1])]
    assert phase_classification(train, train_y, val, val_y, fraction=0.1) == 1.0  # max(1, 0)
    assert phase_classification(train, train_y, val, val_y, fraction=0.34) == 1.0  # 1 video
    assert phase_classification(train, train_y, val, val_y, fraction=1.0) == 0.0
    with pytest.raises(ValueError, match="fraction"):
        phase_classification(train, train_y, val, val_y, fraction=0.0)


def test_classification_absent_and_single_classes():
    train = [line(-2, -1, 5, 6)]
    train_y = [np.array([0, 0, 2, 2])]
    val = [line(-1.5, 5.5, 2.0)]
    val_y = [np.array([0, 2, 1])]  # class 1 never seen in training: counted wrong
    assert phase_classification(train, train_y, val, val_y) == pytest.approx(2 / 3)
    # only one class in the train subset: everything predicted as it
    assert phase_classification(
        [line(0, 1)], [np.array([3, 3])], [line(0, 9)], [np.array([3, 1])]
    ) == pytest.approx(0.5)


@pytest.mark.parametrize("num_classes", [2, 4])
def test_logistic_solver_matches_sklearn_probabilities(num_classes):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 5))
    y = (x @ rng.normal(size=(5, num_classes)) + rng.normal(size=(300, num_classes))).argmax(1)
    w, b = _fit_logistic(torch.from_numpy(x), torch.from_numpy(y), num_classes, 1.0, 1000, 1e-10)
    z = torch.from_numpy(x) @ w + b
    ours = torch.sigmoid(z[:, 0]).numpy() if num_classes == 2 else torch.softmax(z, 1).numpy()
    ref = LogisticRegression(C=1.0, max_iter=10000, tol=1e-10).fit(x, y).predict_proba(x)
    ref = ref[:, 1] if num_classes == 2 else ref
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_classification_agrees_with_sklearn():
    rng = np.random.default_rng(3)
    tx, ty = phase_videos(rng, 20, noise=2.0)
    vx, vy = phase_videos(rng, 40, noise=2.0)  # ~1800 val frames: one frame < 0.1 pp
    for fraction in (0.2, 1.0):
        n = max(1, int(fraction * len(tx)))
        # float64 for scikit-learn too: on float32 input it solves in float32.
        x = np.concatenate(tx[:n]).astype(np.float64)
        clf = LogisticRegression(C=1.0, max_iter=10000).fit(x, np.concatenate(ty[:n]))
        ref = clf.score(np.concatenate(vx).astype(np.float64), np.concatenate(vy))
        ours = phase_classification(tx, ty, vx, vy, fraction=fraction)
        assert 0.0 < ours < 1.0
        assert abs(ours - ref) <= 0.002


# --------------------------------------------------------------------- progression


def test_train_val_dim_mismatch():
    with pytest.raises(ValueError, match="train embedding dim 2 != val embedding dim 3"):
        phase_classification([np.zeros((2, 2))], [np.zeros(2)], [np.zeros((2, 3))], [np.zeros(2)])
