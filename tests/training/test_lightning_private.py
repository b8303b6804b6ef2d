"""Each use of Lightning's private API (training/lightning_private.py) on a real Trainer: a
Lightning upgrade that moves one of them fails here, naming it."""

from __future__ import annotations

import re

import lightning
import torch
from lightning.fabric.plugins.environments import LightningEnvironment, SLURMEnvironment
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from mvf_lightning.training import lightning_private as private
from tests.cli_helpers import ROOT


def test_the_installed_lightning_is_the_tested_one_and_pyproject_bounds_it():
    assert Version(lightning.__version__) in SpecifierSet(private.TESTED), (
        f"Lightning {lightning.__version__} is outside {private.TESTED}, the versions "
        "training/lightning_private.py was checked with: check each function there"
    )
    pyproject = (ROOT / "pyproject.toml").read_text()
    bound = re.search(r'"lightning([^"]*)"', pyproject)[1]
    assert SpecifierSet(bound) == SpecifierSet(private.TESTED)


class _Probe(Callback):
    """Calls the private accessors where the training code calls them."""

    def __init__(self) -> None:
        self.seen: dict = {}

    def on_train_start(self, trainer, pl_module) -> None:
        loaders = list(private.training_dataloaders(trainer))
        self.seen["loaders"] = [type(dl).__name__ for dl in loaders]
        self.seen["restarted"] = private.restart_training_iterator(trainer)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.setdefault("started", []).append(private.batches_started(trainer))

    def on_train_end(self, trainer, pl_module) -> None:
        self.seen["attached"] = private.attached_trainer(pl_module) is trainer


def _fit(tmp_path, **kwargs) -> tuple[Trainer, _Probe]:
    probe = _Probe()
    trainer = Trainer(default_root_dir=tmp_path, max_epochs=2, limit_train_batches=3,
                      limit_val_batches=0, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", devices=1,
                      callbacks=[probe, ModelCheckpoint(dirpath=tmp_path / "ckpt",
                                                        save_top_k=-1, every_n_train_steps=2)],
                      **kwargs)
    trainer.fit(BoringModel())
    return trainer, probe


def test_loop_and_module_accessors(tmp_path):
    trainer, probe = _fit(tmp_path)
    assert probe.seen["loaders"] == ["DataLoader"] and probe.seen["restarted"] is True
    # The next batch's index in its epoch, as it is fetched: 1, 2, 3 in each epoch.
    assert probe.seen["started"] == [1, 2, 3, 1, 2, 3]
    assert probe.seen["attached"] is True
    assert private.attached_trainer(BoringModel()) is None
    assert isinstance(private.cluster_environment(trainer), LightningEnvironment)
    path = private.hpc_checkpoint_path(trainer)
    assert path == str(tmp_path / "hpc_ckpt_1.ckpt")


def test_checkpoint_loop_state(tmp_path):
    _fit(tmp_path)
    ckpt = torch.load(tmp_path / "ckpt" / "epoch=0-step=2.ckpt", weights_only=True)
    assert private.epochs_and_steps_done(ckpt) == (0, 2)
    assert private.normalize_fit_loop_state(ckpt) == (0, 2, False)  # mid-epoch: as written
    last = torch.load(tmp_path / "ckpt" / "epoch=1-step=6.ckpt", weights_only=True)
    # Written in the last batch's on_train_batch_end: the epoch's end is still to do.
    assert private.normalize_fit_loop_state(last) == (1, 3, True)
    batches = last["loops"]["fit_loop"]["epoch_loop.batch_progress"]
    assert batches["total"]["completed"] == batches["total"]["processed"]


def test_slurm_requeue_runs_lightnings_handler(tmp_path, monkeypatch):
    """Lightning's own requeue: an HPC checkpoint, then ``scontrol requeue <job>``."""
    from lightning.pytorch.trainer.connectors import signal_connector

    for key, value in dict(SLURM_NTASKS="1", SLURM_NTASKS_PER_NODE="1", SLURM_JOB_ID="4242",
                           SLURM_JOB_NAME="mvf-test", SLURM_PROCID="0", SLURM_LOCALID="0",
                           SLURM_NODEID="0", SLURM_NODELIST="localhost").items():
        monkeypatch.setenv(key, value)
    commands = []
    monkeypatch.setattr(signal_connector, "call",
                        lambda cmd, shell=False: commands.append(cmd) or 0)
    trainer, _ = _fit(tmp_path, plugins=[SLURMEnvironment(auto_requeue=True)])
    assert isinstance(private.cluster_environment(trainer), SLURMEnvironment)
    private.run_slurm_requeue(trainer, 10)
    assert (tmp_path / "hpc_ckpt_1.ckpt").is_file()
    assert commands == [["scontrol", "requeue", "4242"]]
