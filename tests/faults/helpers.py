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


def resume_config(tmp: Path, demo_root: Path, sigterm_at: int | None = None) -> list[str]:
    """``--config`` args for a tiny fit of 2 epochs x 3 steps that logs every step's loss and
    checkpoints every 2 steps (``tmp/ckpt/steps``) and every epoch (``tmp/ckpt/epochs``)."""
    path = tiny_override(tmp, demo_root, tmp / "ckpt", tmp / "logs")
    config = yaml.safe_load(path.read_text())
    config["trainer"].update(
        max_epochs=2, limit_train_batches=3, limit_val_batches=0, log_every_n_steps=1
    )
    checkpoint = "lightning.pytorch.callbacks.ModelCheckpoint"
    callbacks = [
        {"class_path": checkpoint, "init_args": {
            "dirpath": str(tmp / "ckpt" / "steps"), "every_n_train_steps": 2,
            "save_top_k": -1, "monitor": None, "filename": "{epoch}-{step}"}},
        {"class_path": checkpoint, "init_args": {
            "dirpath": str(tmp / "ckpt" / "epochs"), "save_top_k": -1, "monitor": None,
            "save_on_train_epoch_end": True, "save_last": True}},
    ]
    if sigterm_at is not None:
        callbacks.append({"class_path": "tests.faults.helpers.SigtermAtStep",
                          "init_args": {"step": sigterm_at}})
    config["trainer"]["callbacks"] = callbacks
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return ["--config", str(ROOT / "configs" / "demo.yaml"), "--config", str(path)]


def step_losses(log_dir: Path) -> dict[int, float]:
    """``step -> train/loss`` from every CSV log under ``log_dir`` (step counted from 1)."""
    import csv

    out: dict[int, float] = {}
    for path in sorted(log_dir.glob("**/metrics.csv")):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                value = row.get("train/loss") or row.get("train/loss_step")
                if value:
                    out[int(row["step"]) + 1] = float(value)
    return out
