"""datamodules.py: batches, eval sets, GPU-side transforms, Trainer integration, CLI typing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mvf_lightning.data.augment import IMAGENET_MEAN, IMAGENET_STD, TrainAugmentationConfig
from mvf_lightning.data.datamodules import VideoDataModule
from mvf_lightning.data.dataset_datamodules import (
    DemoDataModule,
    FineGymDataModule,
    Kinetics400DataModule,
    PennActionDataModule,
)
from mvf_lightning.data.datasets import EpochSeededSampler
from mvf_lightning.data.index import VideoIndex, VideoRecord, index_path, load_split
from mvf_lightning.errors import ConfigError

SMALL = {"num_frames": 8, "crop_size": 16, "num_workers": 0}


def _tensor_shapes(batch):
    return {k: (tuple(v.shape), v.dtype) for k, v in batch.items() if torch.is_tensor(v)}


def test_penn_like_train_batch_and_transfer(tiny_root):
    dm = PennActionDataModule(str(tiny_root), batch_size=2, **SMALL)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, EpochSeededSampler)
    batch = next(iter(loader))
    assert _tensor_shapes(batch) == {
        "frames": ((2, 2, 8, 3, 32, 32), torch.uint8),
        "steps": ((2, 2, 8), torch.int64),
        "masks": ((2, 2, 8), torch.bool),
        "seq_lens": ((2, 2), torch.int64),
        "index": ((2,), torch.int64),
    }
    out = dm.on_after_batch_transfer(batch, 0)
    assert out["frames"].shape == (2, 2, 8, 3, 16, 16) and out["frames"].dtype == torch.float32
    assert "broken" not in out


def test_penn_like_eval_sets_and_loader(tiny_root, helpers):
    dm = PennActionDataModule(str(tiny_root), **SMALL)
    sets = dm.eval_sets()
    assert list(sets) == ["alpha", "beta"]
    assert (sets["alpha"].num_classes, sets["beta"].num_classes) == (3, 2)
    assert sets["alpha"].train_ids == ("a0", "a1") and sets["alpha"].val_ids == ("a2",)
    items = list(dm.val_dataloader())
    seen = {(it["set_name"], it["split"], it["video_id"]) for it in items}
    assert seen == {
        ("alpha", "train", "a0"),
        ("alpha", "train", "a1"),
        ("alpha", "val", "a2"),
        ("beta", "train", "b0"),
        ("beta", "train", "b1"),
        ("beta", "val", "b2"),
    }
    a2 = next(it for it in items if it["video_id"] == "a2")
    assert a2["frames"].shape == (36, 3, 32, 32) and a2["labels"].tolist() == helpers.phase_labels(
        36, 3
    )
    out = dm.on_after_batch_transfer(a2, 0)
    assert out["frames"].shape == (36, 3, 16, 16) and out["frames"].dtype == torch.float32
    assert len(list(dm.test_dataloader())) == len(list(dm.predict_dataloader())) == 6


def test_actions_filter(tiny_root):
    dm = PennActionDataModule(str(tiny_root), actions=["beta"], **SMALL)
    dm.setup("fit")
    assert len(dm.train_dataset) == 2 and list(dm.eval_sets()) == ["beta"]
    with pytest.raises(ValueError, match="gamma"):
        PennActionDataModule(str(tiny_root), actions=["gamma"], **SMALL).setup("fit")


def test_missing_root_or_index_names_prepare_command(tmp_path):
    """Checked when the DataModule is made (before the CLI builds the model), then per split."""
    for root in (tmp_path / "missing", tmp_path):  # no folder; a folder without index/
        with pytest.raises(FileNotFoundError, match="mvf_lightning prepare penn-action --source"):
            PennActionDataModule(str(root), **SMALL)
    (tmp_path / "index").mkdir()
    dm = PennActionDataModule(str(tmp_path), **SMALL)
    with pytest.raises(FileNotFoundError, match="train.json not found; create it with: python"):
        dm.setup("fit")


def test_finegym_splits(tmp_path, tiny_root):
    train = load_split(tiny_root, "train")
    for split in ("gym99_train", "gym99_val"):
        videos = [
            VideoRecord(v.id, str(tiny_root / v.path), v.num_frames, 25.0, "E", v.label_runs)
            for v in train
        ]
        VideoIndex("finegym", split, videos, tmp_path).save(index_path(tmp_path, split))
    dm = FineGymDataModule(str(tmp_path), variant="gym99", **SMALL)
    dm.setup("fit")
    assert dm.hparams.num_frames == 8 and len(dm.train_dataset) == 4
    sets = dm.eval_sets()
    assert list(sets) == ["gym99"] and sets["gym99"].num_classes == 3
    with pytest.raises(ValueError, match="gym99"):
        FineGymDataModule(str(tmp_path), variant="gym100")
    with pytest.raises(FileNotFoundError, match="gym288_train.json"):
        FineGymDataModule(str(tmp_path), variant="gym288", **SMALL).setup("fit")


def test_kinetics_trains_on_root_evaluates_on_penn(tmp_path, tiny_root):
    train = load_split(tiny_root, "train")
    unlabeled = [VideoRecord(v.id, str(tiny_root / v.path), v.num_frames, 25.0, "k") for v in train]
    VideoIndex("kinetics400", "train", unlabeled, tmp_path).save(index_path(tmp_path, "train"))
    dm = Kinetics400DataModule(str(tmp_path), eval_root=str(tiny_root), **SMALL)
    dm.setup("fit")
    assert len(dm.train_dataset) == 4 and list(dm.eval_sets()) == ["alpha", "beta"]
    no_eval = Kinetics400DataModule(str(tmp_path), **SMALL)
    no_eval.setup("fit")
    assert no_eval.eval_sets() == {} and no_eval.val_dataloader() == []


def test_demo_datamodule(tmp_path):
    dm = DemoDataModule(root=str(tmp_path / "demo"), **SMALL)
    dm.prepare_data()
    dm.setup("fit")
    assert list(dm.eval_sets()) == ["demo"] and dm.eval_sets()["demo"].num_classes == 4
    batch = next(iter(dm.train_dataloader()))
    assert batch["frames"].shape == (1, 2, 8, 3, 64, 64)
    item = next(iter(dm.val_dataloader()))
    assert item["labels"].min() >= 0 and item["labels"].max() <= 3


def _prepared(root: Path) -> str:
    """A dataset root as ``prepare`` leaves it (an ``index/`` folder)."""
    (root / "index").mkdir(parents=True, exist_ok=True)
    return str(root)


def test_cli_signature_resolves_subclass_kwargs(tmp_path):
    jsonargparse = pytest.importorskip("jsonargparse")
    parser = jsonargparse.ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(PennActionDataModule, "data")
    cfg = parser.parse_args(
        [f"--data.root={_prepared(tmp_path)}", "--data.augmentation.hflip_prob=0.1",
         "--data.actions=[squat]"]
    )
    assert cfg.data.augmentation.hflip_prob == 0.1 and cfg.data.actions == ["squat"]
    assert cfg.data.num_frames == 80 and cfg.data.augmentation.crop_scale == (0.8, 1.0)
    dm = parser.instantiate(cfg).data
    assert dm.augmentation.hflip_prob == 0.1
    assert dm.train_augment.augment[0].p == 0.1  # reaches the Kornia flip
    parser = jsonargparse.ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(FineGymDataModule, "data")
    with pytest.raises(jsonargparse.ArgumentError):
        parser.parse_args(["--data.root=/x", "--data.variant=gym100"])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("PennActionDataModule", ("train", True, "train", "val")),
        ("FineGymDataModule", ("gym99_train", False, "gym99_train", "gym99_val")),
        ("Kinetics400DataModule", ("train", True, None, None)),
        ("PouringDataModule", ("train", False, "train", "val")),
        ("DemoDataModule", ("train", False, "train", "val")),
    ],
)
def test_cli_class_path_keeps_subclass_settings(name, expected, tmp_path):
    # LightningCLI passes every resolved argument explicitly: the subclasses' fixed
    # settings must not be overwritten by the base class defaults
    jsonargparse = pytest.importorskip("jsonargparse")
    from lightning.pytorch import LightningDataModule

    parser = jsonargparse.ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningDataModule, "data")
    config = {"class_path": f"mvf_lightning.data.{name}",
              "init_args": {"root": _prepared(tmp_path)}}
    dm = parser.instantiate(parser.parse_args([f"--data={json.dumps(config)}"])).data
    assert type(dm).__name__ == name
    got = (dm.train_split, dm.eval_by_group, dm.eval_train_split, dm.eval_val_split)
    assert got == expected


# ---------------------------------------------------------------- Trainer integration
def _tiny_module(seen):
    import lightning.pytorch as pl

    class Probe(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def training_step(self, batch, batch_idx):
            seen["train"].append((tuple(batch["frames"].shape), batch["frames"].dtype))
            seen["epochs"].append(self.trainer.train_dataloader.sampler.epoch)
            return (self.w - batch["frames"].mean()) ** 2

        def validation_step(self, batch, batch_idx):
            seen["val"].append((tuple(batch["frames"].shape), batch["set_name"], batch["split"]))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Probe()


def _trainer(tmp_path, **kwargs):
    import lightning.pytorch as pl

    options = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 2,
        "limit_train_batches": 2,
        "limit_val_batches": 2,
        "num_sanity_val_steps": 0,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": tmp_path,
    }
    return pl.Trainer(**{**options, **kwargs})


def _index_with_broken(tmp_path, tiny_root):
    root = tmp_path / "ds"
    good = load_split(tiny_root, "train").videos
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00garbage" * 50)
    for split in ("train", "clean_train", "val"):
        videos = [
            VideoRecord(v.id, str(tiny_root / v.path), v.num_frames, 25.0, v.group, v.label_runs)
            for v in good
        ]
        if split == "train":
            videos.insert(1, VideoRecord("bad", str(bad), 30, 25.0, "alpha"))
        VideoIndex("tiny", split, videos, root).save(index_path(root, split))
    return root


def test_trainer_fit_batches_and_broken_videos(tmp_path, tiny_root):
    root = _index_with_broken(tmp_path, tiny_root)
    seen = {"train": [], "val": [], "epochs": []}
    # evaluation decodes every video and raises on a broken one: evaluate on a clean copy
    dm = VideoDataModule(
        str(root), eval_train_split="clean_train", batch_size=2, max_broken_fraction=0.5, **SMALL
    )
    with pytest.warns(UserWarning, match="corrupt.mp4"):
        _trainer(tmp_path, limit_train_batches=3).fit(_tiny_module(seen), datamodule=dm)
    # 5 videos in batches of 2: the last batch of an epoch holds 1
    assert [s[0][0] for s in seen["train"]] == [2, 2, 1, 2, 2, 1]
    assert {(s[0][1:], s[1]) for s in seen["train"]} == {((2, 8, 3, 16, 16), torch.float32)}
    assert seen["epochs"] == [0, 0, 0, 1, 1, 1]
    assert seen["val"] and all(s[0][1:] == (3, 16, 16) for s in seen["val"])
    assert [p.rsplit("/", 1)[-1] for p in dm.broken_videos] == ["corrupt.mp4"]
    assert dm.state_dict() == {"broken_videos": dm.broken_videos}

    # found during training (the up-front check off): warned, then stopped past the limit
    strict = VideoDataModule(
        str(root), batch_size=2, max_broken_fraction=0.0, max_broken_videos=0,
        check_videos=False, **SMALL,
    )
    with pytest.warns(UserWarning), pytest.raises(RuntimeError, match=r"(?s)1 of 5.*corrupt\.mp4"):
        _trainer(tmp_path, limit_train_batches=3).fit(_tiny_module(seen), datamodule=strict)


def test_augment_in_workers_batches_arrive_augmented_and_are_not_augmented_again(
    tmp_path, tiny_root
):
    seen = {"train": [], "val": [], "epochs": []}
    dm = VideoDataModule(str(tiny_root), batch_size=2, augment_in_workers=True, **SMALL)
    _trainer(tmp_path, max_epochs=1).fit(_tiny_module(seen), datamodule=dm)
    assert {(s[0][1:], s[1]) for s in seen["train"]} == {((2, 8, 3, 16, 16), torch.float32)}
    assert dm.train_dataset.augment is dm.train_augment
    batch = next(iter(dm.train_dataloader()))
    frames = batch["frames"].clone()
    assert torch.equal(dm.on_after_batch_transfer(batch, 0)["frames"], frames)
    assert "augment_in_workers" in VideoDataModule._TRAIN_ONLY  # evaluation frames unchanged


# ---------------------------------------------------------------- settings added for fidelity
def test_time_window_per_dataset(tmp_path, tiny_root):
    assert FineGymDataModule(_prepared(tmp_path), **SMALL).sampler.window == "frames"
    assert PennActionDataModule(str(tiny_root), **SMALL).sampler.window == "video"
    assert Kinetics400DataModule(_prepared(tmp_path), **SMALL).sampler.window == "video"


def test_kinetics_eval_actions_restrict_evaluation(tmp_path, tiny_root):
    train = load_split(tiny_root, "train")
    unlabeled = [VideoRecord(v.id, str(tiny_root / v.path), v.num_frames, 25.0, "k") for v in train]
    VideoIndex("kinetics400", "train", unlabeled, tmp_path).save(index_path(tmp_path, "train"))
    dm = Kinetics400DataModule(
        str(tmp_path), eval_root=str(tiny_root), eval_actions=["alpha"], **SMALL
    )
    assert list(dm.eval_sets()) == ["alpha"]
    assert {(it["set_name"], it["video_id"]) for it in dm.val_dataloader()} == {
        ("alpha", "a0"), ("alpha", "a1"), ("alpha", "a2")
    }
    bad = Kinetics400DataModule(str(tmp_path), eval_root=str(tiny_root), eval_actions=["golf"])
    with pytest.raises(ValueError, match=r"eval groups \['golf'\].*alpha"):
        bad.eval_sets()


class _Model(torch.nn.Module):
    """A model that says how its input is normalised (data.contract.InputNormalization)."""

    mean = (0.2, 0.4, 0.6)
    std = (0.5, 0.25, 0.125)

    def input_normalization(self):
        return self.mean, self.std


def _attach(dm, module):
    from types import SimpleNamespace

    dm.trainer = SimpleNamespace(lightning_module=module, training=True)


def test_normalisation_defaults_to_the_models_own(tiny_root):
    module = _Model()
    plain = TrainAugmentationConfig(jitter_prob=0.0, blur_prob=0.0, grayscale_prob=0.0)
    dm = PennActionDataModule(str(tiny_root), augmentation=plain, **SMALL)
    _attach(dm, module)
    assert dm.normalization() == (_Model.mean, _Model.std)
    # a frame of exactly the backbone's mean colour normalises to 0, in training and evaluation
    colour = (torch.tensor(_Model.mean) * 255).to(torch.uint8).view(3, 1, 1)
    frames = colour.expand(1, 2, 3, 3, 32, 32).clone()
    out = dm.on_after_batch_transfer({"frames": frames}, 0)["frames"]
    assert out.abs().max() < 0.02
    dm.trainer.training = False
    out = dm.on_after_batch_transfer({"frames": frames[0, 0]}, 0)["frames"]
    assert out.abs().max() < 0.02
    # values given to the DataModule win
    given = PennActionDataModule(str(tiny_root), mean=(0.5, 0.5, 0.5), std=(1, 1, 1), **SMALL)
    _attach(given, module)
    assert given.normalization() == ((0.5, 0.5, 0.5), (1.0, 1.0, 1.0))


def test_normalisation_falls_back_to_imagenet_with_one_warning(tiny_root):
    import warnings

    dm = PennActionDataModule(str(tiny_root), **SMALL)
    assert dm.normalization() == (IMAGENET_MEAN, IMAGENET_STD)  # no trainer yet: no warning
    _attach(dm, torch.nn.Linear(1, 1))
    with pytest.warns(UserWarning, match="does not say how its input is normalised.*data.mean"):
        assert dm.normalization() == (IMAGENET_MEAN, IMAGENET_STD)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dm.normalization()
        dm.on_after_batch_transfer({"frames": torch.zeros(1, 2, 2, 3, 32, 32).byte()}, 0)


def test_hyperparameters_hold_plain_values_for_weights_only_checkpoints(tmp_path, tiny_root):
    import io

    dm = PennActionDataModule(
        str(tiny_root), augmentation={"hflip_prob": 0.25}, **SMALL
    )
    assert dm.augmentation == TrainAugmentationConfig(hflip_prob=0.25)
    assert dm.hparams["augmentation"]["hflip_prob"] == 0.25
    buffer = io.BytesIO()
    torch.save({"datamodule_hyper_parameters": dict(dm.hparams)}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)["datamodule_hyper_parameters"]
    assert loaded["augmentation"]["blur_kernel_size"] == (9, 5)
    with pytest.raises(ConfigError, match="data.augmentation"):
        PennActionDataModule(str(tiny_root), augmentation=0.5)
