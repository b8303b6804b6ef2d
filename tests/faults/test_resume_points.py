"""Resuming from any checkpoint Lightning writes continues exactly where it was written: the
same batches in the same order, every validation the uninterrupted fit ran after that point
(redone when the checkpoint interrupted or preceded it), nothing trained twice. With DataLoader
workers on, as in every real config (they draw the first indices when the iterator is made).

Lightning's real loops on a small model (seconds); ``test_fit_faults.py`` checks the same per
step losses through the CLI on MV-Former."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel
from torch.utils.data import DataLoader, Dataset

from mvf_lightning.data.datasets import EpochSeededSampler, worker_leaves_signals_to_main
from mvf_lightning.training.exact_resume import ExactResume, ResumePoint, normalize_resume_point

pytestmark = pytest.mark.faults

EPOCHS, ITEMS, BATCH = 3, 8, 2  # 4 batches per epoch


class _Items(Dataset):
    """Item ``(index, epoch)`` (what :class:`EpochSeededSampler` yields) -> its index and a
    vector that depends on both."""

    def __len__(self) -> int:
        return ITEMS

    def __getitem__(self, item: tuple[int, int]):
        index, epoch = item
        g = torch.Generator().manual_seed(1000 * epoch + index)
        return index, torch.randn(32, generator=g)


class _Recorder(BoringModel):
    """Records what each training step and validation saw."""

    def __init__(self, num_workers: int = 2) -> None:
        super().__init__()
        self.num_workers = num_workers
        self.steps: list[tuple[int, tuple[int, ...]]] = []
        self.validations: list[int] = []

    def training_step(self, batch, batch_idx):
        index, x = batch
        self.steps.append((self.current_epoch, tuple(index.tolist())))
        return super().training_step(x, batch_idx)

    def validation_step(self, batch, batch_idx):
        out = super().validation_step(batch[1], batch_idx)
        self.log("val_loss", out["x"])
        return out

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.validations.append(self.current_epoch)

    def train_dataloader(self):
        sampler = EpochSeededSampler(_Items(), seed=0)
        workers = {"num_workers": self.num_workers}
        if self.num_workers:
            workers.update(worker_init_fn=worker_leaves_signals_to_main,
                           multiprocessing_context="fork")
        return DataLoader(_Items(), batch_size=BATCH, sampler=sampler, **workers)

    def val_dataloader(self):
        return DataLoader([(i, 0) for i in range(2)], batch_size=1,
                          collate_fn=lambda b: _collate([_Items()[x] for x in b]))


def _collate(items):
    return torch.tensor([i for i, _ in items]), torch.stack([x for _, x in items])


def _fit(root: Path, ckpt: str | None = None, num_workers: int = 2) -> _Recorder:
    model = _Recorder(num_workers)
    callbacks = [
        ExactResume(),
        ModelCheckpoint(dirpath=root / "steps", every_n_train_steps=2, save_top_k=-1,
                        filename="{epoch}-{step}"),
        ModelCheckpoint(dirpath=root / "ends", save_on_train_epoch_end=True, save_top_k=-1,
                        filename="{epoch}-{step}-end"),
        ModelCheckpoint(dirpath=root / "val", save_top_k=-1, monitor="val_loss",
                        filename="{epoch}-{step}-val"),
    ]
    trainer = Trainer(
        default_root_dir=root, max_epochs=EPOCHS, callbacks=callbacks, logger=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        accelerator="cpu", devices=1,
    )
    trainer.fit(model, ckpt_path=ckpt)
    assert trainer.global_step == EPOCHS * ITEMS // BATCH  # nothing trained twice or skipped
    return model


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, _Recorder]:
    root = tmp_path_factory.mktemp("uninterrupted")
    model = _fit(root)
    assert model.validations == [0, 1, 2]
    assert len(model.steps) == 12
    return root, model


@pytest.mark.parametrize(
    ("ckpt", "first_step", "first_validation"),
    [
        ("steps/epoch=0-step=2.ckpt", 2, 0),  # mid-epoch, on_train_batch_end
        ("steps/epoch=0-step=4.ckpt", 4, 0),  # the epoch's last batch, before its validation
        ("val/epoch=0-step=4-val.ckpt", 4, 1),  # after the epoch's validation
        ("ends/epoch=0-step=4-end.ckpt", 4, 1),  # at the epoch's end
        ("steps/epoch=1-step=8.ckpt", 8, 1),  # the last batch of a later epoch
    ],
)
@pytest.mark.parametrize("num_workers", [2, 0])
def test_resume_continues_exactly_where_the_checkpoint_was_written(
    tmp_path, uninterrupted, ckpt, first_step, first_validation, num_workers
):
    root, full = uninterrupted
    resumed = _fit(tmp_path, str(root / ckpt), num_workers)
    assert resumed.steps == full.steps[first_step:]
    assert resumed.validations == full.validations[first_validation:]


def test_a_checkpoint_of_a_resumed_fit_resumes_exactly_too(tmp_path, uninterrupted):
    """A resumed fit's own checkpoints: the next epoch started normally (Lightning skipped its
    start after a last-batch checkpoint, and a checkpoint of it then restarted the epoch)."""
    root, full = uninterrupted
    _fit(tmp_path / "second", str(root / "steps" / "epoch=0-step=4.ckpt"))
    for ckpt, first_step in (("epoch=1-step=6.ckpt", 6), ("epoch=1-step=8.ckpt", 8)):
        again = _fit(tmp_path / ckpt, str(tmp_path / "second" / "steps" / ckpt))
        assert again.steps == full.steps[first_step:]


def _progress(ready, started, processed, completed, last=False):
    counts = dict(ready=ready, started=started, processed=processed, completed=completed)
    return {"total": dict(counts), "current": dict(counts), "is_last_batch": last}


def _checkpoint(epoch, batches, validation):
    return {"loops": {"fit_loop": {
        "epoch_progress": _progress(*epoch),
        "epoch_loop.batch_progress": batches,
        "epoch_loop.val_loop.batch_progress": validation,
    }}}


def test_the_epochs_last_batch_end_becomes_before_its_validation():
    ckpt = _checkpoint((1, 1, 0, 0), _progress(4, 4, 4, 3, last=True), _progress(0, 0, 0, 0))
    assert normalize_resume_point(ckpt) == ResumePoint(0, 4, all_batches_done=True)
    fit = ckpt["loops"]["fit_loop"]
    assert fit["epoch_loop.batch_progress"] == _progress(4, 4, 4, 4, last=True)
    # Lightning's "restarted mid-evaluation" with nothing done: it runs the validation.
    validation = fit["epoch_loop.val_loop.batch_progress"]
    assert validation["total"] == dict(ready=1, started=1, processed=0, completed=0)
    assert validation["current"] == dict(ready=0, started=0, processed=0, completed=0)


def test_an_interrupted_validation_is_redone_from_its_first_video():
    # Inside a step, inside a batch hook, between two batches, inside the last step.
    for counts in [(4, 4, 3, 3), (4, 4, 4, 3), (4, 4, 4, 4), (6, 6, 5, 5, True)]:
        ckpt = _checkpoint((1, 1, 0, 0), _progress(4, 4, 4, 4, last=True), _progress(*counts))
        assert normalize_resume_point(ckpt) == ResumePoint(0, 4, all_batches_done=True)
        progress = ckpt["loops"]["fit_loop"]["epoch_loop.val_loop.batch_progress"]
        n = counts[1]
        assert progress["total"] == dict(ready=n, started=n, processed=n - 1, completed=n - 1)
        assert progress["current"] == dict(ready=0, started=0, processed=0, completed=0)
        assert progress["is_last_batch"] is False


def test_other_checkpoints_are_left_as_lightning_wrote_them():
    finished_validation = _progress(6, 6, 6, 6, last=True)
    cases = [
        (_checkpoint((1, 1, 0, 0), _progress(2, 2, 2, 1), _progress(0, 0, 0, 0)),
         ResumePoint(0, 2)),  # mid-epoch
        (_checkpoint((1, 1, 0, 0), _progress(4, 4, 4, 4, last=True), finished_validation),
         ResumePoint(0, 4, all_batches_done=True)),  # after the validation
        (_checkpoint((1, 1, 1, 0), _progress(4, 4, 4, 4, last=True), finished_validation),
         ResumePoint(1, 0)),  # at the epoch's end
    ]
    for ckpt, point in cases:
        before = copy.deepcopy(ckpt)
        assert normalize_resume_point(ckpt) == point
        assert ckpt == before
    assert normalize_resume_point({}) is None
    assert normalize_resume_point({"loops": {}}) is None
