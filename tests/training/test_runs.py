"""Run identity (runs.py): names, the newest checkpoint, W&B id persistence, applying a run to
a parsed config. The end-to-end behaviour (requeue, SIGKILL) is in tests/slurm/."""

from __future__ import annotations

import json
import os
import time

import pytest
import torch
from jsonargparse import Namespace

from mvf_lightning.training.runs import (
    RunError,
    apply_run,
    newest_checkpoint,
    start_run,
)

SLURM_JOB = {"SLURM_NTASKS": "2", "SLURM_JOB_NAME": "train", "SLURM_JOB_ID": "4242"}


@pytest.fixture(autouse=True)
def no_slurm_or_sweep(monkeypatch):
    for key in list(os.environ):
        if key.startswith("SLURM_") or key in ("WANDB_RUN_ID", "WANDB_SWEEP_ID"):
            monkeypatch.delenv(key)


def save(path, epoch, mtime):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": epoch}, path)
    os.utime(path, (mtime, mtime))
    return path


def test_newest_readable_checkpoint_wins_hpc_or_last(tmp_path):
    now = time.time()
    last = save(tmp_path / "checkpoints" / "last.ckpt", 3, now - 100)
    save(tmp_path / "hpc_ckpt_1.ckpt", 1, now - 200)
    hpc2 = save(tmp_path / "hpc_ckpt_2.ckpt", 4, now - 50)
    assert newest_checkpoint(tmp_path, [tmp_path / "checkpoints"]) == hpc2
    os.utime(last, (now, now))
    assert newest_checkpoint(tmp_path, [tmp_path / "checkpoints"]) == last
    # A checkpoint cut short by a kill is skipped, not loaded.
    last.write_bytes(last.read_bytes()[:100])
    assert newest_checkpoint(tmp_path, [tmp_path / "checkpoints"]) == hpc2
    assert newest_checkpoint(tmp_path / "missing", [tmp_path / "nothing"]) is None


def test_no_run_without_a_name_outside_slurm(tmp_path):
    assert start_run(None, None, tmp_path) is None
    with pytest.raises(RunError, match="--resume auto needs --run_name"):
        start_run(None, "auto", tmp_path)
    with pytest.raises(RunError, match="--resume 'yes'"):
        start_run("x", "yes", tmp_path)
    with pytest.raises(RunError, match="names a folder"):
        start_run("../up", None, tmp_path)


def test_existing_run_is_refused_without_resume_and_continued_with_auto(tmp_path):
    run = start_run("exp1", None, tmp_path, rank=0)
    assert run.dir == tmp_path / "exp1" and run.resume_from is None
    ckpt = save(run.dir / "checkpoints" / "last.ckpt", 0, time.time())
    with pytest.raises(RunError, match="'exp1' already has checkpoints .* --resume auto"):
        start_run("exp1", None, tmp_path, rank=0)
    again = start_run("exp1", "auto", tmp_path, rank=0)
    assert again.resume_from == ckpt and again.wandb_id == run.wandb_id
    # An explicit --ckpt_path says what to start from: no refusal, no automatic choice.
    assert start_run("exp1", None, tmp_path, explicit_ckpt=True, rank=0).resume_from is None
    record = json.loads((run.dir / "run.json").read_text())
    assert record["wandb_id"] == run.wandb_id and len(run.wandb_id) == 8
    assert [a["resumed_from"] for a in record["attempts"]] == [None, str(ckpt), None]


def test_slurm_job_id_names_the_run_and_resumes_by_default(tmp_path, monkeypatch):
    for key, value in SLURM_JOB.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    run = start_run(None, None, tmp_path, rank=0)
    assert run.name == "4242" and run.dir == tmp_path / "4242"
    hpc = save(run.dir / "hpc_ckpt_1.ckpt", 2, time.time())
    assert start_run(None, None, tmp_path, rank=0).resume_from == hpc
    attempt = json.loads((run.dir / "run.json").read_text())["attempts"][-1]
    assert (attempt["slurm_job_id"], attempt["slurm_restart_count"]) == ("4242", 1)
    monkeypatch.setenv("WANDB_SWEEP_ID", "sw1")  # a sweep agent's runs: several per job
    assert start_run(None, None, tmp_path, rank=0) is None
    assert start_run("trial5", None, tmp_path, rank=0).name == "trial5"
    monkeypatch.delenv("WANDB_SWEEP_ID")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "7")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert start_run(None, None, tmp_path, rank=0).name == "7_3"


def test_wandb_run_id_from_the_environment_wins_and_other_ranks_write_nothing(
    tmp_path, monkeypatch
):
    assert start_run("exp2", None, tmp_path, rank=1).wandb_id is None
    assert not (tmp_path / "exp2").exists()
    monkeypatch.setenv("WANDB_RUN_ID", "sweep123")
    assert start_run("exp2", None, tmp_path, rank=0).wandb_id == "sweep123"
    assert start_run("exp2", None, tmp_path, rank=1).wandb_id == "sweep123"
    monkeypatch.delenv("WANDB_RUN_ID")
    assert start_run("exp2", None, tmp_path, rank=3).wandb_id == "sweep123"  # read back


def test_apply_run_points_loggers_checkpoints_and_resume_at_the_run(tmp_path):
    config = Namespace(
        ckpt_path=None,
        trainer=Namespace(
            default_root_dir="elsewhere",
            logger=[
                Namespace(class_path="lightning.pytorch.loggers.CSVLogger",
                          init_args=Namespace(save_dir="logs", name="csv")),
                Namespace(class_path="lightning.pytorch.loggers.WandbLogger",
                          init_args=Namespace(save_dir=None, id=None, project="p")),
            ],
            callbacks=[
                Namespace(class_path="lightning.pytorch.callbacks.ModelCheckpoint",
                          init_args=Namespace(dirpath=None)),
                Namespace(class_path="lightning.pytorch.callbacks.ModelCheckpoint",
                          init_args=Namespace(dirpath="mine")),
                Namespace(class_path="lightning.pytorch.callbacks.LearningRateMonitor"),
            ],
        ),
    )
    save(tmp_path / "r" / "checkpoints" / "last.ckpt", 0, time.time())
    run = start_run("r", "auto", tmp_path, rank=0)
    apply_run(config, run)
    run_dir = str(tmp_path / "r")
    assert config.trainer.default_root_dir == run_dir  # where Lightning's HPC checkpoints go
    csv, wandb = config.trainer.logger
    assert (csv.init_args.save_dir, csv.init_args.name) == (run_dir, "csv")
    assert (wandb.init_args.save_dir, wandb.init_args.id) == (run_dir, run.wandb_id)
    assert wandb.dict_kwargs == {"resume": "allow"}
    assert config.trainer.callbacks[0].init_args.dirpath == str(tmp_path / "r" / "checkpoints")
    assert config.trainer.callbacks[1].init_args.dirpath == "mine"  # the user's choice stays
    assert config.ckpt_path == str(tmp_path / "r" / "checkpoints" / "last.ckpt")


def test_resume_auto_names_the_unreadable_checkpoints_it_skips(tmp_path, capsys):
    folder = tmp_path / "r" / "checkpoints"
    folder.mkdir(parents=True)
    good = folder / "epoch=1.ckpt"
    torch.save({"epoch": 1}, good)
    torn = folder / "last.ckpt"
    torn.write_bytes(good.read_bytes()[:100])  # cut short by a kill while being written
    os.utime(good, (1, 1))  # the readable one is older
    run = start_run("r", "auto", tmp_path, rank=0)
    assert run.resume_from == good
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert line.startswith("warning: run 'r': skipped 1 unreadable checkpoint(s)")
    assert str(torn) in line and f"continuing from {good}" in line


def test_requeue_can_be_turned_off_from_the_command_line(tmp_path):
    """The README's switch: Lightning's SLURMEnvironment without automatic requeue."""
    from mvf_lightning.cli.lightning_cli import MVFLightningCLI
    from tests.cli_helpers import ROOT, tiny_override

    override = tiny_override(tmp_path, tmp_path / "demo", tmp_path / "ckpt", tmp_path / "logs")
    cli = MVFLightningCLI(
        args=["--config", str(ROOT / "configs" / "demo.yaml"), "--config", str(override),
              "--trainer.plugins=lightning.pytorch.plugins.environments.SLURMEnvironment",
              "--trainer.plugins.auto_requeue=false"],
        run=False,
    )
    environment = cli.trainer._accelerator_connector.cluster_environment
    assert type(environment).__name__ == "SLURMEnvironment" and environment.auto_requeue is False
