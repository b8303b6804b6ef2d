"""The two pieces of state a Lightning checkpoint lacks: RNG per training batch, and the
position inside an epoch's data order."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from mvf_lightning.data.datasets import EpochSeededSampler
from mvf_lightning.training.exact_resume import seed_training_batch

pytestmark = pytest.mark.faults


class _Items:
    def __init__(self, n: int) -> None:
        self.n, self.epoch = n, 0

    def __len__(self) -> int:
        return self.n


def test_resume_at_skips_the_items_seen_once_then_gives_whole_epochs():
    full = EpochSeededSampler(_Items(10), seed=3)
    full.set_epoch(2)
    order = list(full)
    resumed = EpochSeededSampler(_Items(10), seed=3)
    resumed.resume_at(2, 4)
    assert list(resumed) == order[4:]
    assert resumed.dataset.epoch == 2
    assert list(resumed) == order  # the next pass is a whole epoch again
    resumed.set_epoch(3)
    assert [e for _, e in resumed] == [3] * 10


def test_a_skip_is_for_its_epoch_only():
    """Without workers a DataLoader starts its pass at its first batch, which after a
    checkpoint at an epoch's last batch is in the next epoch: that pass is whole."""
    full = EpochSeededSampler(_Items(10), seed=3)
    full.set_epoch(3)
    order = list(full)
    resumed = EpochSeededSampler(_Items(10), seed=3)
    resumed.resume_at(2, 10)  # every item of epoch 2 was trained
    resumed.set_epoch(3)  # what Lightning does when the next epoch starts
    assert list(resumed) == order


def test_resume_at_works_per_rank_shard():
    shards = [EpochSeededSampler(_Items(9), num_replicas=2, rank=r, seed=1) for r in range(2)]
    for s in shards:
        s.set_epoch(1)
    orders = [list(s) for s in shards]
    again = EpochSeededSampler(_Items(9), num_replicas=2, rank=1, seed=1)
    again.resume_at(1, 3)
    assert list(again) == orders[1][3:]
    with pytest.raises(ValueError, match="cannot skip"):
        again.resume_at(1, 99)


def _trainer(epoch: int, batch: int):
    progress = SimpleNamespace(current=SimpleNamespace(ready=batch))
    return SimpleNamespace(
        current_epoch=epoch, fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(
            batch_progress=progress))
    )


def test_each_training_batch_draws_from_its_own_seed():
    def draw(epoch, batch, rank=0, seed=0):
        torch.rand(7)  # whatever ran before must not matter
        seed_training_batch(_trainer(epoch, batch), seed, rank)
        return torch.rand(3)

    assert torch.equal(draw(1, 2), draw(1, 2))
    distinct = [draw(1, 2), draw(1, 3), draw(2, 2), draw(1, 2, rank=1), draw(1, 2, seed=1)]
    for i in range(len(distinct)):
        for j in range(i + 1, len(distinct)):
            assert not torch.equal(distinct[i], distinct[j])
