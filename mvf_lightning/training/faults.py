"""What a fit leaves behind when it stops early.

* :class:`SigtermCheckpoint`: on SIGTERM (what schedulers send before a kill) Lightning stops
  the loops with :class:`SIGTERMException`; this saves a resumable checkpoint of the position
  reached and records where, so the CLI exits non-zero with a line saying how to resume.
  Under Slurm the checkpoint is Lightning's own HPC checkpoint (``hpc_ckpt_<n>.ckpt`` in the
  root dir), which a requeued job restores by itself.
* :class:`NoEmptyLogDir`: a fit that fails before its first training step removes the log
  folder (``version_N``) it had just created, if nothing but the run's config is in it.
* :class:`~.slurm_requeue.RequeueAtStepBoundary`: Slurm's requeue signal is acted
  on where every rank is at the same point (see that module).
* :class:`RunStatus`: how the fit is going or ended (``status.json`` in each log folder, read
  by ``results``; see :mod:`mvf_lightning.tracking.run_status`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ..tracking.run_status import STATUS_FILE, read_status, write_status
from .exact_resume import ExactResume
from .lightning_private import hpc_checkpoint_path
from .slurm_requeue import RequeueAtStepBoundary

__all__ = [
    "INTERRUPTED_CHECKPOINT",
    "NoEmptyLogDir",
    "RunStatus",
    "SigtermCheckpoint",
    "fault_callbacks",
    "logger_run_folder",
    "record_status",
    "remove_empty_log_dirs",
]

INTERRUPTED_CHECKPOINT = "interrupted.ckpt"
_RUN_FILES = {"config.yaml", "hparams.yaml", STATUS_FILE}


def _checkpoint_dir(trainer: Any) -> str:
    callback = trainer.checkpoint_callback
    dirpath = getattr(callback, "dirpath", None)
    return str(dirpath) if dirpath else os.path.join(trainer.default_root_dir, "checkpoints")


class SigtermCheckpoint(Callback):
    """Saves a resumable checkpoint when Lightning stops a fit on SIGTERM.

    The path is attached to the exception as ``checkpoint_path`` (None if training had not
    started: there is nothing to resume then).
    """

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        exception.checkpoint_path = None
        exception.position = (trainer.current_epoch, trainer.global_step)
        if trainer.state.fn != "fit" or trainer.global_step == 0:
            return
        if SLURMEnvironment.detect():
            path = hpc_checkpoint_path(trainer)
        else:
            path = os.path.join(_checkpoint_dir(trainer), INTERRUPTED_CHECKPOINT)
        trainer.save_checkpoint(path, weights_only=False)  # every rank calls it; rank 0 writes
        exception.checkpoint_path = path


class NoEmptyLogDir(Callback):
    """Notes the logger's folders when a fit fails before its first training step;
    :func:`remove_empty_log_dirs` (called by the CLI once the loggers have closed) removes
    those that hold nothing but the run's config and hyperparameters."""

    pending: list[str] = []

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if trainer.global_step > 0 or not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            log_dir = getattr(logger, "log_dir", None)
            if log_dir and os.path.isdir(log_dir):
                NoEmptyLogDir.pending.append(str(log_dir))


def _only_run_files(folder: str) -> bool:
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        run_file = name in _RUN_FILES or (name.startswith("config_") and name.endswith(".yaml"))
        if not (run_file and os.path.isfile(path)):
            return False
    return True


def remove_empty_log_dirs() -> list[str]:
    """Remove the folders :class:`NoEmptyLogDir` noted, if still free of results."""
    removed = []
    while NoEmptyLogDir.pending:
        folder = NoEmptyLogDir.pending.pop()
        if os.path.isdir(folder) and _only_run_files(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def logger_run_folder(logger: Any) -> Path | None:
    """The folder that represents this run for one logger: W&B's ``<save_dir>/<project>/<run
    id>`` (known without starting a W&B run), another logger's ``log_dir``; None if none."""
    from lightning.pytorch.loggers import WandbLogger

    if isinstance(logger, WandbLogger):
        run_id = logger.version
        return Path(logger.save_dir or ".") / str(logger.name) / str(run_id) if run_id else None
    log_dir = getattr(logger, "log_dir", None)
    return Path(log_dir) if log_dir else None


def _run_folders(trainer: Any) -> list[Path]:
    folders = (logger_run_folder(logger) for logger in trainer.loggers)
    return list(dict.fromkeys(f for f in folders if f is not None))


def record_status(trainer: Any, status: str, **fields: Any) -> None:
    """Write the fit's ``status`` into every logger's run folder (global rank 0)."""
    if not trainer.is_global_zero:
        return
    position = {"epoch": int(trainer.current_epoch), "global_step": int(trainer.global_step)}
    for folder in _run_folders(trainer):
        write_status(folder, status, **position, **fields)


class RunStatus(Callback):
    """Records a fit's state in ``status.json``: ``running`` from its setup (refreshed after
    every training epoch and validation), then ``finished``, ``failed``, ``stopped`` or
    ``requeued`` (see :data:`mvf_lightning.tracking.run_status.STATES`)."""

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == "fit":
            record_status(trainer, "running", exit_code=None, reason="")

    def _refresh(self, trainer: Any, *args: Any) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            record_status(trainer, "running")

    on_train_epoch_end = _refresh
    on_validation_end = _refresh

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        record_status(trainer, "finished", exit_code=0, reason="")

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if trainer.state.fn != "fit" or not trainer.is_global_zero:
            return
        if isinstance(exception, SIGTERMException):
            requeued = any((read_status(f) or {}).get("status") == "requeued"
                           for f in _run_folders(trainer))
            if requeued:
                record_status(trainer, "requeued", exit_code=143,
                              reason="requeued by Slurm, then stopped by its SIGTERM")
            else:
                record_status(trainer, "stopped", exit_code=143, reason="SIGTERM")
        elif isinstance(exception, KeyboardInterrupt):
            record_status(trainer, "stopped", exit_code=1, reason="KeyboardInterrupt")
        else:
            text = " ".join(str(exception).split())[:300]
            record_status(trainer, "failed", exit_code=1,
                          reason=f"{type(exception).__name__}: {text}")


def fault_callbacks() -> list[Callback]:
    """The callbacks every fit gets from the CLI."""
    return [
        SigtermCheckpoint(), NoEmptyLogDir(), RequeueAtStepBoundary(), ExactResume(), RunStatus()
    ]
