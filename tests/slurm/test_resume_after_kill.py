"""Outside Slurm, with `--run_name X --resume auto`: a 2-process DDP fit killed with SIGKILL
after its first checkpoint continues from that checkpoint into the same W&B run; a fit stopped
by SIGTERM inside a validation redoes that whole validation when it continues."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.cli_helpers import read_metrics, run_cli
from tests.slurm.jobs import (
    DEMO_CONFIG,
    job_env,
    readable_checkpoint,
    run_config,
    version_metrics,
    wait_for,
    wandb_run_ids,
)

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(900)]


def start_fit(tmp, config, log_name: str, devices: int = 2) -> subprocess.Popen:
    ddp = ["--trainer.strategy=ddp"] if devices > 1 else []
    cmd = [sys.executable, "-m", "mvf_lightning", "fit", "--config", str(DEMO_CONFIG),
           "--config", str(config), "--trainer.accelerator=cpu", f"--trainer.devices={devices}",
           *ddp, "--run_name", "exp1", "--resume", "auto"]
    with open(tmp / log_name, "w") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, cwd=tmp, env=job_env(tmp), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def test_killed_ddp_fit_resumes_from_its_checkpoint_into_the_same_wandb_run(demo_root, tmp_path):
    config = run_config(tmp_path, demo_root, max_epochs=3, validate=False, wandb=True,
                        step_seconds=2.0)
    run_dir = tmp_path / "runs" / "exp1"
    last = run_dir / "checkpoints" / "last.ckpt"
    first = start_fit(tmp_path, config, "first.log")
    try:
        wait_for(lambda: readable_checkpoint(last) or first.poll() is not None, 600,
                 "the first epoch's checkpoint")
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-4000:]
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # every rank, no chance to save anything
        first.wait()
    killed_at = torch.load(last, map_location="cpu", weights_only=True)
    assert killed_at["epoch"] < 2

    second = start_fit(tmp_path, config, "second.log")
    try:
        code = second.wait(timeout=600)
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)
    log = (tmp_path / "second.log").read_text()
    assert code == 0, log[-4000:]
    assert f"Restoring states from the checkpoint path at {last.relative_to(tmp_path)}" in log

    # No finished epoch lost or repeated: the second attempt starts after the checkpoint's
    # epoch and the run ends with every step of its 3 epochs.
    record = json.loads((run_dir / "run.json").read_text())
    resumed_from = [a["resumed_from"] for a in record["attempts"]]
    assert resumed_from == [None, str(last.relative_to(tmp_path))]
    versions = sorted((run_dir / "csv").glob("version_*"))
    epochs = {e for rows in version_metrics(versions[-1]).values() for e, _ in rows}
    assert min(epochs) == killed_at["epoch"] + 1 and max(epochs) == 2
    final = torch.load(last, map_location="cpu", weights_only=True)
    assert (final["epoch"], final["global_step"]) == (2, 6)
    assert wandb_run_ids(run_dir) == [record["wandb_id"]] * 2


def test_fit_stopped_inside_a_validation_redoes_all_of_it_when_continued(demo_root, tmp_path):
    """The README's promise for a checkpoint written during a validation (by SIGTERM): the
    continued run evaluates every video again, so its metrics equal a full validation."""
    monitor = "val/demo/mean/kendalls_tau"
    config = run_config(tmp_path, demo_root, max_epochs=1, validation_seconds=2.0,
                        monitor=monitor)
    run_dir = tmp_path / "runs" / "exp1"
    first = start_fit(tmp_path, config, "first.log", devices=1)
    try:
        wait_for(lambda: (tmp_path / "validating-0").exists() or first.poll() is not None,
                 600, "the validation to start")
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-4000:]
        time.sleep(3)  # inside the validation (12 videos, 2 s each)
        os.killpg(first.pid, signal.SIGTERM)
        code = first.wait(timeout=300)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert code == 143, (tmp_path / "first.log").read_text()[-4000:]
    interrupted = run_dir / "checkpoints" / "interrupted.ckpt"
    stopped = torch.load(interrupted, map_location="cpu", weights_only=True)
    progress = stopped["loops"]["fit_loop"]["epoch_loop.val_loop.batch_progress"]
    assert progress["total"]["completed"] > 0 and not progress["is_last_batch"], progress

    second = start_fit(tmp_path, config, "second.log", devices=1)
    try:
        code = second.wait(timeout=600)
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)
    assert code == 0, (tmp_path / "second.log").read_text()[-4000:]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["attempts"][1]["resumed_from"] == str(interrupted.relative_to(tmp_path))
    versions = sorted((run_dir / "csv").glob("version_*"))
    assert monitor not in version_metrics(versions[0])
    resumed = version_metrics(versions[-1])[monitor]
    assert [e for e, _ in resumed] == [0]
    run_cli(tmp_path, "validate", "--config", str(DEMO_CONFIG), "--config", str(config),
            "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt"), "--trainer.devices=1",
            "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
            f"--trainer.logger.save_dir={tmp_path / 'one'}")
    one = read_metrics(tmp_path / "one" / "lightning_logs")[monitor]
    assert resumed[0][1] == pytest.approx(one[-1][1], abs=1e-6)
