"""Two-process DDP on CPU (gloo) through the CLI: fit, validate and predict.

With ``strategy="ddp"`` Lightning starts rank 1 by re-running the command line, so every
run here is a ``python -m mvf_lightning`` subprocess (in its own process group, killed on
timeout). The demo dataset is generated with 6 train + 5 val videos: 11 evaluation videos,
so the distributed validation sampler pads rank 1's shard with a duplicate that the
evaluation callback must drop. The same comparison over 4 ranks on 2 (simulated) nodes, through
the Slurm job template, is tests/slurm/test_slurm_jobs.py (marker `slurm`).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from tests.cli_helpers import ROOT, read_metrics, run_cli, tiny_override

DDP = ["--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp"]
NUM_TRAIN, NUM_VAL = 6, 5

pytestmark = pytest.mark.integration


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
        str(tiny_override(tmp, demo_root, tmp / "ckpt", tmp / "logs")),
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
