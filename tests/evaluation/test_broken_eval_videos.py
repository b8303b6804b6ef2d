"""A corrupt video in the evaluation sets: validate, predict and ``evaluate`` finish, leave it
out of every metric, list it and count it; the feature cache serves a second validation."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
from lightning.pytorch.loggers import CSVLogger

from mvf_lightning.data import DemoDataModule
from mvf_lightning.data.datasets import EvalVideoDataset
from mvf_lightning.data.demo import ensure_demo_dataset
from mvf_lightning.data.index import load_split
from mvf_lightning.evaluation import read_export_info
from mvf_lightning.evaluation.callback import AlignmentEvaluation
from mvf_lightning.evaluation.evaluate_cli import main as evaluate_main
from mvf_lightning.evaluation.prediction_writer import EmbeddingExport
from mvf_lightning.models.backbone import BackboneConfig
from mvf_lightning.models.mvformer import EmbedderConfig
from mvf_lightning.training.module import MVFormerModule

CROP = 32


@pytest.fixture(scope="module")
def broken_root(tmp_path_factory) -> tuple[Path, str]:
    """Demo data (4 train + 3 val videos) whose first val video is not an mp4 any more."""
    root = ensure_demo_dataset(tmp_path_factory.mktemp("broken") / "demo", num_train=4,
                               num_val=3)
    victim = load_split(root, "val")[0]
    (root / victim.path).write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated garbage")
    return root, victim.id


def tiny_module() -> MVFormerModule:
    return MVFormerModule(
        backbone=BackboneConfig(name="vit_small_patch16_224", pretrained="none", blocks=[0, 1],
                                img_size=CROP,
                                model_kwargs={"depth": 2, "embed_dim": 32, "num_heads": 2}),
        embedder=EmbedderConfig(num_tokens=2, pool_dim=16, capacity=1, hidden_dim=32,
                                num_layers=1, num_heads=4, ff_dim=64, embedding_dim=16,
                                projection_hidden_dim=16, num_frames=8),
    )


def trainer(callbacks, root: Path, logger=False) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", devices=1, logger=logger, callbacks=callbacks,
                      enable_progress_bar=False, enable_model_summary=False,
                      enable_checkpointing=False, default_root_dir=root)


def datamodule(root: Path) -> DemoDataModule:
    return DemoDataModule(root=str(root), crop_size=CROP, num_frames=8, num_workers=0)


def test_eval_dataset_returns_a_marker(broken_root):
    root, victim = broken_root
    item = EvalVideoDataset(load_split(root, "val"), set_name="demo", split="val")[0]
    assert item["broken"] is True and "frames" not in item
    assert (item["video_id"], item["set_name"], item["split"]) == (victim, "demo", "val")
    assert "cannot decode video" in item["error"] and victim in item["error"]


@pytest.mark.faults
def test_validate_predict_and_evaluate_skip_the_broken_video(broken_root, tmp_path, capsys):
    root, victim = broken_root
    pl.seed_everything(0)
    model = tiny_module()
    evaluation = AlignmentEvaluation(stride=1)
    logger = CSVLogger(str(tmp_path), name="run")
    with pytest.warns(UserWarning, match=f"demo/val/{victim} failed to decode"):
        first = trainer([evaluation], tmp_path, logger).validate(
            model, datamodule(root), verbose=False)[0]
    assert first["val/demo/broken_videos"] == 1.0
    assert first["val/demo/mean/kendalls_tau"] == first["val/demo/mean/kendalls_tau"]  # not NaN
    assert "phase_classification_logreg@1.0" in evaluation.results["mean"]
    printed = capsys.readouterr().out
    assert f"demo/val/{victim}: cannot decode video" in printed  # listed under the table
    saved = json.loads((Path(logger.log_dir) / "evaluation" / "val_epoch0000.json").read_text())
    assert [b["video_id"] for b in saved["broken_videos"]] == [victim]
    assert saved["command"] == "validate"  # results tells evaluations from fits by it
    assert saved["mean"]["kendalls_tau"] == pytest.approx(first["val/demo/mean/kendalls_tau"])

    # a second evaluation with the same model: backbone features come from the cache
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        second = trainer([AlignmentEvaluation(stride=1, print_table=False)], tmp_path / "2")
        second = second.validate(model, datamodule(root), verbose=False)[0]
    assert model.cached_backbone.stats()["hits"] == 6  # 4 train + 2 decodable val videos
    assert second == first
    assert (tmp_path / "2" / "evaluation" / "val_epoch0000.json").is_file()  # no logger

    out = tmp_path / "export"
    with pytest.warns(UserWarning, match="1 video.s. failed to decode and were not exported"):
        trainer([EmbeddingExport(output_dir=str(out))], tmp_path).predict(
            model, datamodule(root), return_predictions=False)
    assert [b.video_id for b in read_export_info(out)["broken_videos"]] == [victim]
    capsys.readouterr()
    assert evaluate_main(["--embeddings", str(out), "--output", str(tmp_path / "m.json")]) == 0
    assert f"demo/val/{victim}: cannot decode video" in capsys.readouterr().out
    evaluated = json.loads((tmp_path / "m.json").read_text())
    for name, value in evaluated["mean"].items():  # stride 1 recorded by demo's protocol
        assert value == pytest.approx(first[f"val/demo/mean/{name}"], abs=1e-6), name
