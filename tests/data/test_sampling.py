"""sampling.py: MV-Former time augmentation, checked over many seeds, and the stride sampler."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mvf_lightning.data.sampling import StrideSampler, TimeAugmentSampler


def _replay(sampler, length, seed):
    """Re-derive the unclamped steps with the same draws, to check masks and windows."""
    rng = np.random.default_rng(seed)
    t = sampler.num_frames
    n = min(length, t)
    views, offsets, windows, blocks = [], [], [], []
    s0 = None
    for _ in range(2):
        block = math.ceil(rng.uniform(sampler.min_scale, sampler.max_scale) * length)
        if s0 is None:
            window = (0, max(length - block, 1))
        else:
            shift = int((1 - sampler.view_overlap) * n)
            window = (
                max(0, min(length - block, s0 - shift)),
                max(1, min(length - block + 1, s0 + shift + 1)),
            )
        offset = int(rng.integers(*window))
        chosen = np.sort(offset + rng.permutation(block)[:n])
        raw = np.full(t, length)
        raw[: chosen.size] = chosen
        views.append(raw)
        offsets.append(offset)
        windows.append(window)
        blocks.append(block)
        if s0 is None:
            s0 = int(raw[0])
    return np.stack(views), offsets, windows, blocks


@pytest.mark.parametrize("length", [1, 5, 17, 40, 80, 81, 200])
@pytest.mark.parametrize(
    ("t", "min_scale", "max_scale"), [(16, 1.0, 1.5), (80, 1.0, 1.5), (24, 0.5, 1.2)]
)
def test_time_augment_properties(length, t, min_scale, max_scale):
    sampler = TimeAugmentSampler(t, min_scale, max_scale, view_overlap=0.2)
    n = min(length, t)
    for seed in range(40):
        sample = sampler(length, np.random.default_rng(seed))
        steps, masks = sample.steps, sample.masks
        assert steps.shape == masks.shape == (2, t)
        assert steps.dtype == np.int64 and masks.dtype == bool
        raw, offsets, windows, blocks = _replay(sampler, length, seed)
        # clamping, masks exactly where the unclamped step is outside [0, L)
        np.testing.assert_array_equal(steps, np.clip(raw, 0, length - 1))
        np.testing.assert_array_equal(masks, (raw >= 0) & (raw < length))
        assert (steps >= 0).all() and (steps < length).all()
        assert (np.diff(steps, axis=1) >= 0).all()  # sorted
        # each view keeps min(n, block) distinct block positions; the rest is padding L
        for v in range(2):
            k = min(n, blocks[v])
            real = raw[v, :k]
            assert len(np.unique(real)) == k
            assert (real >= offsets[v]).all() and (real < offsets[v] + blocks[v]).all()
            assert (raw[v, k:] == length).all()
            assert masks[v].sum() <= n
            lo, hi = windows[v]
            assert lo <= offsets[v] < hi
        if min_scale >= 1.0:  # block >= L: offsets are 0 and view 1 keeps n positions
            assert offsets == [0, 0]
            assert (raw[:, :n] < math.ceil(max_scale * length)).all()


def test_scale_one_gives_exactly_n_valid_frames():
    for length, t in [(10, 16), (16, 16), (50, 16)]:
        sampler = TimeAugmentSampler(t, 1.0, 1.0)
        for seed in range(20):
            sample = sampler(length, np.random.default_rng(seed))
            assert (sample.masks.sum(1) == min(length, t)).all()
            if length <= t:  # every frame once, in order
                np.testing.assert_array_equal(
                    sample.steps[:, :length], np.tile(np.arange(length), (2, 1))
                )


def test_second_view_offset_near_first():
    # min_scale < 1 makes L - block > 0, so offsets move; view 2 must start near view 1
    sampler = TimeAugmentSampler(20, 0.5, 0.6, view_overlap=0.2)
    length = 100
    for seed in range(200):
        raw, offsets, windows, blocks = _replay(sampler, length, seed)
        shift = int(0.8 * 20)
        s0 = raw[0, 0]
        assert max(0, s0 - shift) <= offsets[1] <= s0 + shift
        sample = sampler(length, np.random.default_rng(seed))
        np.testing.assert_array_equal(sample.steps, np.clip(raw, 0, length - 1))


def test_deterministic_for_a_seed_and_varies_across_seeds():
    sampler = TimeAugmentSampler(16)
    a = sampler(60, np.random.default_rng([1, 2, 3]))
    b = sampler(60, np.random.default_rng([1, 2, 3]))
    c = sampler(60, np.random.default_rng([1, 2, 4]))
    np.testing.assert_array_equal(a.steps, b.steps)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert not np.array_equal(a.steps, c.steps)
    assert not np.array_equal(a.steps[0], a.steps[1])  # the two views differ


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_frames": 0},
        {"num_frames": 8, "min_scale": 2.0},
        {"num_frames": 8, "view_overlap": 1.5},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="TimeAugmentSampler"):
        TimeAugmentSampler(**kwargs)


def test_bad_length():
    with pytest.raises(ValueError, match="video_len"):
        TimeAugmentSampler(8)(0, np.random.default_rng(0))


def test_stride_sampler():
    assert StrideSampler(1)(5).tolist() == [0, 1, 2, 3, 4]
    assert StrideSampler(3)(10).tolist() == [0, 3, 6, 9]
    assert StrideSampler(2)(0).tolist() == []
    with pytest.raises(ValueError, match="stride"):
        StrideSampler(0)
