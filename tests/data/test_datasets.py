"""datasets.py: training clips, whole-video evaluation items, broken videos, the sampler."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mvf_lightning.data import decode
from mvf_lightning.data.datasets import (
    BrokenVideoTracker,
    EpochSeededSampler,
    EvalVideoDataset,
    TrainClipDataset,
    collate_train,
)
from mvf_lightning.data.index import VideoIndex, VideoRecord, load_split
from mvf_lightning.data.sampling import TimeAugmentSampler


@pytest.fixture
def train_index(tiny_root):
    return load_split(tiny_root, "train")


def test_train_item_layout_and_frames_match_steps(train_index, helpers):
    ds = TrainClipDataset(train_index, TimeAugmentSampler(24), seed=3)
    for i in range(len(ds)):
        item = ds[i]
        assert item["frames"].shape == (2, 24, 3, 32, 32) and item["frames"].dtype == torch.uint8
        assert item["steps"].shape == (2, 24) and item["steps"].dtype == torch.int64
        assert item["masks"].dtype == torch.bool
        length = train_index[i].num_frames
        assert item["seq_lens"].tolist() == [length, length] and item["index"] == i
        assert item["broken"] == []
        # every frame shown is the frame its step names (counting video: frame k = gray 4k)
        np.testing.assert_array_equal(helpers.frame_ids(item["frames"].numpy()), item["steps"])


def test_train_item_decodes_union_once(train_index, monkeypatch):
    reads = []
    original = decode.VideoFile.read
    monkeypatch.setattr(
        decode.VideoFile,
        "read",
        lambda self, idx: reads.append(np.asarray(idx)) or original(self, idx),
    )
    item = TrainClipDataset(train_index, TimeAugmentSampler(40), seed=0)[3]
    assert len(reads) == 1  # one read for both views
    np.testing.assert_array_equal(np.sort(reads[0]), np.sort(item["steps"].reshape(-1).numpy()))


def test_seeded_by_seed_epoch_index(train_index):
    ds = TrainClipDataset(train_index, TimeAugmentSampler(16), seed=7)
    a = ds[(1, 0)]["steps"]
    assert torch.equal(a, ds[(1, 0)]["steps"])
    ds.epoch = 0
    assert torch.equal(a, ds[1]["steps"])  # an int key uses dataset.epoch
    assert not torch.equal(a, ds[(1, 1)]["steps"])  # another epoch, other frames
    other = TrainClipDataset(train_index, TimeAugmentSampler(16), seed=8)
    assert not torch.equal(a, other[(1, 0)]["steps"])


def test_short_video_padding(train_index):
    ds = TrainClipDataset(train_index, TimeAugmentSampler(32, 1.0, 1.0))
    item = ds[2]  # b0 has 20 frames < T = 32
    assert item["masks"].sum(1).tolist() == [20, 20]
    assert (item["steps"][:, 20:] == 19).all()


def _with_broken(tiny_root, tmp_path):
    """Index: 4 good videos of tiny_root plus a corrupt and a missing file."""
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00garbage" * 100)
    good = load_split(tiny_root, "train")
    videos = [
        good[0],
        VideoRecord("bad", str(bad), 30, 25.0, "alpha"),
        VideoRecord("gone", str(tmp_path / "missing.mp4"), 30, 25.0, "alpha"),
        *good.videos[1:],
    ]
    return VideoIndex("tiny", "train", videos, tiny_root)


def test_broken_video_substituted_and_reported(tiny_root, tmp_path):
    index = _with_broken(tiny_root, tmp_path)
    ds = TrainClipDataset(index, TimeAugmentSampler(8))
    with pytest.warns(UserWarning) as record:
        item = ds[1]
    assert [str(w.message).split()[3].rsplit("/", 1)[-1] for w in record] == [
        "corrupt.mp4",
        "missing.mp4",
    ]
    assert item["index"] == 3  # 1 corrupt, 2 missing -> next good one
    assert [p.rsplit("/", 1)[-1] for p in item["broken"]] == ["corrupt.mp4", "missing.mp4"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per file already
        assert ds[1]["index"] == 3


def test_broken_list_survives_workers_and_collate(tiny_root, tmp_path):
    index = _with_broken(tiny_root, tmp_path)
    ds = TrainClipDataset(index, TimeAugmentSampler(8), warn_broken=False)
    loader = DataLoader(ds, batch_size=3, collate_fn=collate_train, num_workers=1)
    batch = next(iter(loader))
    assert batch["frames"].shape == (3, 2, 8, 3, 32, 32)
    assert batch["index"].tolist() == [0, 3, 3]
    assert len(batch["broken"]) == 3  # corrupt + missing (item 1), missing (item 2)


def test_all_broken_raises(tmp_path):
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"junk" * 10)
    index = VideoIndex("x", "train", [VideoRecord("bad", str(bad), 10)], tmp_path)
    with pytest.raises(decode.VideoDecodeError, match="corrupt.mp4"):
        TrainClipDataset(index, TimeAugmentSampler(4), warn_broken=False)[0]


def test_broken_tracker_threshold():
    tracker = BrokenVideoTracker(num_videos=200, max_broken_fraction=0.01, max_broken_videos=0)
    with pytest.warns(UserWarning, match="a.mp4"):
        tracker.update(["a.mp4", "a.mp4"])
    with pytest.warns(UserWarning, match="b.mp4"):
        tracker.update(["b.mp4"])
    assert tracker.files == ["a.mp4", "b.mp4"]
    with (
        pytest.warns(UserWarning),
        pytest.raises(RuntimeError, match=r"(?s)3 of 200.*a\.mp4.*c\.mp4"),
    ):
        tracker.update(["c.mp4"])
    restored = BrokenVideoTracker(200)
    restored.load_state_dict(tracker.state_dict())
    assert restored.files == tracker.files


def test_eval_item_whole_video_with_labels(tiny_root, helpers):
    index = load_split(tiny_root, "val")
    item = EvalVideoDataset(index, set_name="s", split="val")[0]
    assert item["frames"].shape == (36, 3, 32, 32) and item["frames"].dtype == torch.uint8
    assert item["labels"].tolist() == helpers.phase_labels(36, 3)
    assert item["frame_indices"].tolist() == list(range(36))
    assert (item["video_id"], item["group"], item["split"], item["set_name"]) == (
        "a2",
        "alpha",
        "val",
        "s",
    )
    strided = EvalVideoDataset(index, stride=4, decode_size=[16, 16])[1]
    assert strided["frames"].shape == (7, 3, 16, 16)
    assert strided["frame_indices"].tolist() == list(range(0, 26, 4))
    assert strided["labels"].tolist() == [helpers.phase_labels(26, 2)[i] for i in range(0, 26, 4)]
    assert strided["set_name"] == "beta" and strided["split"] == "val"


def test_eval_labels_resampled_and_unlabelled(tiny_root):
    path = "videos/a2.mp4"  # 36 frames
    index = VideoIndex(
        "x",
        "val",
        [
            VideoRecord.from_labels("long", path, [0] * 36 + [1] * 36),  # 72 labels
            VideoRecord.from_labels("none", path, None, num_frames=36),
        ],
        tiny_root,
    )
    ds = EvalVideoDataset(index)
    labels = ds[0]["labels"]
    assert labels.shape == (36,) and labels.tolist() == [0] * 18 + [1] * 18
    assert ds[1]["labels"].tolist() == [-1] * 36


def test_eval_broken_gives_a_marker_naming_the_file(tmp_path):
    index = VideoIndex("x", "val", [VideoRecord("gone", "gone.mp4", 10)], tmp_path)
    item = EvalVideoDataset(index)[0]
    assert item["broken"] is True and "frames" not in item and item["video_id"] == "gone"
    assert "gone.mp4" in item["error"]


def test_epoch_seeded_sampler_shards_and_sets_epoch(train_index):
    ds = TrainClipDataset(train_index, TimeAugmentSampler(8))
    shards = [EpochSeededSampler(ds, num_replicas=2, rank=r, seed=5) for r in range(2)]
    for s in shards:
        s.set_epoch(3)
    assert ds.epoch == 3
    keys = [list(s) for s in shards]
    assert all(epoch == 3 for part in keys for _, epoch in part)
    indices = sorted(i for part in keys for i, _ in part)
    assert indices == list(range(len(ds)))
    again = EpochSeededSampler(ds, num_replicas=2, rank=0, seed=5)
    again.set_epoch(3)
    assert list(again) == keys[0]  # a resumed run sees the same order
    orders = set()
    for epoch in range(6):
        again.set_epoch(epoch)
        orders.add(tuple(i for i, _ in again))
    assert len(orders) > 1


def test_bad_constructor_arguments(train_index):
    with pytest.raises(TypeError, match="VideoIndex"):
        TrainClipDataset([1, 2], TimeAugmentSampler(8))
    with pytest.raises(ValueError, match="decode_size"):
        EvalVideoDataset(train_index, decode_size=[32])
    with pytest.raises(ValueError, match="no videos"):
        TrainClipDataset(VideoIndex("x", "train", []), TimeAugmentSampler(8))


def test_frames_are_channel_first_views_that_survive_workers(train_index, helpers):
    ds = TrainClipDataset(train_index, TimeAugmentSampler(12), seed=1)
    item = ds[(0, 0)]
    assert not item["frames"].is_contiguous()  # transposition is left to the accelerator
    loader = DataLoader(
        ds,
        batch_size=2,
        sampler=EpochSeededSampler(ds, seed=1),
        collate_fn=collate_train,
        num_workers=1,
    )
    batch = next(iter(loader))
    assert batch["frames"].shape == (2, 2, 12, 3, 32, 32)
    np.testing.assert_array_equal(helpers.frame_ids(batch["frames"].numpy()), batch["steps"])
    np.testing.assert_array_equal(
        helpers.frame_ids(batch["frames"].contiguous().numpy()), batch["steps"]
    )


def test_mixed_frame_sizes_in_a_batch_name_the_fix():
    from mvf_lightning.data.datasets import collate_train

    def item(h, w):
        return {"frames": torch.zeros(2, 4, 3, h, w, dtype=torch.uint8),
                "steps": torch.zeros(2, 4, dtype=torch.int64),
                "masks": torch.ones(2, 4, dtype=torch.bool),
                "seq_lens": torch.tensor([4, 4]), "index": 0, "broken": []}

    with pytest.raises(ValueError, match=r"different frame sizes.*decode_size"):
        collate_train([item(48, 64), item(46, 62)])


def test_augment_in_the_worker_is_seeded_per_seed_epoch_and_video(train_index):
    from mvf_lightning.data.augment import TrainAugmentation

    augment = TrainAugmentation(crop_size=16)
    ds = TrainClipDataset(train_index, TimeAugmentSampler(8), seed=2, augment=augment)
    plain = TrainClipDataset(train_index, TimeAugmentSampler(8), seed=2)
    item = ds[(1, 0)]
    assert item["frames"].shape == (2, 8, 3, 16, 16) and item["frames"].dtype == torch.float32
    assert torch.equal(item["steps"], plain[(1, 0)]["steps"])  # the same sampled frames
    torch.manual_seed(123)  # the global RNG neither decides nor is consumed
    again = ds[(1, 0)]["frames"]
    assert torch.equal(again, item["frames"]) and torch.rand(()) == torch.rand(
        (), generator=torch.Generator().manual_seed(123))
    assert not torch.equal(ds[(1, 1)]["frames"], item["frames"])  # another epoch
    # what the device-side path would compute for this item with the item's seed
    state = np.random.SeedSequence([2, 0, 1, 1]).generate_state(2)
    torch.manual_seed(int(state[0]) << 32 | int(state[1]))
    torch.testing.assert_close(augment(plain[(1, 0)]["frames"][None])[0], item["frames"])
    # workers give the same batches as the main process
    loaders = [DataLoader(ds, batch_size=2, sampler=EpochSeededSampler(ds, seed=2),
                          collate_fn=collate_train, num_workers=w) for w in (0, 2)]
    first, second = (next(iter(loader)) for loader in loaders)
    assert torch.equal(first["frames"], second["frames"])
