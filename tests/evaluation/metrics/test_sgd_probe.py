"""FineGym's SGD probe against an independent plain-loop implementation and by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mvf_lightning.evaluation.metrics import SGDProbeSettings, phase_classification_sgd
from mvf_lightning.evaluation.metrics.sgd_probe import (
    init_linear,
    lr_at_epoch,
    probe_train_videos,
)


def reference_probe(train_x, train_y, val_x, val_y, fraction, num_classes, seed=0,
                    epochs=100, lr=50.0, batch=10, world=1):
    """The procedure written out the straightforward way: nn.Linear, torch.optim.SGD,
    F.cross_entropy, Python loops over videos and frames."""
    n = min(len(train_x), max(batch * world, int(fraction * len(train_x))))
    g = torch.Generator().manual_seed(seed)
    dim = train_x[0].shape[1]
    linear = torch.nn.Linear(dim, num_classes)
    bound = 1 / math.sqrt(dim)
    with torch.no_grad():
        linear.weight.copy_((torch.rand(num_classes, dim, generator=g, dtype=torch.float64)
                             * 2 - 1) * bound)
        linear.bias.copy_((torch.rand(num_classes, generator=g, dtype=torch.float64)
                           * 2 - 1) * bound)
    frames = [[(torch.as_tensor(x[t]), int(y[t])) for t in range(len(y)) if y[t] >= 0]
              for x, y in zip(train_x, train_y)]
    opt = torch.optim.SGD(linear.parameters(), lr=lr, momentum=0.9, weight_decay=1e-6)
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = lr * (1 + math.cos(math.pi * epoch / epochs)) / 2
        perm = torch.randperm(n, generator=g).tolist()
        for start in range(0, n - batch + 1, batch):  # drop_last
            xs, ys = [], []
            for v in perm[start:start + batch]:
                for x, y in frames[v]:
                    xs.append(x)
                    ys.append(y)
            if not xs:
                continue
            loss = F.cross_entropy(linear(torch.stack(xs)), torch.tensor(ys))
            opt.zero_grad()
            loss.backward()
            opt.step()
    correct = total = 0
    with torch.no_grad():
        for x, y in zip(val_x, val_y):
            for t in range(len(y)):
                if y[t] >= 0:
                    total += 1
                    correct += int(int(linear(torch.as_tensor(x[t])).argmax()) == int(y[t]))
    return correct / total


def synthetic(rng, counts, num_classes=5, dim=16, noise=0.8):
    """Train and val videos: L2-normalised frames around shared per-class centres, ordered
    phases, a few unlabelled frames."""
    centres = rng.normal(size=(num_classes, dim))
    return [_videos(rng, centres, n, noise) for n in counts]


def _videos(rng, centres, count, noise):
    num_classes, dim = centres.shape
    embs, labels = [], []
    for _ in range(count):
        n = int(rng.integers(15, 30))
        y = np.minimum(np.arange(n) * num_classes // n, num_classes - 1)
        x = centres[y] + noise * rng.normal(size=(n, dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        y[rng.random(n) < 0.1] = -1
        embs.append(x.astype(np.float32))
        labels.append(y.astype(np.int64))
    return embs, labels


@pytest.mark.parametrize(("fraction", "epochs"), [(0.1, 100), (0.5, 30), (1.0, 15)])
def test_matches_the_plain_loop_implementation(fraction, epochs):
    """Same seed, same procedure: within 0.5 points (the reference's 100 epochs at f = 0.1,
    fewer epochs for the larger subsets to keep the plain loops quick)."""
    rng = np.random.default_rng(0)
    (tx, ty), (vx, vy) = synthetic(rng, (40, 12), noise=1.2)
    settings = SGDProbeSettings(epochs=epochs)
    got = phase_classification_sgd(tx, ty, vx, vy, fraction, num_classes=5, settings=settings)
    ref = reference_probe(tx, ty, vx, vy, fraction, num_classes=5, epochs=epochs)
    assert 0.3 < ref < 0.98  # a non-trivial problem
    assert abs(got - ref) <= 0.005, (got, ref)


def test_train_subset_and_schedule_by_hand():
    s = SGDProbeSettings()
    assert probe_train_videos(3000, 0.1, s) == 300
    assert probe_train_videos(50, 0.1, s) == 10  # at least one batch of 10
    assert probe_train_videos(50, 0.1, SGDProbeSettings(world_size=4)) == 40
    assert probe_train_videos(7, 0.1, s) == 7
    assert lr_at_epoch(0, s) == 50.0
    assert lr_at_epoch(50, s) == pytest.approx(25.0)
    assert lr_at_epoch(99, s) == pytest.approx(50 * (1 + math.cos(math.pi * 0.99)) / 2)


def test_fewer_videos_than_a_batch_scores_the_initial_weights():
    rng = np.random.default_rng(1)
    (tx, ty), (vx, vy) = synthetic(rng, (5, 3), num_classes=3, dim=4)
    w, b = init_linear(4, 3, torch.Generator().manual_seed(7))
    x, y = np.concatenate(vx), np.concatenate(vy)
    pred = (x[y >= 0] @ w.numpy().T + b.numpy()).argmax(1)
    expected = float((pred == y[y >= 0]).mean())
    settings = SGDProbeSettings(seed=7)
    got = phase_classification_sgd(tx, ty, vx, vy, num_classes=3, settings=settings)
    assert got == pytest.approx(expected)


def test_one_step_by_hand():
    """One epoch of one batch: W1 = W0 - lr (grad + wd W0) with the softmax gradient."""
    rng = np.random.default_rng(2)
    (tx, ty), (vx, vy) = synthetic(rng, (10, 4), num_classes=3, dim=4)
    settings = SGDProbeSettings(epochs=1, lr=3.0, seed=5)
    w, b = (t.numpy() for t in init_linear(4, 3, torch.Generator().manual_seed(5)))
    x, y = np.concatenate(tx).astype(np.float64), np.concatenate(ty)
    x, y = x[y >= 0], y[y >= 0]
    z = x @ w.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    w1 = w - 3.0 * (p.T @ x / len(y) + 1e-6 * w)
    b1 = b - 3.0 * (p.sum(0) / len(y) + 1e-6 * b)
    xv, yv = np.concatenate(vx), np.concatenate(vy)
    pred = (xv[yv >= 0] @ w1.T + b1).argmax(1)
    expected = float((pred == yv[yv >= 0]).mean())
    got = phase_classification_sgd(tx, ty, vx, vy, num_classes=3, settings=settings,
                                   dtype=torch.float64)
    assert got == pytest.approx(expected)


def test_unlabelled_frames_are_ignored_and_separable_data_is_learnt():
    rng = np.random.default_rng(3)
    (tx, ty), (vx, vy) = synthetic(rng, (20, 5), num_classes=3, dim=8, noise=0.05)
    base = phase_classification_sgd(tx, ty, vx, vy, num_classes=3)
    assert base == 1.0
    junk_x = [np.concatenate([x, rng.normal(size=(4, 8)).astype(np.float32)]) for x in tx]
    junk_y = [np.concatenate([y, np.full(4, -1)]) for y in ty]
    assert phase_classification_sgd(junk_x, junk_y, vx, vy, num_classes=3) == base


def test_bad_labels_are_reported():
    x, y = [np.zeros((3, 2), np.float32)], [np.array([0, 1, 4])]
    with pytest.raises(ValueError, match="labels go up to 4 but num_classes is 3"):
        phase_classification_sgd(x, y, x, y, num_classes=3)
