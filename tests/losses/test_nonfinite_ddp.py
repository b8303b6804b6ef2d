"""A non-finite loss on ONE of two DDP ranks: every rank skips that step together (no hang,
no update anywhere) and training goes on."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from mvf_lightning.losses import SCL, SequenceLoss
from tests.cli_helpers import ROOT, read_metrics, run_cli, tiny_override

pytestmark = pytest.mark.integration


class NaNOnRankOne(SequenceLoss):
    """SCL, except NaN on rank 1's first call: a diverging step on one process only."""

    def __init__(self) -> None:
        self.calls = 0

    def init_args(self) -> dict:
        return {}

    def __call__(self, embs, steps, seq_lens, masks):
        loss = SCL()(embs, steps, seq_lens, masks)
        self.calls += 1
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        return loss * float("nan") if rank == 1 and self.calls == 1 else loss


def test_nonfinite_loss_on_one_rank_skips_the_step_on_every_rank(tmp_path):
    from mvf_lightning.data.demo import ensure_demo_dataset

    demo_root = ensure_demo_dataset(tmp_path / "demo", num_train=6, num_val=5)
    override = tiny_override(tmp_path, demo_root, tmp_path / "ckpt", tmp_path / "logs")
    run_cli(
        tmp_path, "fit", "--config", str(ROOT / "configs" / "demo.yaml"), "--config",
        str(override), "--model.loss=tests.losses.test_nonfinite_ddp.NaNOnRankOne",
        "--trainer.log_every_n_steps=1",
        "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp",
    )
    metrics = read_metrics(tmp_path / "logs" / "fit")  # rank 0's log: its own loss was finite
    assert max(v for _, v in metrics["train/skipped_steps"]) == 1.0
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2
    steps = {float(s["step"]) for s in ckpt["optimizer_states"][0]["state"].values()}
    assert steps == {1.0}  # Adam took only the second step
