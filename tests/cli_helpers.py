"""Helpers for tests that run ``python -m mvf_lightning`` as a subprocess: a tiny override of
configs/demo.yaml, the CLI runner (killing every rank on timeout) and metrics.csv reading."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EMBEDDING_DIM = 16


def tiny_override(
    tmp: Path, demo_root: Path, ckpt_dir: Path, logs: Path, monitor: str | None = None
) -> Path:
    """A config applied after configs/demo.yaml: tiny model, tiny data, everything in tmp."""
    checkpoint = {"dirpath": str(ckpt_dir), "save_last": True}
    if monitor:
        checkpoint.update(monitor=monitor, mode="max")
    config = {
        "trainer": {
            "max_epochs": 1,
            "limit_train_batches": 2,
            "check_val_every_n_epoch": 1,
            "num_sanity_val_steps": 0,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(tmp / "root"),
            "logger": {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(logs), "name": "fit"},
            },
            "callbacks": [
                {"class_path": "mvf_lightning.evaluation.callback.AlignmentEvaluation"},
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": checkpoint,
                },
            ],
        },
        "model": {
            "backbone": {
                "name": "vit_small_patch16_224",
                "pretrained": "none",
                "img_size": 32,
                "blocks": [0, 1],
                "model_kwargs": {"depth": 2, "embed_dim": 32, "num_heads": 2},
            },
            "embedder": {
                "num_tokens": 2, "pool_dim": 16, "capacity": 1, "hidden_dim": 32,
                "num_layers": 1, "num_heads": 4, "ff_dim": 64,
                "embedding_dim": EMBEDDING_DIM, "projection_hidden_dim": 16,
            },
        },
        "data": {
            "init_args": {
                "root": str(demo_root), "num_frames": 6, "batch_size": 2, "num_workers": 0,
                "crop_size": 32,
            }
        },
    }
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path



def learning_override(tmp: Path, check_val_every_n_epoch: int) -> Path:
    """:func:`tiny_override` long enough for a loss to show learning on the demo: 8 epochs of
    4 batches at lr 3e-3, a loss value logged every step."""
    override = tiny_override(tmp, tmp / "demo", tmp / "ckpt", tmp / "logs")
    config = yaml.safe_load(override.read_text())
    config["trainer"].update(max_epochs=8, limit_train_batches=4, log_every_n_steps=1,
                             check_val_every_n_epoch=check_val_every_n_epoch)
    config["model"]["optimizer"] = {"lr": 3.0e-3}
    override.write_text(yaml.safe_dump(config))
    return override

def cli_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        WANDB_MODE="offline",
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        MVF_LIGHTNING_DEMO_ROOT=str(tmp / "default_demo_root"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    # WANDB_SERVICE: an in-process wandb.init's service socket; a child handed to it writes its
    # .wandb log late or never (module-scoped fixtures run before the autouse cleanup).
    for key in ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE",
                "WANDB_SERVICE"):
        env.pop(key, None)
    return env


def run_cli(
    tmp: Path, *args: str, timeout: int = 600, expect: int = 0
) -> subprocess.CompletedProcess:
    """``python -m mvf_lightning ARGS`` in ``tmp``; fails the test on another exit status or a
    timeout, killing the whole process group (every DDP rank)."""
    cmd = [sys.executable, "-m", "mvf_lightning", *args]
    proc = subprocess.Popen(
        cmd, cwd=tmp, env=cli_env(tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout} s: {args[0]}\n{out[-3000:]}\n{err[-5000:]}")
    if proc.returncode != expect:
        pytest.fail(
            f"exit {proc.returncode} (expected {expect}) for {' '.join(args[:3])}...\n"
            f"--- stdout\n{out[-4000:]}\n--- stderr\n{err[-6000:]}"
        )
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def read_metrics(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every metric column of the CSV logger's metrics.csv(s): ``name -> [(epoch, value)]``."""
    files = sorted(log_dir.glob("version_*/metrics.csv"))
    assert files, f"no metrics.csv under {log_dir}"
    out: dict[str, list[tuple[int, float]]] = {}
    for path in files:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                for key, value in row.items():
                    if key not in ("epoch", "step") and value not in ("", None):
                        out.setdefault(key, []).append((int(row["epoch"]), float(value)))
    return out
