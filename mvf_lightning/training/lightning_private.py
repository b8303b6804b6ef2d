"""Every use of Lightning's private API (and of its internal checkpoint format), in one place.

Checked with Lightning 2.6.6; ``pyproject.toml`` bounds ``lightning`` to :data:`TESTED` and
``tests/training/test_lightning_private.py`` exercises each function on a real Trainer, so a
Lightning upgrade that changes one of them fails there, naming it. Where a public hook does
the job it is used instead (e.g. ``LightningCLI(trainer_defaults=...)`` for the callbacks every
fit gets, ``parse_arguments`` / ``before_instantiate_classes`` around ``--ckpt_path``).

Why each is needed:

* :func:`hpc_checkpoint_path`: on SIGTERM under Slurm the checkpoint must be Lightning's next
  ``hpc_ckpt_<n>.ckpt``, the one a requeued job restores by itself; only the checkpoint
  connector knows the name.
* :func:`cluster_environment`: the requeue callback acts only under the SLURMEnvironment the
  trainer really uses (a plugin may turn its auto-requeue off); the strategy does not expose
  it on one device.
* :func:`run_slurm_requeue`: Lightning's requeue (HPC checkpoint, ``scontrol requeue``) exists
  only as its signal handler; the requeue callback runs it at a step boundary instead.
* :func:`restart_training_iterator`: resuming mid-epoch continues the sampler's order and makes
  a new iterator; the training loader and fetcher are the fit loop's private attributes.
* :func:`batches_started`: the position of the next training batch in its epoch (its RNG seed).
* :func:`attached_trainer`: a LightningModule's trainer, or None outside a fit (the public
  property raises when none is attached).
* :func:`normalize_fit_loop_state` / :func:`epochs_and_steps_done`: the ``loops`` entry of a
  checkpoint is Lightning's internal format (progress counters per loop).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = [
    "TESTED",
    "attached_trainer",
    "batches_started",
    "cluster_environment",
    "epochs_and_steps_done",
    "hpc_checkpoint_path",
    "normalize_fit_loop_state",
    "restart_training_iterator",
    "run_slurm_requeue",
    "training_dataloaders",
]

TESTED = ">=2.6,<2.7"
"""The Lightning versions this module was checked with (``pyproject.toml``'s bound)."""

_FIT = "fit_loop"
_BATCHES = "epoch_loop.batch_progress"
_VALIDATION = "epoch_loop.val_loop.batch_progress"


# ----------------------------------------------------------------------------- the trainer
def hpc_checkpoint_path(trainer: Any) -> str:
    """Path of the next ``hpc_ckpt_<n>.ckpt`` in the trainer's root dir (Slurm restores it)."""
    return trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir)


def cluster_environment(trainer: Any) -> Any:
    """The cluster environment the trainer runs in (``SLURMEnvironment`` under Slurm)."""
    return trainer._accelerator_connector.cluster_environment


def run_slurm_requeue(trainer: Any, signum: int) -> None:
    """Lightning's own Slurm requeue: HPC checkpoint, then ``scontrol requeue`` (rank 0)."""
    trainer._signal_connector._slurm_sigusr_handler_fn(signum, None)


def training_dataloaders(trainer: Any) -> Iterator[Any]:
    """The fit loop's training DataLoaders (after it set them up)."""
    loader = trainer.fit_loop._combined_loader
    yield from loader.flattened if loader is not None else []


def restart_training_iterator(trainer: Any) -> bool:
    """Make the fit loop's training iterator again (Lightning made it before a resumed
    epoch was known); False when there is none yet."""
    fetcher = trainer.fit_loop._data_fetcher
    if fetcher is None:
        return False
    iter(fetcher)
    return True


def batches_started(trainer: Any) -> int:
    """Training batches of the current epoch fetched so far (the next one's index)."""
    return int(trainer.fit_loop.epoch_loop.batch_progress.current.ready)


def attached_trainer(module: Any) -> Any:
    """The trainer a LightningModule is attached to, or None."""
    return module._trainer


# ----------------------------------------------------------------------------- checkpoints
def _counts(progress: dict, part: str = "total") -> tuple[int, int, int, int]:
    c = progress.get(part, {})
    return (int(c.get("ready", 0)), int(c.get("started", 0)), int(c.get("processed", 0)),
            int(c.get("completed", 0)))


def _set(progress: dict, part: str, ready: int, started: int, processed: int,
         completed: int) -> None:
    progress[part] = dict(ready=ready, started=started, processed=processed, completed=completed)


def _validation_interrupted(progress: dict) -> bool:
    """A validation had started in this epoch and not finished its last batch."""
    started = _counts(progress, "current")[1]
    finished = progress.get("is_last_batch") and _counts(progress, "current")[3] == started
    return started > 0 and not finished


def _redo_validation(progress: dict) -> None:
    """Lightning's "restarted mid-evaluation" state with nothing done in the current run:
    the validation runs again from its first batch."""
    n = _counts(progress)[1]
    if not _validation_interrupted(progress):
        n += 1  # not started yet: one batch "started" so that Lightning goes and runs it
    _set(progress, "total", n, n, n - 1, n - 1)
    _set(progress, "current", 0, 0, 0, 0)
    progress["is_last_batch"] = False


def normalize_fit_loop_state(checkpoint: dict) -> tuple[int, int, bool] | None:
    """Rewrite a checkpoint's fit-loop progress (in place) into a state Lightning resumes
    exactly; returns ``(epoch, batches of it trained, all its batches trained)``, or None
    without training loop state.

    * Written in the epoch's *last* ``on_train_batch_end``: Lightning would count the epoch as
      finished (skipping its validation and epoch-end hooks) and then skip the next epoch's
      start. It becomes "every batch trained, the epoch's end still to do".
    * Written during a validation: Lightning would continue it from the next batch, or skip
      it; it is redone from its first batch.
    """
    fit = (checkpoint.get("loops") or {}).get(_FIT)
    if not fit or "epoch_progress" not in fit:
        return None
    _ready, started, processed, _completed = _counts(fit["epoch_progress"], "current")
    epoch = processed
    if started == processed:  # between epochs: the next one starts from its first batch
        return epoch, 0, False
    batches = fit.get(_BATCHES) or {}
    validation = fit.get(_VALIDATION)
    b_ready, b_started, b_processed, b_completed = _counts(batches)
    in_last_batch_end = (
        batches.get("is_last_batch")
        and b_ready == b_started == b_processed
        and b_completed == b_processed - 1
    )
    if in_last_batch_end:
        for part in ("total", "current"):
            r, s, p, _ = _counts(batches, part)
            _set(batches, part, r, s, p, p)
        if validation is not None:
            _redo_validation(validation)
        return epoch, _counts(batches, "current")[2], True
    if validation is not None and _validation_interrupted(validation):
        _redo_validation(validation)
    done = _counts(batches, "current")[2]
    return epoch, done, bool(batches.get("is_last_batch")) and done > 0


def epochs_and_steps_done(checkpoint: dict) -> tuple[int, int]:
    """``(epochs finished, optimiser steps)`` recorded in a checkpoint."""
    progress = (checkpoint.get("loops") or {}).get(_FIT, {}).get("epoch_progress", {})
    epochs = int(progress.get("current", {}).get("processed", checkpoint.get("epoch", 0)))
    return epochs, int(checkpoint.get("global_step", 0))
