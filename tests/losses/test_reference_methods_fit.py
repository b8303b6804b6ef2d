"""The reference's other methods trained end to end on the demo: TCN and supervised
classification each fit through the CLI, print and log the four alignment metrics, and their
losses fall; TCC's same-action batches hold under two DDP ranks."""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback

from mvf_lightning.data.index import load_split
from tests.cli_helpers import ROOT, learning_override, read_metrics, run_cli, tiny_override

pytestmark = pytest.mark.integration

FAMILIES = ("phase_classification", "phase_progression", "kendalls_tau", "retrieval_ap")


def epoch_means(values: list[tuple[int, float]]) -> list[float]:
    per_epoch = collections.defaultdict(list)
    for epoch, value in values:
        per_epoch[epoch].append(value)
    return [sum(v) / len(v) for _, v in sorted(per_epoch.items())]


@pytest.mark.parametrize(
    ("loss", "checkpointed"),
    [("TCN", "time_contrastive.TCN"), ("Classification", "classification.Classification")],
)
def test_demo_fit_trains_evaluates_and_learns(tmp_path, loss, checkpointed):
    override = learning_override(tmp_path, check_val_every_n_epoch=3)
    proc = run_cli(tmp_path, "fit", "--config", str(ROOT / "configs" / "demo.yaml"),
                   "--config", str(override), f"--model.loss={loss}")
    metrics = read_metrics(tmp_path / "logs" / "fit")
    for family in FAMILIES:  # after epochs 3 and 6, and the final model after epoch 8
        names = [k for k in metrics if k.startswith(f"val/demo/mean/{family}")]
        assert names, sorted(metrics)
        assert all([e for e, _ in metrics[k]] == [2, 5, 8] for k in names), metrics[names[0]]
        assert family in proc.stdout.split("val metrics (demo)")[-1]
    means = epoch_means(metrics["train/loss"])
    assert len(means) == 8
    assert (means[-1] + means[-2]) / 2 < 0.9 * means[0], means
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["loss"]["class_path"].endswith(checkpointed)
    assert not any(k.startswith("model.projection.") for k in ckpt["state_dict"])
    assert any(k.startswith("loss_head.") for k in ckpt["state_dict"]) == (
        loss == "Classification")


def test_a_fit_whose_last_epoch_is_not_evaluated_ends_with_the_final_models_metrics(tmp_path):
    """The demo validates every 4 epochs; a 2-epoch fit still ends with the four metrics of
    the model it saved, printed and logged, and their results file."""
    override = tiny_override(tmp_path, tmp_path / "demo", tmp_path / "ckpt", tmp_path / "logs")
    config = yaml.safe_load(override.read_text())
    config["trainer"].update(max_epochs=2, check_val_every_n_epoch=4)
    override.write_text(yaml.safe_dump(config))
    proc = run_cli(tmp_path, "fit", "--config", str(ROOT / "configs" / "demo.yaml"),
                   "--config", str(override), "--model.loss=TCN")
    table = proc.stdout.split("val metrics (demo)")[-1]
    assert proc.stdout.count("val metrics (demo)") == 1
    for family in FAMILIES:
        assert family in table
    metrics = read_metrics(tmp_path / "logs" / "fit")
    assert [e for e, _ in metrics["val/demo/mean/kendalls_tau"]] == [2]
    assert list((tmp_path / "logs" / "fit").rglob("evaluation/val_epoch0002.json"))


class GroupRecorder(Callback):
    """Writes the groups of every training batch of this rank to ``$GROUP_LOG.rank<r>``."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        dataset = trainer.datamodule.train_dataset
        groups = [dataset.record(int(i)).group for i in batch["index"]]
        path = f"{os.environ['GROUP_LOG']}.rank{trainer.global_rank}"
        with open(path, "a") as f:
            f.write(json.dumps({"epoch": trainer.current_epoch, "groups": groups}) + "\n")


def two_action_root(tmp: Path) -> Path:
    """The demo videos as a Penn-Action-like dataset of two actions (index groups)."""
    from mvf_lightning.data.demo import ensure_demo_dataset

    root = ensure_demo_dataset(tmp / "data", num_train=8, num_val=4)
    for split in ("train", "val"):
        index = load_split(root, split)
        for k, record in enumerate(index):
            record.group = "alpha" if k % 2 else "beta"
        index.save(root / "index" / f"{split}.json", overwrite=True)
    return root


def test_same_action_batches_on_two_ddp_ranks(tmp_path):
    root = two_action_root(tmp_path)
    override = tiny_override(tmp_path, root, tmp_path / "ckpt", tmp_path / "logs")
    config = yaml.safe_load(override.read_text())
    config["trainer"].update(max_epochs=2, limit_train_batches=None, check_val_every_n_epoch=2)
    config["data"] = {"class_path": "mvf_lightning.data.PennActionDataModule",
                      "init_args": {**config["data"]["init_args"], "train_batches": "same_group"}}
    override.write_text(yaml.safe_dump(config))
    os.environ["GROUP_LOG"] = str(tmp_path / "groups")
    try:
        run_cli(tmp_path, "fit", "--config", str(ROOT / "configs" / "demo.yaml"),
                "--config", str(override), "--model.loss=TCC",
                "--trainer.callbacks+=tests.losses.test_reference_methods_fit.GroupRecorder",
                "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp")
    finally:
        del os.environ["GROUP_LOG"]
    per_rank = {}
    for rank in (0, 1):
        lines = (tmp_path / f"groups.rank{rank}").read_text().splitlines()
        per_rank[rank] = [json.loads(line) for line in lines]
    # 8 videos over 2 ranks: 4 each, 2 batches of 2 per epoch, every one of a single action
    assert [len(v) for v in per_rank.values()] == [4, 4]
    for batches in per_rank.values():
        assert all(len(b["groups"]) == 2 and len(set(b["groups"])) == 1 for b in batches)
    assert per_rank[0] != per_rank[1]  # each rank draws its own batches
    metrics = read_metrics(tmp_path / "logs" / "fit")
    assert any(k.startswith("val/penn/") for k in metrics)
