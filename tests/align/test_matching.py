"""Frame matching: distances, nearest neighbour, DTW matches and label transfer."""

from __future__ import annotations

import numpy as np
import pytest

from mvf_lightning.align.matching import match_frames, pairwise_distances, transfer_labels


def test_pairwise_distances_are_euclidean():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(7, 3))
    expected = np.linalg.norm(a[:, None] - b[None], axis=-1)
    np.testing.assert_allclose(pairwise_distances(a, b), expected, atol=1e-12)
    with pytest.raises(ValueError, match=r"\[N, E\]"):
        pairwise_distances(a, b[:, :2])


def test_nearest_neighbour_and_dtw():
    # other frame j shows query frame warp[j]; distances = |q - warp[j]|
    warp = np.array([0, 0, 1, 2, 2, 3, 5, 6, 7, 7])
    q = np.arange(8)
    dist = np.abs(q[:, None] - warp[None, :]).astype(float)
    nn = match_frames(dist, "nn")
    np.testing.assert_array_equal(warp[nn.index], [0, 1, 2, 3, 3, 5, 6, 7])  # 4 missing
    np.testing.assert_array_equal(nn.distance, dist[q, nn.index])
    d = match_frames(dist, "dtw")
    assert np.all(np.diff(d.index) >= 0)  # monotonic
    np.testing.assert_array_equal(warp[d.index], [0, 1, 2, 3, 3, 5, 6, 7])
    assert d.total == pytest.approx(dist[d.path[:, 0], d.path[:, 1]].sum())
    with pytest.raises(ValueError, match="method"):
        match_frames(dist, "soft")


def test_transfer_labels_follow_the_match():
    warp = np.array([0, 0, 1, 2, 2, 3, 5, 6, 7, 7])
    q_labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    dist = np.abs(np.arange(8)[:, None] - warp[None, :]).astype(float)
    for method in ("dtw", "nn"):
        out = transfer_labels(q_labels, match_frames(dist, method), len(warp))
        np.testing.assert_array_equal(out, q_labels[warp])
    with pytest.raises(ValueError, match="labels"):
        transfer_labels(q_labels[:3], match_frames(dist, "nn"), len(warp))
