"""The command line end to end: fit / validate / test / predict / evaluate / resume.

Integration tests run ``python -m mvf_lightning`` as subprocesses on the demo config, shrunk
by an override config (tiny ViT, tiny embedder, 32 px, 2 training steps) and with the demo
dataset generated in a temporary folder. The fast tests check the parser (mistyped keys,
``--print_config`` of every config) in-process and :class:`EmbeddingExport` with a stub
trainer.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from tests.cli_helpers import EMBEDDING_DIM, ROOT, read_metrics, run_cli, tiny_override

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
WRITER = "mvf_lightning.evaluation.prediction_writer.EmbeddingExport"
METRIC = "demo/mean/kendalls_tau"


# ---------------------------------------------------------------------------- helpers

def demo_video_count(demo_root: Path) -> int:
    return sum(
        len(json.loads((demo_root / "index" / f"{s}.json").read_text())["videos"])
        for s in ("train", "val")
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny fit of the demo for one epoch (2 steps) through the CLI."""
    tmp = tmp_path_factory.mktemp("cli")
    demo_root, ckpt_dir, logs = tmp / "demo", tmp / "ckpt", tmp / "logs"
    override = tiny_override(tmp, demo_root, ckpt_dir, logs, monitor=f"val/{METRIC}")
    base = ["--config", str(ROOT / "configs" / "demo.yaml"), "--config", str(override)]
    proc = run_cli(tmp, "fit", *base)
    return SimpleNamespace(
        tmp=tmp, base=base, demo_root=demo_root, ckpt_dir=ckpt_dir, logs=logs, fit=proc
    )


# ---------------------------------------------------------------------------- integration
@pytest.mark.integration
def test_fit_writes_checkpoints_and_validation_metrics(trained):
    assert (trained.ckpt_dir / "last.ckpt").is_file()
    assert any(p.name.startswith("epoch=0-") for p in trained.ckpt_dir.glob("*.ckpt"))
    metrics = read_metrics(trained.logs / "fit")
    assert f"val/{METRIC}" in metrics
    assert "train/loss" in metrics
    assert all(math.isfinite(v) for _, v in metrics["train/loss"])
    assert "val metrics (demo)" in trained.fit.stdout
    assert not (trained.tmp / "default_demo_root").exists()  # `root` overrides the default


@pytest.mark.integration
@pytest.mark.parametrize("command", ["validate", "test"])
def test_validate_and_test_from_checkpoint(trained, command):
    ckpt = trained.ckpt_dir / "last.ckpt"
    name = f"run_{command}"
    proc = run_cli(
        trained.tmp,
        command,
        *trained.base,
        "--ckpt_path",
        str(ckpt),
        f"--trainer.logger.init_args.name={name}",
    )
    stage = "val" if command == "validate" else "test"
    metrics = read_metrics(trained.logs / name)
    for metric in ("kendalls_tau", "phase_classification_logreg@1.0", "phase_progression",
                   "retrieval_ap@5"):
        assert f"{stage}/demo/mean/{metric}" in metrics, sorted(metrics)
        assert f"{stage}/demo/demo/{metric}" in metrics
    assert f"{stage} metrics (demo)" in proc.stdout  # the callback's table
    assert f"{stage}/{METRIC}" in proc.stdout  # Lightning's results table
    # last.ckpt holds the weights the fit's validation saw: same numbers.
    fit_metrics = read_metrics(trained.logs / "fit")
    for key, values in metrics.items():
        fit_key = "val/" + key.split("/", 1)[1]
        assert values[-1][1] == pytest.approx(fit_metrics[fit_key][-1][1], abs=1e-6), key


@pytest.mark.integration
def test_predict_exports_embeddings_and_evaluate_reads_them(trained):
    from mvf_lightning.evaluation.export import read_embeddings

    out = trained.tmp / "export"
    ckpt = trained.ckpt_dir / "last.ckpt"
    proc = run_cli(
        trained.tmp,
        "predict",
        *trained.base,
        "--ckpt_path",
        str(ckpt),
        "--trainer.logger=false",
        "--return_predictions=false",
        f"--trainer.callbacks+={WRITER}",
        f"--trainer.callbacks.output_dir={out}",
    )
    n_videos = demo_video_count(trained.demo_root)
    assert n_videos == 36  # the demo's defaults: 24 train + 12 val
    assert f"wrote {n_videos} videos" in proc.stdout
    sets = read_embeddings(out)
    assert list(sets) == ["demo"]
    train, val = sets["demo"]["train"], sets["demo"]["val"]
    assert (len(train), len(val)) == (24, 12)
    keys = {(r.split, r.video_id) for r in train + val}
    assert len(keys) == n_videos
    for rec in train + val:
        assert rec.embeddings.shape[1] == EMBEDDING_DIM
        np.testing.assert_allclose(np.linalg.norm(rec.embeddings, axis=1), 1.0, atol=1e-4)
        assert rec.labels is not None and rec.labels.shape == (rec.num_frames,)
        assert rec.frame_indices is not None
    assert [r.video_id for r in train] == sorted(r.video_id for r in train)  # dataset order

    result = trained.tmp / "metrics.json"
    proc = run_cli(
        trained.tmp,
        "evaluate",
        "--embeddings",
        str(out),
        "--stride",
        "1",
        "--output",
        str(result),
    )
    assert "kendalls_tau" in proc.stdout and "mean" in proc.stdout
    payload = json.loads(result.read_text())
    assert math.isfinite(payload["mean"]["kendalls_tau"])


@pytest.mark.integration
def test_resume_continues_the_epoch_count(trained):
    ckpt_dir = trained.tmp / "ckpt_resumed"
    proc = run_cli(
        trained.tmp,
        "fit",
        *trained.base,
        "--ckpt_path",
        str(trained.ckpt_dir / "last.ckpt"),
        "--trainer.max_epochs=2",
        "--trainer.logger.init_args.name=resumed",
        f"--trainer.callbacks.dirpath={ckpt_dir}",  # the last callback: ModelCheckpoint
    )
    assert "Restoring states from the checkpoint" in proc.stdout + proc.stderr
    names = sorted(p.name for p in ckpt_dir.glob("*.ckpt"))
    assert "epoch=1-step=4.ckpt" in names, names
    assert not any(n.startswith("epoch=0-") for n in names)
    last = torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=False)
    assert (last["epoch"], last["global_step"]) == (1, 4)
    metrics = read_metrics(trained.logs / "resumed")
    assert {epoch for epoch, _ in metrics["train/loss"]} == {1}
    assert [epoch for epoch, _ in metrics[f"val/{METRIC}"]] == [1]


# ---------------------------------------------------------------------------- fast: parser
def _main_in_process(monkeypatch, tmp_path, args: list[str]):
    from mvf_lightning.cli.commands import main

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MVF_LIGHTNING_DEMO_ROOT", str(tmp_path / "demo_root"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(args)
    return info.value.code


def test_mistyped_key_names_the_closest_valid_key(monkeypatch, tmp_path, capsys):
    code = _main_in_process(
        monkeypatch,
        tmp_path,
        ["fit", "--config", str(ROOT / "configs" / "demo.yaml"), "--model.embeder.num_tokens=4"],
    )
    assert code not in (0, None)
    err = capsys.readouterr().err
    assert 'did you mean "model.embedder.num_tokens"' in err


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_print_config_instantiates_nothing(monkeypatch, tmp_path, capsys, config):
    from lightning.pytorch.cli import LightningCLI

    def refuse(self):
        raise AssertionError("--print_config must not instantiate classes")

    monkeypatch.setattr(LightningCLI, "instantiate_classes", refuse)
    code = _main_in_process(
        monkeypatch, tmp_path, ["fit", "--config", str(config), "--print_config"]
    )
    assert code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert {"trainer", "model", "data"} <= set(printed)
    assert printed["data"]["class_path"].startswith("mvf_lightning.data.")
    assert list(tmp_path.iterdir()) == []  # no demo data, no run folders


# ---------------------------------------------------------------------------- fast: writer
def _trainer(world_size: int = 1):
    return SimpleNamespace(
        world_size=world_size, global_rank=0, is_global_zero=True, strategy=None, datamodule=None
    )


def _prediction(video_id: str, split: str = "val", n: int = 5, labelled: bool = True):
    g = torch.Generator().manual_seed(len(video_id) * 31 + n)
    emb = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=1)
    labels = torch.arange(n) % 2 if labelled else torch.full((n,), -1)
    return {
        "embeddings": emb,
        "attention": None,
        "labels": labels,
        "frame_indices": torch.arange(n) * 2,
        "video_id": video_id,
        "group": "g",
        "split": split,
        "set_name": "s",
    }


def _predict(writer, predictions: list[tuple[int, dict]], world_size: int = 1):
    trainer = _trainer(world_size)
    writer.setup(trainer, SimpleNamespace(predict_step=lambda batch, batch_idx: None), "predict")
    writer.on_predict_epoch_start(trainer, None)
    for batch_idx, (index, pred) in enumerate(predictions):
        writer.write_on_batch_end(trainer, None, pred, [index], None, batch_idx, 0)
    writer.on_predict_epoch_end(trainer, None)


def test_embedding_export_writes_unique_videos_in_dataset_order(tmp_path):
    from mvf_lightning.evaluation.export import read_embeddings
    from mvf_lightning.evaluation.prediction_writer import EmbeddingExport

    out = tmp_path / "export"
    writer = EmbeddingExport(output_dir=str(out))
    preds = [
        (2, _prediction("b", "val")),
        (0, _prediction("t0", "train")),
        (1, _prediction("a", "val", labelled=False)),
        (2, _prediction("b", "val")),  # a padded duplicate
    ]
    _predict(writer, preds)
    assert writer.written == out
    sets = read_embeddings(out)
    assert [r.video_id for r in sets["s"]["train"]] == ["t0"]
    assert [r.video_id for r in sets["s"]["val"]] == ["a", "b"]
    a, b = sets["s"]["val"]
    assert a.labels is None  # all -1: unknown
    np.testing.assert_array_equal(b.labels, np.arange(5) % 2)
    np.testing.assert_array_equal(b.frame_indices, np.arange(5) * 2)
    np.testing.assert_allclose(b.embeddings, preds[0][1]["embeddings"].numpy())
    assert a.group == "g"


def test_embedding_export_never_overwrites_unless_asked(tmp_path):
    from mvf_lightning.evaluation.prediction_writer import EmbeddingExport

    out = tmp_path / "export"
    _predict(EmbeddingExport(output_dir=str(out)), [(0, _prediction("v"))])
    with pytest.raises(FileExistsError, match="overwrite"):
        _predict(EmbeddingExport(output_dir=str(out)), [(0, _prediction("w"))])
    _predict(EmbeddingExport(output_dir=str(out), overwrite=True), [(0, _prediction("w"))])
    index = json.loads((out / "index.json").read_text())
    assert [v["id"] for v in index["videos"]] == ["w"]

    other = tmp_path / "not_an_export"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not an embedding export"):
        _predict(EmbeddingExport(output_dir=str(other), overwrite=True), [(0, _prediction("v"))])
    assert (other / "notes.txt").read_text() == "keep me"


def test_embedding_export_rejects_batched_predictions(tmp_path):
    from mvf_lightning.evaluation.prediction_writer import EmbeddingExport

    pred = _prediction("v")
    pred["video_id"] = ["v", "w"]  # a collated batch instead of one video
    with pytest.raises(ValueError, match="batch size 1"):
        _predict(EmbeddingExport(output_dir=str(tmp_path / "x")), [(0, pred)])
