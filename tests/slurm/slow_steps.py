"""A test-only callback that makes each training and validation step last a known minimum
time and marks when a validation starts, so a test can signal or kill a run at a chosen point
(between two checkpoints, or inside a validation) on any machine. Only a fit that starts from
scratch is slowed: what continues it (a requeued job, ``--resume auto``) and a ``validate`` of
its checkpoint run at full speed."""

from __future__ import annotations

import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback


class SlowTrainingSteps(Callback):
    """Sleep ``seconds`` after every training batch and ``validation_seconds`` after every
    validation batch of a fit not restored from a checkpoint; with ``marker_dir``, rank 0
    touches ``validating-<epoch>`` there when a validation starts."""

    def __init__(
        self, seconds: float = 1.0, validation_seconds: float = 0.0, marker_dir: str | None = None
    ):
        self.seconds = seconds
        self.validation_seconds = validation_seconds
        self.marker_dir = marker_dir
        self.active = False

    def on_train_start(self, trainer, pl_module) -> None:
        self.active = trainer.ckpt_path is None  # any checkpoint is restored by now

    def on_train_batch_end(self, *args, **kwargs) -> None:
        if self.active:
            time.sleep(self.seconds)

    def on_validation_start(self, trainer, pl_module) -> None:
        if self.marker_dir and trainer.is_global_zero and not trainer.sanity_checking:
            Path(self.marker_dir, f"validating-{trainer.current_epoch}").touch()

    def on_validation_batch_end(self, *args, **kwargs) -> None:
        if self.active:
            time.sleep(self.validation_seconds)
