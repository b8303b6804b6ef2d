"""Pieces the fault tests load into CLI subprocesses (importable as ``tests.faults.helpers``)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import yaml
from lightning.pytorch.callbacks import Callback

from tests.cli_helpers import ROOT, tiny_override


class SigtermAtStep(Callback):
    """Sends this process a real SIGTERM once ``step`` optimiser steps are done, as a
    scheduler would (deterministic, unlike a kill from outside at some moment)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


class SigtermInValidation(Callback):
    """Sends this process a real SIGTERM after the ``batch``-th video of the validation of
    ``epoch``, with the DataLoader workers of training and validation alive."""

    def __init__(self, epoch: int = 0, batch: int = 1) -> None:
        self.epoch, self.batch = epoch, batch

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx=0) -> None:
        if not trainer.sanity_checking and (trainer.current_epoch, batch_idx) == (
            self.epoch, self.batch
        ):
            os.kill(os.getpid(), signal.SIGTERM)


class KillAtValidationStart(Callback):
    """``kill -9`` of this process when the first validation starts: after the epoch's
    last-batch checkpoint, before the validation and the epoch-end checkpoints."""

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            os.kill(os.getpid(), signal.SIGKILL)


class FailInValidation(Callback):
    """Raises a real failure inside the first validation, with DataLoader workers alive."""

    def on_validation_batch_end(self, trainer, *args, **kwargs) -> None:
        if not trainer.sanity_checking:
            raise RuntimeError("a failure inside the validation")


def resume_config(tmp: Path, demo_root: Path, callback: dict | None = None) -> list[str]:
    """``--config`` args for a tiny fit of 2 epochs x 4 steps, DataLoader workers on, that
    logs every step's loss, validates after each epoch and checkpoints every 2 steps
    (``tmp/ckpt/steps``: steps 2 and 6 mid-epoch, 4 and 8 in the epoch's last batch), at each
    epoch's end (``tmp/ckpt/epochs``) and after each validation (``tmp/ckpt/val``)."""
    path = tiny_override(tmp, demo_root, tmp / "ckpt", tmp / "logs")
    config = yaml.safe_load(path.read_text())
    config["trainer"].update(max_epochs=2, limit_train_batches=4, log_every_n_steps=1)
    config["data"]["init_args"]["num_workers"] = 2
    checkpoint = "lightning.pytorch.callbacks.ModelCheckpoint"
    callbacks = [
        {"class_path": "mvf_lightning.evaluation.callback.AlignmentEvaluation"},
        {"class_path": checkpoint, "init_args": {
            "dirpath": str(tmp / "ckpt" / "steps"), "every_n_train_steps": 2,
            "every_n_epochs": None, "save_top_k": -1, "monitor": None,
            "filename": "{epoch}-{step}"}},
        {"class_path": checkpoint, "init_args": {
            "dirpath": str(tmp / "ckpt" / "epochs"), "save_top_k": -1, "monitor": None,
            "save_on_train_epoch_end": True, "save_last": True}},
        {"class_path": checkpoint, "init_args": {
            "dirpath": str(tmp / "ckpt" / "val"), "save_top_k": -1, "monitor": MONITOR,
            "mode": "max", "filename": "{epoch}-{step}-val"}},
    ]
    if callback is not None:
        callbacks.append(callback)
    config["trainer"]["callbacks"] = callbacks
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return ["--config", str(ROOT / "configs" / "demo.yaml"), "--config", str(path)]


def sigterm_at(step: int) -> dict:
    return {"class_path": "tests.faults.helpers.SigtermAtStep", "init_args": {"step": step}}


MONITOR = "val/demo/mean/kendalls_tau"


def step_losses(log_dir: Path) -> dict[int, float]:
    """``step -> train/loss`` from every CSV log under ``log_dir`` (step counted from 1)."""
    return {k: v for k, v in logged(log_dir).items() if isinstance(k, int)}


def logged(log_dir: Path) -> dict:
    """``step -> train/loss`` (step counted from 1) and ``("tau", epoch) -> mean Kendall's
    tau`` from every CSV log under ``log_dir``."""
    import csv

    out: dict = {}
    for path in sorted(log_dir.glob("**/metrics.csv")):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                value = row.get("train/loss") or row.get("train/loss_step")
                if value:
                    out[int(row["step"]) + 1] = float(value)
                if row.get(MONITOR):
                    out[("tau", int(row["epoch"]))] = float(row[MONITOR])
    return out
