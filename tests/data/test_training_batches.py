"""What training batches hold for each method: the reference's ``offset_uniform`` sampling and
TCN's anchor / positive layout, one-view batches with phase labels, same-action batches (on
every rank, resumable), and the DataModule following the loss's request."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mvf_lightning.data.contract import TrainingBatches
from mvf_lightning.data.dataset_datamodules import PennActionDataModule
from mvf_lightning.data.datasets import EpochSeededSampler, SameGroupSampler
from mvf_lightning.data.sampling import OffsetUniformSampler, TimeAugmentSampler
from mvf_lightning.errors import ConfigError
from mvf_lightning.losses import TCC, TCN, Classification

SMALL = {"num_frames": 8, "crop_size": 16, "num_workers": 0}


def test_offset_uniform_draws_sorted_distinct_frames_of_the_whole_video():
    sampler = OffsetUniformSampler(10)
    seen = set()
    for seed in range(30):
        sample = sampler(40, np.random.default_rng(seed))
        steps = sample.steps[0]
        assert sample.steps.shape == (1, 10) and sample.masks.all()
        assert (np.diff(steps) > 0).all() and steps[0] >= 0 and steps[-1] < 40
        seen.update(steps.tolist())
    assert len(seen) > 35  # from the whole video, not a window


def test_offset_uniform_on_a_short_video_masks_the_steps_past_its_end():
    sample = OffsetUniformSampler(10)(6, np.random.default_rng(0))
    assert sample.steps[0].tolist() == [0, 1, 2, 3, 4, 5, 5, 5, 5, 5]
    assert sample.masks[0].tolist() == [True] * 6 + [False] * 4


def test_tcn_layout_pairs_each_anchor_with_a_positive_just_before_it():
    sampler = OffsetUniformSampler(12, positive_window=5)
    offsets = set()
    for seed in range(50):
        rng = np.random.default_rng(seed)
        sample = sampler(30, rng)
        anchors = OffsetUniformSampler(6)(30, np.random.default_rng(seed)).steps[0]
        steps, masks = sample.steps[0], sample.masks[0]
        assert steps.shape == (12,)
        assert steps[0::2].tolist() == anchors.tolist()  # T / 2 offset_uniform anchors
        offset = steps[0::2] - steps[1::2]
        unclamped = masks[1::2]  # a positive before frame 0 is masked and clamped to 0
        assert ((offset[unclamped] >= 1) & (offset[unclamped] <= 5)).all()
        assert (steps[1::2][~unclamped] == 0).all() and (anchors[~unclamped] <= 4).all()
        offsets.update(offset[unclamped].tolist())
    assert offsets == {1, 2, 3, 4, 5}
    with pytest.raises(ValueError, match="num_frames must be even, got 7"):
        OffsetUniformSampler(7, positive_window=5)


def test_time_augment_with_one_view_is_the_first_of_two():
    one = TimeAugmentSampler(8, views=1)(50, np.random.default_rng(4))
    two = TimeAugmentSampler(8)(50, np.random.default_rng(4))
    assert one.steps.shape == (1, 8)
    assert np.array_equal(one.steps[0], two.steps[0])
    with pytest.raises(ValueError, match="views must be 1 or 2, got 3"):
        TimeAugmentSampler(8, views=3)


GROUPS = ["a"] * 5 + ["b"] * 3 + ["c"] * 1 + ["d"] * 4


def _runs(sampler: SameGroupSampler) -> list[list[int]]:
    order = [i for i, _ in sampler]
    size = sampler.batch_size
    return [order[k:k + size] for k in range(0, len(order), size)]


@pytest.mark.parametrize("world", [1, 2])
def test_same_group_batches_hold_one_group_on_every_rank(world):
    data = list(range(len(GROUPS)))
    samplers = [SameGroupSampler(data, GROUPS, 2, num_replicas=world, rank=r, seed=3)
                for r in range(world)]
    lengths = {len(list(s)) for s in samplers}
    assert lengths == {(len(GROUPS) + world - 1) // world // 2 * 2}  # equal on every rank
    drawn = set()
    for epoch in range(20):
        for s in samplers:
            s.set_epoch(epoch)
            for run in _runs(s):
                assert len({GROUPS[i] for i in run}) == 1 and len(set(run)) == 2
                drawn.add(GROUPS[run[0]])
    assert drawn == {"a", "b", "d"}  # "c" has too few videos for a batch of 2


def test_same_group_order_is_seeded_per_epoch_and_rank_and_resumes_part_way():
    data = list(range(len(GROUPS)))
    a = SameGroupSampler(data, GROUPS, 2, num_replicas=2, rank=0, seed=3)
    b = SameGroupSampler(data, GROUPS, 2, num_replicas=2, rank=1, seed=3)
    a.set_epoch(1)
    b.set_epoch(1)
    first, other = list(a), list(b)
    assert first == list(a) and first != other
    a.set_epoch(2)
    assert list(a) != first
    a.resume_at(1, 2)
    assert list(a) == first[2:]
    assert len(list(a)) == len(first)  # only the resumed pass skips
    with pytest.raises(ValueError, match="need a group with that many"):
        SameGroupSampler(data, GROUPS, 6)


def _attach(dm, loss):
    module = SimpleNamespace(loss=loss, training_batches=loss.batches)
    dm.trainer = SimpleNamespace(lightning_module=module, training=True, world_size=1,
                                 global_rank=0)


def test_datamodule_follows_the_loss_unless_told_otherwise(tiny_root):
    dm = PennActionDataModule(str(tiny_root), batch_size=2, **SMALL)
    assert dm.training_batches() == TrainingBatches()  # no model: SCL's two views
    _attach(dm, TCN(positive_window=3))
    assert isinstance(dm.sampler, OffsetUniformSampler) and dm.sampler.positive_window == 3
    _attach(dm, TCC())
    assert dm.training_batches() == TrainingBatches(views=1, same_group=True)
    shuffled = PennActionDataModule(str(tiny_root), batch_size=2, train_batches="shuffled",
                                    **SMALL)
    _attach(shuffled, TCC())
    assert shuffled.training_batches() == TrainingBatches(views=1)
    wrong = PennActionDataModule(str(tiny_root), train_views=2, **SMALL)
    _attach(wrong, TCN())
    with pytest.raises(ConfigError, match="data.train_views=2 but model.loss TCN trains on 1"):
        wrong.training_batches()
    no_labels = PennActionDataModule(str(tiny_root), train_labels=False, **SMALL)
    _attach(no_labels, Classification())
    with pytest.raises(ConfigError, match="train_labels=false but model.loss Classification"):
        no_labels.training_batches()
    time_augment = PennActionDataModule(str(tiny_root), train_sampling="time_augment", **SMALL)
    _attach(time_augment, TCN())
    with pytest.raises(ConfigError, match="offset_uniform"):
        time_augment.training_batches()
    with pytest.raises(ConfigError, match="train_batches must be auto, shuffled or same_group"):
        PennActionDataModule(str(tiny_root), train_batches="grouped", **SMALL)


def test_same_action_batches_of_one_view_with_labels(tiny_root):
    dm = PennActionDataModule(str(tiny_root), batch_size=2, train_labels=True, **SMALL)
    _attach(dm, TCC())
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, SameGroupSampler)
    groups = {0: "alpha", 1: "alpha", 2: "beta", 3: "beta"}
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            assert batch["frames"].shape == (2, 1, 8, 3, 32, 32)
            assert len({groups[int(i)] for i in batch["index"]}) == 1
            labels = batch["labels"]
            assert labels.shape == (2, 1, 8) and labels.dtype == torch.int64
            for row, i in enumerate(batch["index"].tolist()):
                record = dm.train_dataset.record(i)
                expected = dm.train_dataset.labels(i, record.num_frames)[batch["steps"][row, 0]]
                assert labels[row, 0].tolist() == expected.tolist()


def test_classification_batches_carry_labels_and_tcn_batches_alternate_anchors(tiny_root):
    dm = PennActionDataModule(str(tiny_root), batch_size=2, **SMALL)
    _attach(dm, Classification())
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(dm.train_dataloader().sampler, EpochSeededSampler)
    assert batch["labels"].shape == (2, 1, 8) and batch["frames"].shape[1] == 1
    tcn = PennActionDataModule(str(tiny_root), batch_size=2, **SMALL)
    _attach(tcn, TCN())
    tcn.setup("fit")
    batch = next(iter(tcn.train_dataloader()))
    assert "labels" not in batch
    steps, masks = batch["steps"][:, 0], batch["masks"][:, 0]
    gaps = (steps[:, 0::2] - steps[:, 1::2])[masks[:, 1::2]]
    assert ((gaps >= 1) & (gaps <= 5)).all()


def test_paper_crop_on_videos_stored_at_another_size_warns_once(tiny_root):
    """tiny_root holds 32 x 32 videos; Penn Action's paper configs expect 224 x 224 frames."""
    dm = PennActionDataModule(str(tiny_root), eval_crop="native", **SMALL)
    with pytest.warns(UserWarning, match=r"stored at 32x32 .*eval_crop=native expects the "
                                         r"224x224 frames.*--size 224"):
        dm.setup("validate")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dm.setup("validate")  # once
        PennActionDataModule(str(tiny_root), eval_crop="resize", **SMALL).setup("validate")


def test_sampling_and_step_seeds_follow_seed_everything(tiny_root, monkeypatch):
    """As the reference (seed 1): one seed_everything sets frame sampling, shuffling,
    augmentation and dropout; an explicit data.seed / model.step_seed still wins."""
    from mvf_lightning.training.module import MVFormerModule

    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    assert PennActionDataModule(str(tiny_root), **SMALL).seed == 7
    assert PennActionDataModule(str(tiny_root), seed=3, **SMALL).seed == 3
    module = MVFormerModule.__new__(MVFormerModule)
    module._step_seed = "auto"
    assert module.step_seed == 7
    module._step_seed = None
    assert module.step_seed is None
    monkeypatch.delenv("PL_GLOBAL_SEED")
    assert PennActionDataModule(str(tiny_root), **SMALL).seed == 0
