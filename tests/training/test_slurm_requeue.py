"""Slurm's requeue signal without a cluster: the fit acts on it at the end of the batch it
arrived in, not inside the handler (workers ignore it: tests/faults/test_worker_signals.py)."""

from __future__ import annotations

import os
import signal

import pytest
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch import Trainer
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.trainer.connectors.signal_connector import _SignalConnector

from mvf_lightning.training.slurm_requeue import RequeueAtStepBoundary


class _SignalledAtStep(BoringModel):
    """Sends itself the requeue signal inside the training step of ``batch``."""

    def __init__(self, batch: int) -> None:
        super().__init__()
        self.batch = batch

    def training_step(self, batch, batch_idx):
        if batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGUSR1)
        return super().training_step(batch, batch_idx)


@pytest.fixture
def slurm_job(monkeypatch):
    """The variables of a one-task Slurm job step (what srun sets)."""
    for key, value in dict(SLURM_NTASKS="1", SLURM_NTASKS_PER_NODE="1", SLURM_JOB_ID="4242",
                           SLURM_JOB_NAME="mvf-test", SLURM_PROCID="0", SLURM_LOCALID="0",
                           SLURM_NODEID="0", SLURM_NODELIST="localhost").items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)


def _fit(tmp_path, monkeypatch, model, auto_requeue=True) -> list[tuple[int, bool]]:
    """Fit 4 steps under a SLURMEnvironment; record each call of Lightning's requeue as
    (global step, whether it ran as a signal handler, i.e. with a frame)."""
    calls = []

    def requeue(self, signum, frame):
        calls.append((self.trainer.global_step, frame is not None))

    monkeypatch.setattr(_SignalConnector, "_slurm_sigusr_handler_fn", requeue)
    trainer = Trainer(default_root_dir=tmp_path, max_steps=4, limit_val_batches=0,
                      logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", devices=1,
                      plugins=[SLURMEnvironment(auto_requeue=auto_requeue)],
                      callbacks=[RequeueAtStepBoundary()])
    trainer.fit(model)
    return calls


def test_requeue_signal_is_acted_on_at_the_end_of_its_batch(tmp_path, monkeypatch, slurm_job):
    previous = signal.getsignal(signal.SIGUSR1)
    calls = _fit(tmp_path, monkeypatch, _SignalledAtStep(batch=1))
    # Once, after batch 1's optimiser step (global step 2), from ordinary code (no frame):
    # Lightning's own handler would have run inside the training step, at global step 1.
    assert calls == [(2, False)]
    assert signal.getsignal(signal.SIGUSR1) == previous  # restored after the fit


def test_requeue_off_leaves_the_signal_to_lightning(tmp_path, monkeypatch, slurm_job):
    previous = signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # so an unhandled one is harmless
    try:
        assert _fit(tmp_path, monkeypatch, _SignalledAtStep(batch=1), auto_requeue=False) == []
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_requeue_signal_in_the_last_step_lets_the_fit_finish(tmp_path, monkeypatch, slurm_job):
    previous = signal.getsignal(signal.SIGUSR1)
    assert _fit(tmp_path, monkeypatch, _SignalledAtStep(batch=3)) == []  # max_steps=4: done
    assert signal.getsignal(signal.SIGUSR1) == previous
