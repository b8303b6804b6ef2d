"""The job templates on a real Slurm cluster (two simulated nodes on this machine, CPU, gloo):
a 4-rank DDP fit over 2 nodes through experiments/slurm/multi_node.sbatch, and a job that is
signalled, checkpoints, requeues itself and resumes into the same run and W&B run."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time

import pytest
import torch

from tests.cli_helpers import read_metrics, run_cli
from tests.slurm.jobs import (
    DEMO_CONFIG,
    job_env,
    job_log,
    readable_checkpoint,
    run_config,
    sbatch,
    version_metrics,
    wait_for,
    wait_for_job_end,
    wandb_run_ids,
)

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(1200)]


def template_env(tmp, slurm_conf) -> dict[str, str]:
    """The documented CPU override of the templates (with `sbatch --gpus-per-node=0`)."""
    env = job_env(tmp, slurm_conf)
    env.update(MVF_CONFIG=str(DEMO_CONFIG), MVF_PYTHON=sys.executable, MVF_ACCELERATOR="cpu")
    return env


def last_values(metrics, prefix):
    return {k: v[-1][1] for k, v in metrics.items() if k.startswith(prefix)}


def test_multi_node_template_trains_one_run_over_four_ranks(slurm_conf, demo_root, tmp_path):
    env = template_env(tmp_path, slurm_conf)
    config = run_config(tmp_path, demo_root, max_epochs=1)
    job = sbatch("multi_node.sbatch", tmp_path, env, "--config", str(config),
                 options=("--nodes=2", "--ntasks-per-node=2"))
    state = wait_for_job_end(job, env, timeout=900)
    log = job_log(tmp_path, job)
    assert (state["JobState"], state["ExitCode"]) == ("COMPLETED", "0:0"), log[-4000:]
    assert "2 node(s) x 2 task(s)" in log
    assert "distributed_backend=gloo" in log and "Starting with 4 processes" in log

    # One run, named by the job id: one checkpoint folder, one metrics table, one config.
    run_dir = tmp_path / "runs" / job
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("checkpoints")) == [
        run_dir.relative_to(tmp_path) / "checkpoints"
    ]
    assert list(tmp_path.rglob("metrics.csv")) == [run_dir / "csv" / "version_0" / "metrics.csv"]
    assert list(tmp_path.rglob("config.yaml")) == [run_dir / "csv" / "version_0" / "config.yaml"]
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert (ckpt["epoch"], ckpt["global_step"]) == (0, 1)  # 6 videos / 4 ranks: 1 batch of 2
    fit = read_metrics(run_dir / "csv")
    assert fit["train/loss"] and all(math.isfinite(v) for _, v in fit["train/loss"])

    # The 4-rank evaluation saw every video exactly once (11 videos over 4 ranks: the sampler
    # pads with a duplicate that must be dropped): same metrics as one process on the weights.
    run_cli(tmp_path, "validate", "--config", str(DEMO_CONFIG), "--config", str(config),
            "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt"), "--trainer.devices=1",
            "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
            f"--trainer.logger.save_dir={tmp_path / 'one'}")
    one = last_values(read_metrics(tmp_path / "one" / "lightning_logs"), "val/")
    four = last_values(fit, "val/")
    assert "val/demo/mean/kendalls_tau" in one and sorted(one) == sorted(four)
    for key, value in one.items():
        assert four[key] == pytest.approx(value, abs=1e-6), key


def test_single_node_template_runs_its_own_cpu_example(slurm_conf, demo_root, tmp_path):
    """The template's documented CPU-only command, as written, gets a node and trains one
    run over its tasks (its GPU defaults would ask for CPUs a small node does not have)."""
    env = template_env(tmp_path, slurm_conf)
    config = run_config(tmp_path, demo_root, max_epochs=1, validate=False)
    job = sbatch("single_node.sbatch", tmp_path, env, "--config", str(config))
    state = wait_for_job_end(job, env, timeout=600)
    log = job_log(tmp_path, job)
    assert (state["JobState"], state["ExitCode"]) == ("COMPLETED", "0:0"), (state, log[-4000:])
    assert "1 node(s) x 2 task(s)" in log and "Starting with 2 processes" in log
    assert (tmp_path / "runs" / job / "checkpoints" / "last.ckpt").is_file()


def test_signalled_job_checkpoints_requeues_and_resumes_the_same_run(
    slurm_conf, demo_root, tmp_path
):
    env = template_env(tmp_path, slurm_conf)
    # DataLoader workers as in the demo config: Slurm signals them too, and a rank may be
    # waiting in the gradient all-reduce when the signal comes (Lightning's own handler hung).
    config = run_config(tmp_path, demo_root, max_epochs=3, validate=False, wandb=True,
                        step_seconds=2.0, num_workers=2)
    job = sbatch("multi_node.sbatch", tmp_path, env, "--config", str(config),
                 options=("--nodes=2", "--ntasks-per-node=1"))
    run_dir = tmp_path / "runs" / job
    last = run_dir / "checkpoints" / "last.ckpt"
    try:
        wait_for(lambda: readable_checkpoint(last), 600, "the first epoch's checkpoint")
    except TimeoutError:
        subprocess.run(["scancel", job], env=env, check=False)
        raise
    # What Slurm sends before the time limit (--signal=SIGUSR1@90), sent now.
    subprocess.run(["scancel", "--signal=USR1", job], env=env, check=True)
    state = wait_for_job_end(job, env, timeout=900)
    log = job_log(tmp_path, job)
    assert (state["JobState"], state["ExitCode"], state["Restarts"]) == ("COMPLETED", "0:0", "1"), (
        log[-4000:]
    )
    assert "Handling auto-requeue signal" in log and f"Requeued SLURM job: {job}" in log
    assert "attempt 1 " in log and "attempt 2 " in log  # one log file, appended

    # The second attempt resumed from Lightning's HPC checkpoint of the first (the newest
    # readable one: the SIGTERM that ends the first attempt may write a later one).
    record = json.loads((run_dir / "run.json").read_text())
    first, second = record["attempts"]
    assert (first["slurm_restart_count"], first["resumed_from"]) == (0, None)
    assert second["slurm_restart_count"] == 1
    resumed = tmp_path / second["resumed_from"]
    assert resumed.parent == run_dir and re.fullmatch(r"hpc_ckpt_\d+\.ckpt", resumed.name)
    hpc = torch.load(resumed, map_location="cpu", weights_only=True)
    assert hpc["epoch"] >= 1 and hpc["global_step"] >= 2

    # Its epoch counter continued (the attempt's metrics table starts at the checkpoint's
    # epoch, not at 0) and the run finished with every step of its 3 epochs.
    versions = sorted((run_dir / "csv").glob("version_*"))
    assert [v.name for v in versions] == ["version_0", "version_1"]
    # One resolved config, beside the W&B run, written by the first attempt and not replaced
    # by the second (older than the first attempt's requeue checkpoint).
    config_file = run_dir / "mvf-test" / record["wandb_id"] / "config.yaml"
    assert list(run_dir.rglob("config*.yaml")) == [config_file]
    assert config_file.stat().st_mtime < resumed.stat().st_mtime
    second_epochs = {e for _, rows in version_metrics(versions[1]).items() for e, _ in rows}
    assert min(second_epochs) == hpc["epoch"] and max(second_epochs) == 2
    final = torch.load(last, map_location="cpu", weights_only=True)
    assert (final["epoch"], final["global_step"]) == (2, 6)

    # Both attempts logged into one W&B run.
    assert wandb_run_ids(run_dir) == [record["wandb_id"]] * 2



def test_job_signalled_during_validation_finishes_it_then_requeues(
    slurm_conf, demo_root, tmp_path
):
    """A signal that arrives during a validation is acted on after it, where every rank
    agrees: the validation is logged once (in the first attempt), the HPC checkpoint is the
    end of that epoch, and the resumed job trains and evaluates only the next epoch."""
    env = template_env(tmp_path, slurm_conf)
    monitor = "val/demo/mean/kendalls_tau"
    config = run_config(tmp_path, demo_root, max_epochs=2, validation_seconds=2.0,
                        monitor=monitor, num_workers=2)
    job = sbatch("multi_node.sbatch", tmp_path, env, "--config", str(config),
                 options=("--nodes=2", "--ntasks-per-node=1"))
    try:
        wait_for(lambda: (tmp_path / "validating-0").exists(), 600, "the validation to start")
    except TimeoutError:
        subprocess.run(["scancel", job], env=env, check=False)
        raise
    time.sleep(3)  # inside the validation (6 videos per rank, 2 s each)
    subprocess.run(["scancel", "--signal=USR1", job], env=env, check=True)
    state = wait_for_job_end(job, env, timeout=900)
    log = job_log(tmp_path, job)
    assert (state["JobState"], state["ExitCode"], state["Restarts"]) == ("COMPLETED", "0:0", "1"), (
        log[-4000:]
    )
    assert f"Requeued SLURM job: {job}" in log
    run_dir = tmp_path / "runs" / job
    hpc = torch.load(run_dir / "hpc_ckpt_1.ckpt", map_location="cpu", weights_only=True)
    progress = hpc["loops"]["fit_loop"]["epoch_loop.val_loop.batch_progress"]
    assert progress["is_last_batch"] and progress["total"]["completed"] == 6, progress
    first = version_metrics(run_dir / "csv" / "version_0")
    second = version_metrics(run_dir / "csv" / "version_1")
    assert (hpc["epoch"], hpc["global_step"]) == (0, 2)
    assert [e for e, _ in first[monitor]] == [0]
    assert [e for e, _ in second[monitor]] == [1], "the resumed job evaluated epoch 0 again"
    # The last validation is that of the final weights, as one process computes it.
    final = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu",
                       weights_only=True)
    assert final["global_step"] == 4  # 2 epochs x 2 batches: no epoch trained twice
    run_cli(tmp_path, "validate", "--config", str(DEMO_CONFIG), "--config", str(config),
            "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt"), "--trainer.devices=1",
            "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
            f"--trainer.logger.save_dir={tmp_path / 'one'}")
    one = last_values(read_metrics(tmp_path / "one" / "lightning_logs"), "val/")
    assert second[monitor][0][1] == pytest.approx(one[monitor], abs=1e-6)
