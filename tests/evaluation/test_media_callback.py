"""EvaluationMedia: what lands in W&B (offline), CSV and TensorBoard runs after tiny fits,
read back from the files the loggers wrote."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import pytest
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

from mvf_lightning.data import DemoDataModule
from mvf_lightning.data.demo import ensure_demo_dataset
from mvf_lightning.data.index import load_split
from mvf_lightning.evaluation.callback import AlignmentEvaluation
from mvf_lightning.evaluation.media_callback import EvaluationMedia
from mvf_lightning.models.backbone import BackboneConfig
from mvf_lightning.models.mvformer import EmbedderConfig
from mvf_lightning.training.module import MVFormerModule

CROP = 32
NUM_TOKENS = 2
ATTENTION_FRAMES = 3


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    """A small demo dataset (4 train + 3 val videos), generated once for this file."""
    return ensure_demo_dataset(tmp_path_factory.mktemp("media") / "demo", num_train=4, num_val=3)


def tiny_module() -> MVFormerModule:
    backbone = BackboneConfig(
        name="vit_small_patch16_224",
        pretrained="none",
        blocks=[0, 1],
        img_size=CROP,
        model_kwargs={"depth": 2, "embed_dim": 32, "num_heads": 2},
    )
    embedder = EmbedderConfig(
        num_tokens=NUM_TOKENS,
        pool_dim=16,
        capacity=1,
        hidden_dim=32,
        num_layers=1,
        num_heads=4,
        ff_dim=64,
        embedding_dim=16,
        projection_hidden_dim=16,
        num_frames=8,
    )
    return MVFormerModule(backbone=backbone, embedder=embedder)


def fit(root: Path, logger, max_epochs: int = 1, test: bool = False, **media_kwargs):
    pl.seed_everything(0)
    media = EvaluationMedia(num_attention_frames=ATTENTION_FRAMES, strict=True, **media_kwargs)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=max_epochs,
        limit_train_batches=2,
        logger=logger,
        callbacks=[media, AlignmentEvaluation(stride=1, print_table=False)],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    dm = DemoDataModule(root=str(root), crop_size=CROP, num_frames=8, batch_size=2, num_workers=0)
    model = tiny_module()
    trainer.fit(model, datamodule=dm)
    if test:
        trainer.test(model, datamodule=dm, verbose=False)
    return trainer, media


def val_lengths(root: Path) -> list[int]:
    return [v.num_frames for v in load_split(root, "val")]


def attention_size() -> tuple[int, int]:
    """(width, height) of the attention image: one row per frame; the frame, all tokens, one
    panel per token; legend and row labels."""
    from mvf_lightning.visualization import attention_image

    image = attention_image(
        np.zeros((ATTENTION_FRAMES, CROP, CROP, 3), np.uint8),
        np.zeros((ATTENTION_FRAMES, NUM_TOKENS, 2, 2)),
    )
    return image.shape[1], image.shape[0]


SIMILARITY_SIZE = (640, 560)


def check_alignment_video(path: Path, num_frames: int) -> None:
    """The mp4 decodes, has one frame per query frame, and is readable (>= 224 px tall, two
    64 px demo videos enlarged side by side)."""
    import decord

    reader = decord.VideoReader(str(path))
    assert len(reader) == num_frames
    h, w = reader[0].shape[:2]
    assert h >= 224 and w >= 2 * 224


# ---------------------------------------------------------------------------- W&B
@pytest.mark.integration
def test_wandb_offline_run_has_images_video_and_table(demo_root, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    from lightning.pytorch.loggers import WandbLogger
    from PIL import Image

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbLogger(offline=True, save_dir=str(tmp_path), project="media-test")
    try:
        _, media = fit(demo_root, logger, max_epochs=2)
    finally:
        wandb.finish()
    assert media.logged == [("val", 0), ("val", 1)]
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    files = runs[0] / "files" / "media"

    pngs = sorted(files.rglob("*.png"))
    sizes = [Image.open(p).size for p in pngs]
    # per epoch: one similarity matrix (val_000 x val_001), one attention image
    assert sizes.count(SIMILARITY_SIZE) == 2, sizes
    assert sizes.count(attention_size()) == 2, sizes
    assert any("similarity" in p.name for p in pngs) and any("attention" in p.name for p in pngs)

    videos = sorted((files / "videos").rglob("*.mp4"))
    assert len(videos) == 2 and all("alignment" in p.name for p in videos)
    check_alignment_video(videos[0], val_lengths(demo_root)[0])

    tables = sorted((files / "table").rglob("*.table.json"))
    assert len(tables) == 2 and all("metrics_table" in p.name for p in tables)
    table = json.loads(tables[-1].read_text())
    assert table["columns"][0] == "set" and "kendalls_tau" in table["columns"]
    assert table["columns"][-1] == "similarity"
    assert [row[0] for row in table["data"]] == ["demo", "mean"]
    # the set's row has its similarity thumbnail, the mean row none (an offline W&B run
    # stores images inside tables as the word "Image", wandb/wandb#4611; online they show)
    assert table["data"][0][-1] is not None and table["data"][1][-1] is None


# ---------------------------------------------------------------------------- CSV
class NullLogger(Logger):
    """A logger of a kind EvaluationMedia does not know: everything is skipped."""

    name, version = "null", 0

    def log_metrics(self, metrics, step=None) -> None:
        pass

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass


@pytest.mark.integration
def test_csv_logger_table_pngs_and_mp4(demo_root, tmp_path, caplog):
    from PIL import Image

    csv_logger = CSVLogger(save_dir=str(tmp_path), name="run")
    with caplog.at_level(logging.INFO, logger="mvf_lightning.evaluation.media_callback"):
        fit(demo_root, [csv_logger, NullLogger()], max_epochs=1, test=True)
    log_dir = Path(csv_logger.log_dir)
    for stage, epoch in (("val", 0), ("test", 1)):  # test after fit: current_epoch == 1
        with (log_dir / f"metrics_table_{stage}_epoch{epoch}.csv").open() as f:
            rows = list(csv.reader(f))
        assert rows[0][0] == "set" and "kendalls_tau" in rows[0]
        assert [r[0] for r in rows[1:]] == ["demo", "mean"]
        assert all(np.isfinite(float(v)) for v in rows[1][1:] if v)
        media = log_dir / "media" / f"{stage}_epoch{epoch}"
        assert Image.open(media / "attention.png").size == attention_size()
        assert Image.open(media / "similarity.png").size == SIMILARITY_SIZE
        check_alignment_video(media / "alignment.mp4", val_lengths(demo_root)[0])
    # the unknown logger: one info message, no error
    skipped = [r.getMessage() for r in caplog.records if "NullLogger has no media sink" in
               r.getMessage()]
    assert len(skipped) == 1


# ---------------------------------------------------------------------------- TensorBoard
@pytest.mark.integration
def test_tensorboard_logger_gets_images_and_text(demo_root, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(save_dir=str(tmp_path), name="tb")
    fit(demo_root, logger, max_epochs=1)
    events = list(Path(logger.log_dir).glob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(logger.log_dir), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    images = set(acc.Tags()["images"])
    assert {"val/media/similarity", "val/media/attention", "val/media/alignment"} <= images
    att = acc.Images("val/media/attention")[0]
    assert (att.width, att.height) == attention_size()
    assert acc.Images("val/media/alignment")[0].height >= 224  # a strip of video frames
    videos = list(Path(logger.log_dir).rglob("alignment.mp4"))
    assert len(videos) == 1
    text_tags = set(acc.Tags()["tensors"])
    assert any(t.startswith("val/metrics_table") for t in text_tags), text_tags


# ---------------------------------------------------------------------------- interval
@pytest.mark.integration
def test_every_n_epochs_is_respected(demo_root, tmp_path):
    csv_logger = CSVLogger(save_dir=str(tmp_path), name="run")
    _, media = fit(
        demo_root, csv_logger, max_epochs=2, every_n_epochs=2, media=["table", "similarity"]
    )
    assert media.logged == [("val", 1)]
    log_dir = Path(csv_logger.log_dir)
    assert sorted(p.name for p in log_dir.glob("metrics_table_*.csv")) == [
        "metrics_table_val_epoch1.csv"
    ]
    assert sorted(p.name for p in (log_dir / "media").iterdir()) == ["val_epoch1"]
    assert sorted(p.name for p in (log_dir / "media" / "val_epoch1").iterdir()) == [
        "similarity.png"
    ]


# ---------------------------------------------------------------------------- fast checks
def test_other_ranks_do_nothing():
    trainer = SimpleNamespace(is_global_zero=False)  # any attribute access beyond this fails
    media = EvaluationMedia()
    media.log_media(trainer, None, "val")
    assert media.logged == []


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="every_n_epochs"):
        EvaluationMedia(every_n_epochs=0)
    with pytest.raises(ValueError, match="unknown"):
        EvaluationMedia(media=["similarity", "histogram"])


def test_a_video_that_does_not_decode_is_skipped_with_a_warning(demo_root, tmp_path):
    """The frames come from the DataModule (EvaluationData.eval_frames): a val video that
    does not decode gives none, and the media callback skips it with one warning."""
    import shutil

    from mvf_lightning.evaluation.records import VideoEmbedding

    root = tmp_path / "demo"
    shutil.copytree(demo_root, root)
    val = load_split(root, "val")
    broken, good = val.videos[0], val.videos[1]
    (root / broken.path).write_bytes(b"not a video")
    dm = DemoDataModule(root=str(root), crop_size=CROP, num_frames=8, num_workers=0)
    assert dm.eval_frames("demo", broken.id) is None
    frames = dm.eval_frames("demo", good.id)
    n = good.num_frames
    assert frames.model_input.shape == (n, 3, CROP, CROP) and frames.display.dtype == np.uint8
    assert frames.display.shape == (n, CROP, CROP, 3)
    assert dm.eval_frames("demo", "no_such_video") is None
    media = EvaluationMedia()
    trainer = SimpleNamespace(datamodule=dm)
    video = VideoEmbedding(broken.id, "demo", "val", np.zeros((n, 4), np.float32))
    with pytest.warns(RuntimeWarning, match=f"skipping demo/{broken.id}"):
        assert media._frames(trainer, video) is None
