"""Protocol metrics: hand-computed cases, edge cases, and agreement with scipy/scikit-learn."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from scipy.stats import kendalltau
from sklearn.linear_model import LinearRegression, LogisticRegression

from mvf_lightning.evaluation import (
    kendalls_tau,
    metrics,
    phase_classification,
    phase_progression,
    progression_targets,
    retrieval_ap,
    retrieval_ap_at,
)
from mvf_lightning.evaluation.metrics import (
    _batched_progression_targets,
    _fit_logistic,
    _labelled_frames,
)


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


def test_tau_identical_and_reversed():
    a = line(0, 1, 2, 3, 4)
    assert kendalls_tau([a, a.copy()], stride=1) == pytest.approx(1.0)
    assert kendalls_tau([a, a[::-1].copy()], stride=1) == pytest.approx(-1.0)


def test_tau_ties_hand_computed():
    # A -> B neighbours [0, 0, 1, 1]: S = 4, n0 = 6, tied pairs 2 -> 4 / sqrt(6 * 4).
    # B -> A neighbours [0, 3]: tau 1.
    a = line(0, 1, 2, 3)
    b = line(0.4, 2.6)
    expected = (4 / math.sqrt(24) + 1.0) / 2
    assert kendalls_tau([a, b], stride=1) == pytest.approx(expected, abs=1e-12)
    assert kendalls_tau([a, b], stride=1) == pytest.approx(ref_tau([a, b], 1), abs=1e-12)


def test_tau_nan_pairs_excluded():
    a = line(0, 1, 2, 3)
    const = np.full((3, 1), 5.0)  # every frame maps to one neighbour: tau undefined
    assert math.isnan(kendalls_tau([a, const], stride=1))
    assert kendalls_tau([a, const, a.copy()], stride=1) == pytest.approx(1.0)


def test_tau_stride_and_short_videos():
    a = line(0, 1, 2, 3, 4)  # stride 2 keeps 0, 2, 4
    b = line(4, 9, 2, 9, 0)  # stride 2 keeps 4, 2, 0 -> reversed
    assert kendalls_tau([a, b], stride=2) == pytest.approx(-1.0)
    assert math.isnan(kendalls_tau([a], stride=1))  # one video: no pairs
    empty = np.zeros((0, 1))  # an empty video: its pairs are undefined, the others count
    assert kendalls_tau([a, b, empty], stride=2) == pytest.approx(-1.0)
    one = line(1.0)  # a single frame: its query pairs are undefined, as candidate it is fine
    assert math.isnan(kendalls_tau([one, one.copy()], stride=1))


def test_tau_torch_numpy_cosine_agree_with_scipy():
    rng = np.random.default_rng(0)
    embs = [rng.normal(size=(int(rng.integers(3, 25)), 6)) for _ in range(7)]
    ours = kendalls_tau(embs, stride=2)
    assert ours == pytest.approx(ref_tau(embs, 2), abs=1e-6)
    assert kendalls_tau([torch.from_numpy(e) for e in embs]) == pytest.approx(ours, abs=1e-12)
    cos = kendalls_tau(embs, stride=1, distance="cosine")
    assert cos == pytest.approx(ref_tau(embs, 1, "cosine"), abs=1e-6)


def _near_tie_videos(rng, count=5, frames=12, dim=8, gap=1e-9):
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


def test_tau_float32_search_rechecks_near_ties(monkeypatch):
    calls = []
    exact = metrics._exact_distances
    monkeypatch.setattr(
        metrics, "_exact_distances", lambda *a: calls.append(a[0].shape[0]) or exact(*a)
    )
    embs = _near_tie_videos(np.random.default_rng(5))
    assert sum(calls) == 0
    for stride in (1, 2):
        assert kendalls_tau(embs, stride=stride) == pytest.approx(ref_tau(embs, stride), abs=1e-12)
    assert sum(calls) > 0  # the float64 re-check ran
    # exact duplicates (true ties): first index, as scipy's argmin
    dup = [line(0, 1, 2, 3), line(1, 1, 2, 2, 0), line(3, 3, 0, 0)]
    assert kendalls_tau(dup, stride=1) == pytest.approx(ref_tau(dup, 1), abs=1e-12)


def test_tau_and_ap_scale_invariant_float32_range():
    rng = np.random.default_rng(6)
    embs, labels = phase_videos(rng, 5, lengths=(8, 20))
    embs = [e.astype(np.float64) for e in embs]
    tau = kendalls_tau(embs, stride=1)
    ap = retrieval_ap_at(embs, labels, [1, 3], stride=1)
    for scale in (1e-30, 1e30):  # beyond float32's range unless rescaled first
        scaled = [scale * e for e in embs]
        assert kendalls_tau(scaled, stride=1) == pytest.approx(tau, abs=1e-12)
        assert retrieval_ap_at(scaled, labels, [1, 3], stride=1) == pytest.approx(ap, abs=1e-12)
    assert tau == pytest.approx(ref_tau(embs, 1), abs=1e-12)


def test_tau_mixed_lengths_buckets_agree_with_scipy():
    rng = np.random.default_rng(7)  # lengths spread over several padding buckets, some < 2
    embs = [rng.normal(size=(int(n), 5)) for n in (1, 2, 3, 7, 15, 16, 40, 41, 90)]
    for stride in (1, 3):
        assert kendalls_tau(embs, stride=stride) == pytest.approx(ref_tau(embs, stride), abs=1e-9)


def test_tau_input_errors():
    with pytest.raises(ValueError, match="empty"):
        kendalls_tau([])
    with pytest.raises(ValueError, match=r"embs\[1\] has embedding dim 3, expected 2"):
        kendalls_tau([np.zeros((4, 2)), np.zeros((4, 3))])
    with pytest.raises(ValueError, match="2-D"):
        kendalls_tau([np.zeros(4)])
    with pytest.raises(ValueError, match="stride"):
        kendalls_tau([np.zeros((4, 2))], stride=0)
    with pytest.raises(ValueError, match="distance"):
        kendalls_tau([np.zeros((4, 2))], distance="l1")


# --------------------------------------------------------------------- retrieval


def _ap_videos():
    embs = [line(0, 10), line(0.1, 9.9), line(0.25, 9.75)]
    labels = [np.array([0, 1]), np.array([0, 1]), np.array([1, 1])]
    return embs, labels


def test_ap_hand_computed():
    embs, labels = _ap_videos()
    assert retrieval_ap(embs, labels, k=1, stride=1) == pytest.approx((1 + 1 + 0.5) / 3)
    assert retrieval_ap(embs, labels, k=2, stride=1) == pytest.approx(2 / 3)
    both = retrieval_ap_at(embs, labels, [1, 2], stride=1)
    assert both[1] == pytest.approx(2.5 / 3) and both[2] == pytest.approx(2 / 3)


def test_ap_drops_negative_labels():
    embs, labels = _ap_videos()
    # An unlabelled frame right next to video 2's first frame must be ignored.
    embs[2] = line(0.26, 0.25, 9.75)
    labels[2] = np.array([-1, 1, 1])
    assert retrieval_ap(embs, labels, k=1, stride=1) == pytest.approx((1 + 1 + 0.5) / 3)


def test_ap_fewer_candidates_than_k_and_single_video():
    embs = [line(0, 1), line(0.1, 1.1)]
    labels = [np.array([0, 1]), np.array([0, 0])]
    # each query frame sees both candidates: v0 -> (1/2 + 1/2) / 2, v1 -> (1/2 + 1/2) / 2
    assert retrieval_ap(embs, labels, k=5, stride=1) == pytest.approx(0.5)
    assert math.isnan(retrieval_ap([line(0, 1)], [np.array([0, 1])], k=1))


def test_ap_agrees_with_reference():
    rng = np.random.default_rng(1)
    embs, labels = phase_videos(rng, 6, lengths=(10, 30))
    labels[0][:3] = -1
    for k in (1, 5, 10):
        assert retrieval_ap(embs, labels, k, stride=2) == pytest.approx(
            ref_ap(embs, labels, k, 2), abs=1e-6
        )


def test_ap_float32_search_rechecks_near_ties(monkeypatch):
    calls = []
    exact = metrics._exact_topk
    monkeypatch.setattr(metrics, "_exact_topk", lambda *a: calls.append(1) or exact(*a))
    rng = np.random.default_rng(8)
    # (without the half-way video: its ties are below float64's |c|^2 - 2 q.c resolution)
    embs = _near_tie_videos(rng, frames=10, gap=1e-8)[:-1]
    # twin frames get different labels: which twin is k-th decides the precision
    labels = [np.arange(len(e)) % 2 for e in embs]
    for k in (1, 2, 3, 4):
        assert retrieval_ap(embs, labels, k, stride=1) == pytest.approx(
            ref_ap(embs, labels, k, 1), abs=1e-12
        )
    assert calls


def test_labelled_frames_filter_then_stride():
    rng = np.random.default_rng(9)
    xs = [torch.from_numpy(rng.normal(size=(n, 3))) for n in (0, 7, 11, 4)]
    ys = [torch.from_numpy(rng.integers(-1, 3, size=x.shape[0])) for x in xs]
    for stride in (1, 2, 3):
        x, y, lens = _labelled_frames(xs, ys, stride)
        want_x = [e[lab >= 0][::stride] for e, lab in zip(xs, ys)]
        want_y = [lab[lab >= 0][::stride] for lab in ys]
        assert lens.tolist() == [len(w) for w in want_y]
        assert torch.equal(x, torch.cat(want_x)) and torch.equal(y, torch.cat(want_y))


def test_ap_length_mismatch_names_video():
    embs, labels = _ap_videos()
    labels[1] = np.array([0, 1, 1])
    with pytest.raises(ValueError, match=r"video 1: embs\[1\] has 2 frames but labels\[1\] has 3"):
        retrieval_ap(embs, labels, k=1)
    with pytest.raises(ValueError, match="3 videos in embs but 2 in labels"):
        retrieval_ap(embs, labels[:2], k=1)


# --------------------------------------------------------------------- classification


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


def test_train_val_dim_mismatch():
    with pytest.raises(ValueError, match="train embedding dim 2 != val embedding dim 3"):
        phase_classification([np.zeros((2, 2))], [np.zeros(2)], [np.zeros((2, 3))], [np.zeros(2)])
