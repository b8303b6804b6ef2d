"""experiments/slurm/sweep_agents.sbatch, run by bash with stand-ins for srun and wandb: one
agent per allocated GPU, each with one GPU, its CPU share and the sweep id, and a failed agent
fails the job."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.cli_helpers import ROOT

SCRIPT = ROOT / "experiments" / "slurm" / "sweep_agents.sbatch"
SRUN = """#!/bin/bash
echo "srun $*" >> "$CALLS"
while [[ "$1" == -* ]]; do shift; done   # the options; then the command it starts
exec "$@"
"""
WANDB = """#!/bin/bash
echo "wandb $*" >> "$CALLS"
exit "${AGENT_EXIT:-0}"
"""


def _run(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("srun", SRUN), ("wandb", WANDB)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (tmp_path / ".venv" / "bin").mkdir(parents=True, exist_ok=True)
    (tmp_path / ".venv" / "bin" / "activate").write_text("")
    calls = tmp_path / "calls.txt"
    calls.write_text("")
    full_env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls),
                "SLURM_SUBMIT_DIR": str(tmp_path), **env}
    proc = subprocess.run(["bash", str(SCRIPT)], env=full_env, capture_output=True, text=True,
                          timeout=60)
    return proc, calls.read_text().splitlines()


def test_one_agent_per_gpu_each_on_one_gpu(tmp_path):
    proc, calls = _run(tmp_path, SWEEP_ID="ent/proj/abc", COUNT="2",
                       SLURM_GPUS_ON_NODE="4", SLURM_CPUS_PER_TASK="32")
    assert proc.returncode == 0, proc.stderr
    agents = [c for c in calls if c.startswith("wandb ")]
    assert agents == ["wandb agent --count 2 ent/proj/abc"] * 4
    steps = [c for c in calls if c.startswith("srun ")]
    assert len(steps) == 4
    assert all("--ntasks=1" in s and "--gres=gpu:1" in s and "--cpus-per-task=8" in s
               for s in steps)
    assert {s.split("--output=")[1].split()[0] for s in steps} == {
        f"runs/slurm/%x-%j-agent{i}.out" for i in range(4)
    }


def test_a_failed_agent_fails_the_job_and_a_missing_sweep_id_is_named(tmp_path):
    proc, _ = _run(tmp_path, SWEEP_ID="ent/proj/abc", SLURM_GPUS_ON_NODE="2", AGENT_EXIT="3")
    assert proc.returncode == 3
    env = {k: v for k, v in os.environ.items() if k != "SWEEP_ID"}
    proc = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0 and "SWEEP_ID" in proc.stderr
