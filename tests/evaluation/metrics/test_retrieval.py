"""Retrieval AP@K against a numpy reference and hand-worked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mvf_lightning.evaluation import (
    retrieval_ap,
    retrieval_ap_at,
)
from mvf_lightning.evaluation.metrics import retrieval as retrieval_module
from mvf_lightning.evaluation.metrics._inputs import _labelled_frames
from tests.evaluation.metrics.reference import line, near_tie_videos, phase_videos, ref_ap


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
    exact = retrieval_module._exact_topk
    monkeypatch.setattr(retrieval_module, "_exact_topk", lambda *a: calls.append(1) or exact(*a))
    rng = np.random.default_rng(8)
    # (without the half-way video: its ties are below float64's |c|^2 - 2 q.c resolution)
    embs = near_tie_videos(rng, frames=10, gap=1e-8)[:-1]
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


