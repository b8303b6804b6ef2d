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
        span = length if sampler.window == "video" else n
        block = math.ceil(rng.uniform(sampler.min_scale, sampler.max_scale) * span)
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


@pytest.mark.parametrize("window", ["video", "frames"])
@pytest.mark.parametrize("length", [1, 5, 17, 40, 80, 81, 200])
@pytest.mark.parametrize(
    ("t", "min_scale", "max_scale"), [(16, 1.0, 1.5), (80, 1.0, 1.5), (24, 0.5, 1.2)]
)
def test_time_augment_properties(length, t, min_scale, max_scale, window):
    sampler = TimeAugmentSampler(t, min_scale, max_scale, view_overlap=0.2, window=window)
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
        if min_scale >= 1.0 and window == "video":  # block >= L: offsets are 0
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


def _valid_spans(sample):
    """Per view: (first valid step, last valid step, valid count)."""
    out = []
    for steps, masks in zip(sample.steps, sample.masks):
        valid = steps[masks]
        out.append((int(valid.min()), int(valid.max()), int(valid.size)))
    return out


def test_finegym_views_are_local_windows_over_1000_draws():
    """FineGym (L = 1000, T = 240): block = ceil(r * 240) <= 360, so every view spans at most
    360 frames, has all 240 frames valid, and the windows move across the event."""
    sampler = TimeAugmentSampler(240, window="frames")
    starts, widths = [], []
    for seed in range(1000):
        sample = sampler(1000, np.random.default_rng([7, seed]))
        for first, last, count in _valid_spans(sample):
            assert last - first + 1 <= 360 and count == 240
            starts.append(first)
            widths.append(last - first + 1)
        # view 2 starts near view 1: shift = int(0.8 * 240) = 192
        (s0, _, _), (s1, _, _) = _valid_spans(sample)
        assert s0 - 192 <= s1 <= s0 + 192 + 120  # offset window + (block - 240) unused head
    assert max(widths) > 330 and min(widths) < 260  # r really varies in [1, 1.5]
    assert max(starts) > 600  # offsets reach the far end of the event


def test_penn_views_keep_the_whole_video_rule_over_1000_draws():
    """Penn Action (L = 100, T = 80): block = ceil(r * 100) in [100, 150] from offset 0, so the
    80 positions are a sparse sample of the whole video; positions >= 100 are masked."""
    sampler = TimeAugmentSampler(80, window="video")
    lasts, counts = [], []
    for seed in range(1000):
        sample = sampler(100, np.random.default_rng([7, seed]))
        raw, offsets, _, blocks = _replay(sampler, 100, [7, seed])
        assert offsets == [0, 0] and all(100 <= b <= 150 for b in blocks)
        assert (raw[:, :80] < np.array(blocks)[:, None]).all()
        np.testing.assert_array_equal(sample.masks, raw < 100)
        for _first, last, count in _valid_spans(sample):
            lasts.append(last)
            counts.append(count)
    assert min(counts) >= 80 * 100 // 150 - 20 and max(counts) == 80  # r = 1 keeps all 80
    assert np.mean(lasts) > 95  # views reach the end of the video


def test_frames_window_hand_worked_cases():
    # r = 1, L = 10, T = 4, window "frames": block = 4, so each view is 4 consecutive frames;
    # view 1 starts in [0, 6), view 2 within int(0.8 * 4) = 3 of view 1's start, in [0, 6].
    sampler = TimeAugmentSampler(4, 1.0, 1.0, window="frames")
    for seed in range(50):
        sample = sampler(10, np.random.default_rng(seed))
        assert sample.masks.all()
        for steps in sample.steps:
            np.testing.assert_array_equal(steps, steps[0] + np.arange(4))
        s0, s1 = int(sample.steps[0, 0]), int(sample.steps[1, 0])
        assert 0 <= s0 < 6 and max(0, s0 - 3) <= s1 <= min(6, s0 + 3)
    # the same with window "video": block = L = 10, offsets 0, 4 distinct frames of 0..9
    sampler = TimeAugmentSampler(4, 1.0, 1.0, window="video")
    gaps = set()
    for seed in range(50):
        sample = sampler(10, np.random.default_rng(seed))
        assert sample.masks.all() and (np.diff(sample.steps, axis=1) > 0).all()
        gaps.update(np.diff(sample.steps, axis=1).ravel().tolist())
    assert max(gaps) > 1  # sparse, not consecutive
    # L < T: n = L, so both windows coincide: block = ceil(r * 3) from offset 0 either way
    a = TimeAugmentSampler(5, window="frames")(3, np.random.default_rng(1))
    b = TimeAugmentSampler(5, window="video")(3, np.random.default_rng(1))
    np.testing.assert_array_equal(a.steps, b.steps)
    np.testing.assert_array_equal(a.masks, b.masks)
    # one exact draw worked by hand from the generator's numbers
    rng = np.random.default_rng(3)
    r = rng.uniform(1.0, 1.5)
    block = math.ceil(r * 4)
    offset = int(rng.integers(0, 20 - block))
    expected = np.sort(offset + rng.permutation(block)[:4])
    got = TimeAugmentSampler(4, window="frames")(20, np.random.default_rng(3))
    np.testing.assert_array_equal(got.steps[0], expected)
    assert repr(TimeAugmentSampler(4, window="frames")).endswith("window='frames', views=2)")
    with pytest.raises(ValueError, match="window"):
        TimeAugmentSampler(4, window="event")


def test_stride_sampler():
    assert StrideSampler(1)(5).tolist() == [0, 1, 2, 3, 4]
    assert StrideSampler(3)(10).tolist() == [0, 3, 6, 9]
    assert StrideSampler(2)(0).tolist() == []
    with pytest.raises(ValueError, match="stride"):
        StrideSampler(0)
