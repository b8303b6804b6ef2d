"""A test-only callback that makes each training step last a known minimum time, so a test can
signal or kill a run at a chosen point (between two checkpoints) on any machine."""

from __future__ import annotations

import time

from lightning.pytorch.callbacks import Callback


class SlowTrainingSteps(Callback):
    """Sleep ``seconds`` after every training batch."""

    def __init__(self, seconds: float = 1.0):
        self.seconds = seconds

    def on_train_batch_end(self, *args, **kwargs) -> None:
        time.sleep(self.seconds)
