"""Kendall's tau against scipy, hand-worked cases and its float32 search."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mvf_lightning.evaluation import (
    kendalls_tau,
    retrieval_ap_at,
)
from mvf_lightning.evaluation.metrics import tau as tau_module
from tests.evaluation.metrics.reference import line, near_tie_videos, phase_videos, ref_tau


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




def test_tau_float32_search_rechecks_near_ties(monkeypatch):
    calls = []
    exact = tau_module._exact_distances
    monkeypatch.setattr(
        tau_module, "_exact_distances", lambda *a: calls.append(a[0].shape[0]) or exact(*a)
    )
    embs = near_tie_videos(np.random.default_rng(5))
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


