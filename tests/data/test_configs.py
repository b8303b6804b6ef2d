"""The data side of the paper configs, as ``--print_config`` and ``summary`` show them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mvf_lightning.cli.commands import main
from mvf_lightning.data.dataset_datamodules import PouringDataModule

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
pytestmark = pytest.mark.integration  # each parses a full paper config (~20 s on a busy CPU)


def _printed(monkeypatch, tmp_path, capsys, config: str) -> dict:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", str(CONFIGS / config), "--print_config"])
    assert info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("config", ["finegym99.yaml", "finegym288.yaml"])
def test_finegym_configs_sample_local_windows_and_crop_natively(
    monkeypatch, tmp_path, capsys, config
):
    data = _printed(monkeypatch, tmp_path, capsys, config)["data"]
    assert data["class_path"] == "mvf_lightning.data.FineGymDataModule"
    args = data["init_args"]
    assert args["time_window"] == "frames" and args["num_frames"] == 240
    assert args["eval_crop"] == "native"
    assert args["mean"] is None and args["std"] is None  # the backbone's own (DINO: ImageNet)


def test_k400_config_evaluates_baseball_pitch_every_epoch(monkeypatch, tmp_path, capsys):
    printed = _printed(monkeypatch, tmp_path, capsys, "k400.yaml")
    args = printed["data"]["init_args"]
    assert args["eval_actions"] == ["baseball_pitch"] and args["batch_size"] == 1
    assert args["time_window"] == "video" and args["eval_crop"] == "native"
    assert printed["trainer"]["check_val_every_n_epoch"] == 1


def test_pouring_config_and_parameter_count(monkeypatch, tmp_path, capsys):
    printed = _printed(monkeypatch, tmp_path, capsys, "pouring.yaml")
    assert printed["data"]["class_path"] == "mvf_lightning.data.PouringDataModule"
    args = printed["data"]["init_args"]
    assert args["num_frames"] == 240 and args["time_window"] == "video"
    assert printed["trainer"]["max_epochs"] == 1000
    assert printed["model"]["backbone"]["blocks"] == [11]
    assert printed["model"]["embedder"]["num_tokens"] == 3
    assert PouringDataModule.alignment_stride == 5  # Kendall's tau / retrieval stride
    assert main(["summary", "--config", str(CONFIGS / "pouring.yaml")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "trainable parameters: 3622272"  # mvformer.md's ablation table


def test_demo_config_leaves_normalisation_to_the_backbone():
    """EfficientNet-Lite0's package weights need 0.5 / 0.5, which its timm data config
    reports, so the demo config restates nothing."""
    from mvf_lightning.models.backbone import BackboneConfig, ImageBackbone

    config = yaml.safe_load((CONFIGS / "demo.yaml").read_text())
    assert "mean" not in config["data"]["init_args"] and "std" not in config["data"]["init_args"]
    name = config["model"]["backbone"]["name"]
    backbone = ImageBackbone(BackboneConfig(name=name, pretrained="none"))
    assert backbone.mean == (0.5, 0.5, 0.5) and backbone.std == (0.5, 0.5, 0.5)
