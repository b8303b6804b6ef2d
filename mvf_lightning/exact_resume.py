"""What makes a resumed fit repeat an uninterrupted one step for step.

Two pieces of state are not in a Lightning checkpoint: the global RNG (augmentation on the
accelerator and dropout draw from it) and the position of the data order inside an epoch.
The first is made a function of the position: :func:`seed_training_batch` reseeds from
``(seed, epoch, batch of the epoch, rank)`` before each training batch is augmented. The second
is read from Lightning's restored loop progress: :func:`continue_data_order` tells the
:class:`~mvf_lightning.data.datasets.EpochSeededSampler` where the interrupted epoch stopped.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["continue_data_order", "seed_training_batch", "training_position"]


def training_position(trainer: Any) -> tuple[int, int]:
    """``(epoch, batches of that epoch already trained)`` of the next training batch."""
    epoch_loop = trainer.fit_loop.epoch_loop
    return int(trainer.current_epoch), int(epoch_loop.batch_progress.current.ready)


def seed_training_batch(trainer: Any, seed: int, rank: int) -> None:
    """Reseed torch's global RNG (every device) for the training batch about to be prepared."""
    epoch, batch = training_position(trainer)
    state = np.random.SeedSequence([int(seed), epoch, batch, int(rank)]).generate_state(2)
    torch.manual_seed(int(state[0]) << 32 | int(state[1]))


def continue_data_order(trainer: Any) -> int:
    """At the start of a resumed fit, skip the batches the interrupted epoch already trained.

    Called from ``on_train_start`` (after Lightning restored its loop progress and created the
    training iterator): tells every :class:`EpochSeededSampler` of the training loader the
    epoch and the items already seen, then recreates the iterator so that workers start from
    there. Returns the number of batches skipped (0 for a fresh fit or an epoch boundary).
    """
    from .data.datasets import EpochSeededSampler

    fit_loop = trainer.fit_loop
    epoch = int(fit_loop.epoch_progress.current.processed)
    done = int(fit_loop.epoch_loop.batch_progress.current.processed)
    total = trainer.num_training_batches
    if trainer.ckpt_path is None or done <= 0 or done >= total:
        return 0
    loader = fit_loop._combined_loader
    fetcher = fit_loop._data_fetcher
    resumed = False
    for dl in loader.flattened if loader is not None else []:
        sampler = getattr(dl, "sampler", None)
        if isinstance(sampler, EpochSeededSampler):
            seen = done * (getattr(dl, "batch_size", None) or 1)
            sampler.resume_at(epoch, min(seen, sampler.num_samples))
            resumed = True
    if not resumed or fetcher is None:
        return 0
    iter(fetcher)  # Lightning created the iterator before its epoch was known
    return done
