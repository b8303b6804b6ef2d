"""video_writer.py: round trips, atomic writes, input checks."""

from __future__ import annotations

import numpy as np
import pytest

from mvf_lightning.data.decode import probe_video, read_frames
from mvf_lightning.data.video_writer import write_video


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_round_trip(tmp_path, helpers, codec):
    frames = helpers.counting_frames(20, 32)
    path = write_video(tmp_path / "sub" / f"{codec}.mp4", frames, fps=25, codec=codec)
    info = probe_video(path)
    assert (info.num_frames, info.height, info.width, info.fps) == (20, 32, 32, 25.0)
    assert helpers.frame_ids(read_frames(path, np.arange(20))).tolist() == list(range(20))
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


def test_accepts_iterable_and_ntsc_rate(tmp_path, helpers):
    frames = helpers.counting_frames(6, 32)
    path = write_video(tmp_path / "gen.mp4", (f for f in frames), fps=30000 / 1001)
    assert probe_video(path).num_frames == 6
    assert abs(probe_video(path).fps - 29.97) < 0.01


def test_failure_leaves_nothing(tmp_path, helpers):
    frames = list(helpers.counting_frames(3, 32)) + [np.zeros((16, 16, 3), np.uint8)]
    with pytest.raises(ValueError, match="frame 3 has shape"):
        write_video(tmp_path / "bad.mp4", frames, fps=25)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("frames", "kwargs", "message"),
    [
        (np.zeros((2, 32, 32, 3), np.float32), {}, "uint8"),
        (np.zeros((2, 31, 32, 3), np.uint8), {}, "even"),
        (np.zeros((0, 32, 32, 3), np.uint8), {}, "N > 0"),
        (np.zeros((2, 32, 32, 3), np.uint8), {"codec": "vp9"}, "codec"),
        (np.zeros((2, 32, 32, 3), np.uint8), {"fps": 0}, "fps"),
    ],
)
def test_bad_input(tmp_path, frames, kwargs, message):
    args = {"fps": 25, **kwargs}
    with pytest.raises(ValueError, match=message):
        write_video(tmp_path / "x.mp4", frames, **args)
