"""Helpers for the `slurm` tests: a run config (the tiny demo with run identity left to
runs.py), the environment for jobs and CLI runs, and waiting with deadlines."""

from __future__ import annotations

import csv
import subprocess
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.cli_helpers import ROOT, cli_env, tiny_override

CLUSTER_SCRIPT = ROOT / "tests" / "slurm" / "cluster.sh"
DEMO_CONFIG = ROOT / "configs" / "demo.yaml"
NUM_TRAIN, NUM_VAL = 6, 5


def run_config(
    tmp: Path,
    demo_root: Path,
    max_epochs: int,
    train_batches: int = 2,
    validate: bool = True,
    wandb: bool = False,
    step_seconds: float = 0.0,
    num_workers: int = 0,
    validation_seconds: float = 0.0,
    monitor: str | None = None,
) -> Path:
    """The tiny demo override without any folder of its own: the run (runs.py) places the
    checkpoints and logs. A CSV logger always (metrics tables to read back), W&B offline if
    asked, optionally slow steps so a test can signal between checkpoints."""
    path = tiny_override(tmp, demo_root, tmp / "unused", tmp / "unused")
    config = yaml.safe_load(path.read_text())
    config["data"]["init_args"]["num_workers"] = num_workers
    trainer = config["trainer"]
    del trainer["default_root_dir"]
    trainer.update(max_epochs=max_epochs, limit_train_batches=train_batches, log_every_n_steps=1)
    loggers = [{"class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"name": "csv"}}]
    if wandb:
        loggers.append({"class_path": "lightning.pytorch.loggers.WandbLogger",
                        "init_args": {"project": "mvf-test", "offline": True}})
    trainer["logger"] = loggers
    checkpoint = {"save_last": True}
    if monitor:
        checkpoint.update(monitor=monitor, mode="max")
    callbacks = [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                  "init_args": checkpoint}]
    if validate:
        callbacks.insert(0, {"class_path": "mvf_lightning.evaluation.callback.AlignmentEvaluation"})
    else:
        trainer["limit_val_batches"] = 0
    if step_seconds or validation_seconds:
        slow = {"seconds": step_seconds, "validation_seconds": validation_seconds,
                "marker_dir": str(tmp)}
        callbacks.append({"class_path": "tests.slurm.slow_steps.SlowTrainingSteps",
                          "init_args": slow})
    trainer["callbacks"] = callbacks
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def job_env(tmp: Path, slurm_conf: Path | None = None) -> dict[str, str]:
    """Environment for a job or a CLI run: the CLI's test environment, no Slurm variables of
    an enclosing job, and the test cluster's config if given."""
    env = {k: v for k, v in cli_env(tmp).items() if not k.startswith("SLURM_")}
    env.update(WANDB_SILENT="true")
    if slurm_conf is not None:
        env["SLURM_CONF"] = str(slurm_conf)
    return env


def wait_for(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def readable_checkpoint(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path):
            return True
    except (OSError, zipfile.BadZipFile):
        return False


def job_state(job_id: str, env: dict[str, str]) -> dict[str, str]:
    """``scontrol show job`` as a dict (JobState, Restarts, ExitCode ...)."""
    out = subprocess.run(["scontrol", "-o", "show", "job", job_id], env=env,
                         capture_output=True, text=True, check=True).stdout
    return dict(item.split("=", 1) for item in out.split() if "=" in item)


def cpu_example(template: str) -> list[str]:
    """The sbatch options of the template's own CPU-only example (its header comment)."""
    text = (ROOT / "experiments" / "slurm" / template).read_text()
    lines = [line for line in text.splitlines()
             if line.startswith("#") and "MVF_ACCELERATOR=cpu sbatch" in line]
    assert len(lines) == 1, f"{template}: expected one CPU-only example line, got {lines}"
    return [word for word in lines[0].split() if word.startswith("--")]


def sbatch(template: str, tmp: Path, env: dict[str, str], *args: str, options: tuple = ()) -> str:
    """Submit an experiments/slurm template from ``tmp`` with the template's documented CPU
    example (its options first; ``options`` add to or override them, as sbatch reads them)."""
    cmd = ["sbatch", "--parsable", *cpu_example(template), "--time=15",
           *options, str(ROOT / "experiments" / "slurm" / template), *args]
    out = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split(";")[0]


def wait_for_job_end(job_id: str, env: dict[str, str], timeout: float) -> dict[str, str]:
    """Wait until the job has finished (any end state); cancel it on timeout."""
    done = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")
    try:
        wait_for(lambda: job_state(job_id, env).get("JobState") in done, timeout, f"job {job_id}")
    except TimeoutError:
        subprocess.run(["scancel", job_id], env=env, check=False)
        raise
    return job_state(job_id, env)


def job_log(tmp: Path, job_id: str) -> str:
    logs = list(tmp.glob(f"slurm-*-{job_id}.out"))
    return logs[0].read_text(errors="replace") if logs else ""


def wandb_run_ids(run_dir: Path) -> list[str]:
    """The run id of every W&B offline run folder under the run (one per attempt)."""
    return sorted(p.name.rsplit("-", 1)[-1] for p in (run_dir / "wandb").glob("offline-run-*"))



def version_metrics(version_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """One CSV logger version's metrics.csv: ``name -> [(epoch, value)]``."""
    out: dict[str, list[tuple[int, float]]] = {}
    with open(version_dir / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key not in ("epoch", "step") and value not in ("", None):
                    out.setdefault(key, []).append((int(row["epoch"]), float(value)))
    return out
