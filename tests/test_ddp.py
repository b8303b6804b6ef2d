"""Two-process DDP on CPU (gloo) through the CLI: fit, validate and predict.

With ``strategy="ddp"`` Lightning starts rank 1 by re-running the command line, so every
run here is a ``python -m mvf_lightning`` subprocess (in its own process group, killed on
timeout). The demo dataset is generated with 6 train + 5 val videos: 11 evaluation videos,
so the distributed validation sampler pads rank 1's shard with a duplicate that the
evaluation callback must drop.
"""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
DDP = ["--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp"]
NUM_TRAIN, NUM_VAL = 6, 5
TIMEOUT = 600

pytestmark = pytest.mark.integration


def tiny_override(tmp: Path, demo_root: Path) -> Path:
    """Applied after configs/demo.yaml: tiny model and data; logs and checkpoints in tmp."""
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
                "init_args": {"save_dir": str(tmp / "logs"), "name": "fit"},
            },
            "callbacks": [
                {
                    "class_path": "mvf_lightning.evaluation.callback.AlignmentEvaluation",
                    "init_args": {"stride": 1},
                },
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"dirpath": str(tmp / "ckpt"), "save_last": True},
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
                "num_tokens": 2,
                "pool_dim": 16,
                "capacity": 1,
                "hidden_dim": 32,
                "num_layers": 1,
                "num_heads": 4,
                "ff_dim": 64,
                "embedding_dim": 16,
                "projection_dim": 16,
            },
        },
        "data": {
            "init_args": {
                "root": str(demo_root),
                "num_frames": 6,
                "batch_size": 2,
                "num_workers": 0,
                "crop_size": 32,
            }
        },
    }
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_cli(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m mvf_lightning ARGS``; fails the test (killing all ranks) on error/timeout."""
    env = dict(os.environ)
    env.update(
        WANDB_MODE="offline",
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        MVF_LIGHTNING_DEMO_ROOT=str(tmp / "default_demo_root"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    for key in ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "mvf_lightning", *args]
    proc = subprocess.Popen(
        cmd,
        cwd=tmp,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"timed out after {TIMEOUT} s: {args[0]}\n{out[-3000:]}\n{err[-5000:]}")
    if proc.returncode != 0:
        pytest.fail(
            f"exit {proc.returncode}: {args[0]}\n--- stdout\n{out[-3000:]}\n"
            f"--- stderr\n{err[-6000:]}"
        )
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def read_metrics(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
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


def last_values(metrics: dict[str, list[tuple[int, float]]], prefix: str) -> dict[str, float]:
    return {k: v[-1][1] for k, v in metrics.items() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def ddp_fit(tmp_path_factory):
    """A 2-process DDP fit of the tiny demo: 2 steps per rank, then distributed validation."""
    from mvf_lightning.data.demo import ensure_demo_dataset

    tmp = tmp_path_factory.mktemp("ddp")
    demo_root = ensure_demo_dataset(tmp / "demo", num_train=NUM_TRAIN, num_val=NUM_VAL)
    base = [
        "--config",
        str(ROOT / "configs" / "demo.yaml"),
        "--config",
        str(tiny_override(tmp, demo_root)),
    ]
    proc = run_cli(tmp, "fit", *base, *DDP)
    return SimpleNamespace(tmp=tmp, base=base, proc=proc, ckpt=tmp / "ckpt" / "last.ckpt")


def test_ddp_fit_completes(ddp_fit):
    assert "distributed_backend=gloo" in ddp_fit.proc.stdout + ddp_fit.proc.stderr
    assert ddp_fit.ckpt.is_file()
    ckpt = torch.load(ddp_fit.ckpt, map_location="cpu", weights_only=False)
    assert (ckpt["epoch"], ckpt["global_step"]) == (0, 2)
    metrics = read_metrics(ddp_fit.tmp / "logs" / "fit")
    assert metrics["train/loss"] and all(math.isfinite(v) for _, v in metrics["train/loss"])
    assert "val/demo/mean/kendalls_tau" in metrics


def test_validate_metrics_equal_on_one_and_two_processes(ddp_fit):
    tmp, ckpt = ddp_fit.tmp, str(ddp_fit.ckpt)
    run_cli(
        tmp,
        "validate",
        *ddp_fit.base,
        "--ckpt_path",
        ckpt,
        "--trainer.devices=1",
        "--trainer.logger.init_args.name=one",
    )
    run_cli(
        tmp,
        "validate",
        *ddp_fit.base,
        "--ckpt_path",
        ckpt,
        *DDP,
        "--trainer.logger.init_args.name=two",
    )
    one = last_values(read_metrics(tmp / "logs" / "one"), "val/")
    two = last_values(read_metrics(tmp / "logs" / "two"), "val/")
    assert "val/demo/mean/kendalls_tau" in one and "val/demo/mean/phase_progression" in one
    assert sorted(one) == sorted(two)
    for key in one:
        assert two[key] == pytest.approx(one[key], abs=1e-6), key
    # The DDP fit's own end-of-epoch validation saw the same weights and the same videos.
    during_fit = last_values(read_metrics(tmp / "logs" / "fit"), "val/")
    for key in one:
        assert during_fit[key] == pytest.approx(one[key], abs=1e-6), key


def test_ddp_predict_exports_every_video_once(ddp_fit):
    from mvf_lightning.evaluation.export import read_embeddings

    out = ddp_fit.tmp / "export"
    proc = run_cli(
        ddp_fit.tmp,
        "predict",
        *ddp_fit.base,
        "--ckpt_path",
        str(ddp_fit.ckpt),
        *DDP,
        "--trainer.logger=false",
        "--return_predictions=false",
        "--trainer.callbacks+=mvf_lightning.evaluation.prediction_writer.EmbeddingExport",
        f"--trainer.callbacks.output_dir={out}",
    )
    assert f"wrote {NUM_TRAIN + NUM_VAL} videos" in proc.stdout
    sets = read_embeddings(out)
    train, val = sets["demo"]["train"], sets["demo"]["val"]
    assert [r.video_id for r in train] == [f"train_{k:03d}" for k in range(NUM_TRAIN)]
    assert [r.video_id for r in val] == [f"val_{k:03d}" for k in range(NUM_VAL)]
    assert all(r.embeddings.shape[1] == 16 and r.labels is not None for r in train + val)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".export")]  # no temp dirs
