"""Equal evaluation windows against hand-worked cases and the spec's rule."""

from __future__ import annotations

import math

import pytest

from mvf_lightning.evaluation.windows import equal_windows


def lengths(windows: list[slice]) -> list[int]:
    return [w.stop - w.start for w in windows]


@pytest.mark.parametrize(
    ("num_frames", "max_frames", "expected"),
    [
        (2500, 1000, [834, 834, 832]),  # not 1000, 1000, 500
        (1000, 1000, [1000]),
        (1001, 1000, [501, 500]),
        (3000, 1000, [1000, 1000, 1000]),
        (4100, 2000, [1367, 1367, 1366]),  # FineGym's M = 2000
        (151, 1000, [151]),
        (7, 3, [3, 3, 1]),
        (1, 1, [1]),
        (0, 1000, []),
    ],
)
def test_hand_worked_windows(num_frames, max_frames, expected):
    windows = equal_windows(num_frames, max_frames)
    assert lengths(windows) == expected
    # contiguous, in order, covering every frame once
    assert [w.start for w in windows] == [sum(expected[:i]) for i in range(len(expected))]


def test_rule_holds_for_every_length():
    for m in range(1, 40):
        for n in range(1, 400):
            sizes = lengths(equal_windows(n, m))
            count = math.ceil(n / m)
            assert len(sizes) == count and sum(sizes) == n
            assert sizes[:-1] == [math.ceil(n / count)] * (count - 1)
            assert 1 <= sizes[-1] <= sizes[0] <= m


def test_bad_sizes_are_named():
    with pytest.raises(ValueError, match="max_frames must be >= 1, got 0"):
        equal_windows(10, 0)
