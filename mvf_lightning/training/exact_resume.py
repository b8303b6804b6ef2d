"""What makes a resumed fit repeat an uninterrupted one step for step, from any checkpoint.

Three things are not right in a Lightning (2.6) checkpoint as Lightning restores it:

* The global RNG (augmentation on the accelerator and dropout draw from it). It is made a
  function of the position: :func:`seed_training_batch` reseeds from ``(seed, epoch, batch of
  the epoch, rank)`` before each training batch is augmented.
* The position in the data order. :class:`ExactResume` tells every
  :class:`~mvf_lightning.data.datasets.EpochSeededSampler` the epoch and the items already
  trained, then recreates the iterator: Lightning creates it before the sampler learns the
  resumed epoch, and with DataLoader workers the first indices are drawn at that moment.
* The loop progress of two kinds of checkpoint. :func:`normalize_resume_point` rewrites them
  into states Lightning continues correctly:

  - written in the epoch's *last* ``on_train_batch_end`` (``every_n_train_steps`` landing on
    the epoch's end, the requeue's HPC checkpoint after the last batch): Lightning would
    count the epoch as finished, skipping its validation and the epoch-end hooks, and then
    skip the next epoch's start (its sampler epoch, progress bar, counters), so a checkpoint
    of the resumed run restarted that epoch once more. It becomes "every batch trained, the
    epoch's end (validation, epoch-end hooks) still to do".
  - written during a validation (SIGTERM, or a requeue signal then): Lightning would continue
    it from the next batch, or skip it; the alignment metrics need every video, so it is
    redone from its first video.

Lightning's checkpoint format and loops are internal: they are read and written in
:mod:`.lightning_private` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from .lightning_private import (
    batches_started,
    normalize_fit_loop_state,
    restart_training_iterator,
    training_dataloaders,
)

__all__ = [
    "ExactResume",
    "ResumePoint",
    "continue_data_order",
    "normalize_resume_point",
    "seed_training_batch",
    "training_position",
]


def training_position(trainer: Any) -> tuple[int, int]:
    """``(epoch, batches of that epoch already trained)`` of the next training batch."""
    return int(trainer.current_epoch), batches_started(trainer)


def seed_training_batch(trainer: Any, seed: int, rank: int) -> None:
    """Reseed torch's global RNG (every device) for the training batch about to be prepared."""
    epoch, batch = training_position(trainer)
    state = np.random.SeedSequence([int(seed), epoch, batch, int(rank)]).generate_state(2)
    torch.manual_seed(int(state[0]) << 32 | int(state[1]))


@dataclass(frozen=True)
class ResumePoint:
    """Where a fit resumed from a checkpoint continues its data order."""

    epoch: int
    """The epoch whose batches come next."""
    batches_done: int
    """Batches of that epoch already trained (0 at an epoch boundary)."""
    all_batches_done: bool = False
    """Every batch of ``epoch`` was trained; only its end (validation, hooks) is left."""


def normalize_resume_point(checkpoint: dict) -> ResumePoint | None:
    """Rewrite the loop progress of ``checkpoint`` (in place) into a state Lightning resumes
    exactly (see the module doc) and return where the data order continues; None for a
    checkpoint without training loop state."""
    state = normalize_fit_loop_state(checkpoint)
    return None if state is None else ResumePoint(*state)


def continue_data_order(trainer: Any, point: ResumePoint) -> int:
    """Continue every :class:`EpochSeededSampler` of the training loader at ``point`` and
    recreate the loader's iterator (Lightning made it before the sampler's epoch was known).
    Called from ``on_train_start`` of a resumed fit. Returns the batches skipped."""
    from ..data.datasets import EpochSeededSampler

    resumed = False
    for dl in training_dataloaders(trainer):
        sampler = getattr(dl, "sampler", None)
        if isinstance(sampler, EpochSeededSampler):
            if point.all_batches_done:
                seen = sampler.num_samples
            else:
                seen = min(point.batches_done * (getattr(dl, "batch_size", None) or 1),
                           sampler.num_samples)
            sampler.resume_at(point.epoch, seen)
            resumed = True
    if not resumed or not restart_training_iterator(trainer):
        return 0
    return point.batches_done


class ExactResume(Callback):
    """Resuming a fit from any checkpoint continues where it was written (see module doc):
    the loop state is normalised when the checkpoint is loaded, and the data order is
    continued when training starts."""

    def __init__(self) -> None:
        self._point: ResumePoint | None = None

    def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict) -> None:
        fn = getattr(getattr(trainer, "state", None), "fn", None)
        self._point = normalize_resume_point(checkpoint) if fn in (None, "fit") else None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        point, self._point = self._point, None
        if point is not None and trainer.ckpt_path is not None:
            continue_data_order(trainer, point)
