"""Broken and mismatched training videos: the up-front check, its tolerance and its messages."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from mvf_lightning.data import probe as probe_module
from mvf_lightning.data.datamodules import VideoDataModule
from mvf_lightning.data.datasets import TooManyBrokenVideosError, TrainClipDataset
from mvf_lightning.data.index import VideoIndex, VideoRecord, index_path, load_split
from mvf_lightning.data.sampling import TimeAugmentSampler

pytestmark = pytest.mark.faults

SMALL = {"num_frames": 8, "crop_size": 16, "num_workers": 0, "eval_train_split": None}


def _dataset(tmp_path, tiny_root, num_videos: int, num_broken: int):
    """An index of ``num_videos`` entries (the tiny videos, reused), the first ``num_broken``
    of them pointing at corrupt files."""
    root = tmp_path / "ds"
    good = load_split(tiny_root, "train").videos
    videos = []
    for i in range(num_videos):
        if i < num_broken:
            bad = tmp_path / f"corrupt{i}.mp4"
            bad.write_bytes(b"\x00garbage" * 50)
            videos.append(VideoRecord(f"bad{i}", str(bad), 30, 25.0, "g"))
        else:
            v = good[i % len(good)]
            videos.append(VideoRecord(f"v{i}", str(tiny_root / v.path), v.num_frames, 25.0, "g"))
    VideoIndex("tiny", "train", videos, root).save(index_path(root, "train"))
    return root


class _Counting:
    def __init__(self):
        import lightning.pytorch as pl

        self.steps = 0
        outer = self

        class Module(pl.LightningModule):
            def __init__(self):
                super().__init__()
                self.w = torch.nn.Parameter(torch.zeros(()))

            def training_step(self, batch, batch_idx):
                outer.steps += 1
                return (self.w - batch["frames"].mean()) ** 2

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)

        self.module = Module()


def _fit(tmp_path, dm, steps=3):
    import lightning.pytorch as pl

    counting = _Counting()
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=steps,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
    )
    trainer.fit(counting.module, datamodule=dm)
    return counting.steps


def test_one_broken_video_of_30_keeps_training_with_the_default_tolerance(tmp_path, tiny_root):
    root = _dataset(tmp_path, tiny_root, 30, 1)
    dm = VideoDataModule(str(root), **SMALL)
    assert dm.broken.limit == 3 and dm.max_broken_fraction == 0.01  # max(3, 1% of 30 = 0)
    with pytest.warns(UserWarning, match=r"1 of 30 training videos cannot be read \(corrupt0"):
        assert _fit(tmp_path, dm) == 3
    assert [p.rsplit("/", 1)[-1] for p in dm.broken_videos] == ["corrupt0.mp4"]


def test_too_many_broken_videos_stop_before_the_first_step_with_one_line(tmp_path, tiny_root):
    root = _dataset(tmp_path, tiny_root, 30, 5)
    dm = VideoDataModule(str(root), **SMALL)
    counting_steps = []
    with warnings.catch_warnings(record=True) as caught, pytest.raises(
        TooManyBrokenVideosError
    ) as info:
        warnings.simplefilter("always")
        counting_steps.append(_fit(tmp_path, dm))
    assert not [w for w in caught if "cannot be read" in str(w.message)]  # the error says it
    assert counting_steps == []  # no step ran
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("5 of 30 training videos cannot be read")
    assert "data.max_broken_videos" in message and "data.max_broken_fraction" in message
    listed = root / "index" / ".probe" / "train.broken.txt"
    assert f"the list is in {listed}" in message
    assert [p.rsplit("/", 1)[-1] for p in listed.read_text().splitlines()] == [
        f"corrupt{i}.mp4" for i in range(5)
    ]
    # raising the setting named in the message lets the same data train
    dm = VideoDataModule(str(root), max_broken_videos=5, **SMALL)
    with pytest.warns(UserWarning, match="5 of 30"):
        assert _fit(tmp_path, dm, steps=2) == 2


def test_the_check_is_cached_per_index_and_redone_for_changed_files(
    tmp_path, tiny_root, monkeypatch
):
    root = _dataset(tmp_path, tiny_root, 6, 1)
    calls = []
    real = probe_module.probe
    monkeypatch.setattr(probe_module, "probe", lambda p: calls.append(p) or real(p))
    index = load_split(root, "train")
    cache = root / "index" / ".probe" / "train.jsonl"
    first = probe_module.check_training_videos(index, cache)
    assert len(calls) == 5  # 6 entries, 5 distinct files (4 tiny videos reused + 1 corrupt)
    assert list(first.broken) == [str(tmp_path / "corrupt0.mp4")]
    calls.clear()
    again = probe_module.check_training_videos(index, cache)
    assert calls == [] and again.broken == first.broken
    # a repaired file is checked again
    (tmp_path / "corrupt0.mp4").write_bytes((tiny_root / "videos" / "a0.mp4").read_bytes())
    fixed = probe_module.check_training_videos(index, cache)
    assert calls == [tmp_path / "corrupt0.mp4"] and fixed.broken == {}


def test_frame_count_mismatch_is_warned_and_resampled_carl_style(tmp_path, tiny_root, helpers):
    root = tmp_path / "ds"
    a0 = str(tiny_root / "videos" / "a0.mp4")  # 30 decodable frames, frame k is gray 4k
    b1 = str(tiny_root / "videos" / "b1.mp4")  # 50 decodable frames
    videos = [
        VideoRecord("listed_long", a0, 186 // 2, 25.0, "g"),  # index says 93, file has 30
        VideoRecord("listed_short", b1, 10, 25.0, "g"),  # index says 10, file has 50
        VideoRecord("agrees", a0, 30, 25.0, "g"),
    ]
    VideoIndex("tiny", "train", videos, root).save(index_path(root, "train"))
    dm = VideoDataModule(str(root), **SMALL)
    with pytest.warns(UserWarning) as record:
        dm.setup("fit")
    lines = [str(w.message) for w in record if "frames" in str(w.message)]
    assert any("'listed_long': the index lists 93 frames, the file has 30" in m for m in lines)
    assert any("'listed_short': the index lists 10 frames, the file has 50" in m for m in lines)
    assert not any("agrees" in m for m in lines)
    # training uses the shorter count; a longer file is resampled: frame floor(j * 50 / 10)
    ds = TrainClipDataset(load_split(root, "train"), TimeAugmentSampler(10, 1.0, 1.0))
    long_item, short_item = ds[0], ds[1]
    assert long_item["seq_lens"].tolist() == [30, 30]
    assert short_item["seq_lens"].tolist() == [10, 10]
    steps = short_item["steps"][0].numpy()
    np.testing.assert_array_equal(steps, np.arange(10))
    got = helpers.frame_ids(short_item["frames"][0].numpy())
    np.testing.assert_array_equal(got, steps * 50 // 10)


def test_the_check_never_opens_two_videos_at_once(tmp_path, tiny_root, monkeypatch):
    """The check probes on several threads, but opens one file at a time: decord's FFmpeg
    aborted the demo's fit ("incorrect codes") when two threads opened MPEG-4 files at once."""
    import threading
    import time

    import decord

    real, lock = decord.VideoReader, threading.Lock()
    opening, most = 0, 0

    def one_at_a_time(*args, **kwargs):
        nonlocal opening, most
        with lock:
            opening += 1
            most = max(most, opening)
        time.sleep(0.02)  # wide enough for another thread to come in
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                opening -= 1

    monkeypatch.setattr(decord, "VideoReader", one_at_a_time)
    index = load_split(_dataset(tmp_path, tiny_root, num_videos=8, num_broken=0), "train")
    paths = {v.path for v in index}
    report = probe_module.check_training_videos(index, tmp_path / "probe.jsonl", num_threads=4)
    assert report.num_videos == 8 and not report.broken
    assert len(paths) > 1 and most == 1
