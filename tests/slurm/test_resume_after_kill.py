"""Outside Slurm: a 2-process DDP fit killed with SIGKILL after its first checkpoint continues,
with `--run_name X --resume auto`, from that checkpoint into the same W&B run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

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


def start_fit(tmp, config, log_name: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mvf_lightning", "fit", "--config", str(DEMO_CONFIG),
           "--config", str(config), "--trainer.accelerator=cpu", "--trainer.devices=2",
           "--trainer.strategy=ddp", "--run_name", "exp1", "--resume", "auto"]
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
