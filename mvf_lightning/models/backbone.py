"""timm image backbone that turns frames into spatial tokens (frozen, or with its last blocks
trained).

ViTs give the outputs of chosen transformer blocks (before the final norm), concatenated on
channels, without prefix tokens, and on request the final normalised CLS vector; CNNs give
their last feature map as tokens. The
frozen part never trains: it stays in eval mode and runs without gradients, over frames in
chunks to bound memory. Optionally the last few blocks are unfrozen for fine-tuning.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
from torch import nn

from ..errors import CheckpointError, ConfigError, MissingFileError
from .weight_sources import (
    describe_source,
    feature_extractor_state,
    load_package_weights,
    load_state_dict_file,
)

RANDOM_INIT_SEED = 0


@dataclass
class BackboneConfig:
    """Which frozen image model produces the spatial tokens, and from which weights."""

    name: str = "vit_base_patch8_224.dino"
    pretrained: str = "hub"
    """``hub`` | ``none`` | path to .safetensors/.pth/.npz | ``package:<name>``"""
    blocks: list[int] = field(default_factory=lambda: [3, 7, 11])
    """ViT blocks whose outputs are concatenated; ignored for CNNs (last feature map)."""
    chunk_size: int = 40
    """Frames per backbone pass."""
    unfreeze_last: int = 0
    """Train the last N blocks (ViT) or stages (CNN) instead of keeping them frozen; a ViT
    that supplies its final CLS vector trains its final norm with them."""
    img_size: int | None = None
    """Input size for ViTs if not the model's default (e.g. small test images)."""
    model_kwargs: dict = field(default_factory=dict)
    """Extra keyword arguments for ``timm.create_model`` (e.g. ``depth`` for tiny test models)."""
    autocast: str | None = None
    """``bf16`` | ``fp16``: run the backbone under autocast in that precision (its outputs
    return as float32); None: the trainer's precision. See benchmarks/README.md."""
    channels_last: bool = False
    """Channels-last memory format for the backbone's convolutions (CNN backbones)."""
    fused_attn: bool | None = None
    """timm's fused (SDPA) attention in ViT blocks; None keeps timm's default (fused)."""
    compile: bool = False
    """``torch.compile`` the backbone's feature extraction (compiles on the first batch)."""


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
PERFORMANCE_SETTINGS = ("chunk_size", "channels_last", "fused_attn", "compile")
"""Settings that change how fast features are computed, not what they are."""


class ImageBackbone(nn.Module):
    """Spatial tokens ``[N, S, C]`` from frames ``[N, 3, H, W]``, and with ``final_cls`` the
    model's final normalised CLS vector ``[N, cls_channels]`` (ViTs only).

    ``mean`` / ``std`` are the normalisation the model expects (timm's data config).
    """

    def __init__(self, config: BackboneConfig, final_cls: bool = False) -> None:
        super().__init__()
        self.config = config
        self.final_cls = final_cls
        self.weight_source = describe_source(config.pretrained)
        self.model, self.is_vit = _create(config)
        if final_cls and not (self.is_vit and getattr(self.model, "cls_token", None) is not None):
            raise ConfigError(
                f"backbone {config.name} has no CLS token: late fusion on 'cls', dynamic tokens "
                "and the fixed-width baseline need a ViT with one"
            )
        if self.is_vit:
            depth = len(self.model.blocks)
            self.blocks = _resolve_blocks(config.blocks, depth, config.name)
            # The final CLS needs every block and the final norm; otherwise both are dropped.
            keep = [depth - 1] if final_cls else self.blocks
            self.model.prune_intermediate_layers(keep, prune_norm=not final_cls, prune_head=True)
            self.out_channels = self.model.embed_dim * len(self.blocks)
            self.cls_channels: int | None = self.model.embed_dim if final_cls else None
            self.num_prefix_tokens = self.model.num_prefix_tokens
            stages: list[nn.Module] = list(self.model.blocks)
        else:
            self.blocks = []
            self.out_channels = self.model.feature_info.channels()[-1]
            self.cls_channels = None
            self.num_prefix_tokens = 0
            # EfficientNet-style models keep all their stages in one ``blocks`` container.
            stages = []
            for child_name, child in self.model.named_children():
                is_stages = child_name == "blocks" and isinstance(child, nn.Sequential)
                stages.extend(child if is_stages else [child])
        if config.unfreeze_last < 0 or config.unfreeze_last > len(stages):
            raise ConfigError(
                f"backbone.unfreeze_last={config.unfreeze_last} is out of range for "
                f"{config.name} ({len(stages)} blocks/stages available)"
            )
        if config.chunk_size < 1:
            raise ConfigError(f"backbone.chunk_size must be >= 1, got {config.chunk_size}")
        if config.autocast is not None and config.autocast not in AUTOCAST_DTYPES:
            raise ConfigError(
                f"backbone.autocast={config.autocast!r}: use bf16, fp16 or null (no autocast)"
            )
        if config.fused_attn is not None:
            for module in self.model.modules():
                if hasattr(module, "fused_attn"):
                    module.fused_attn = bool(config.fused_attn)
        if config.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self._extract = torch.compile(self._features) if config.compile else self._features
        self.model.requires_grad_(False)
        # A plain list, not a ModuleList: registering the stages twice would store them twice.
        self._trainable: list[nn.Module] = stages[len(stages) - config.unfreeze_last :]
        norm = getattr(self.model, "norm", None) if self.is_vit else None
        if config.unfreeze_last and final_cls and isinstance(norm, nn.Module):
            # The final norm follows the unfrozen blocks and trains with them, as in the
            # reference (its fine-tuned "back end" is the last blocks plus the final norm).
            # Without the final CLS the norm is pruned: it would receive no gradient anyway.
            self._trainable.append(norm)
        for stage in self._trainable:
            stage.requires_grad_(True)
        data_cfg = timm.data.resolve_model_data_config(self.model)
        self.mean = tuple(float(v) for v in data_cfg["mean"])
        self.std = tuple(float(v) for v in data_cfg["std"])
        self.train(False)

    @property
    def fully_frozen(self) -> bool:
        return self.config.unfreeze_last == 0

    def frozen_state_keys(self, prefix: str = "") -> list[str]:
        """State-dict keys (with ``prefix``) of the frozen part: these stay out of checkpoints."""
        trainable = {id(t) for m in self._trainable for t in (*m.parameters(), *m.buffers())}
        keys = []
        for name, tensor in self.model.state_dict(keep_vars=True).items():
            if id(tensor) not in trainable:
                keys.append(f"{prefix}model.{name}")
        return keys

    def train(self, mode: bool = True) -> ImageBackbone:
        """The frozen part always stays in eval mode; unfrozen blocks follow ``mode``."""
        super().train(False)
        for stage in self._trainable:
            stage.train(mode)
        self.training = mode
        return self

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.is_vit:
            out = self.model.forward_intermediates(
                x,
                indices=self.blocks,
                norm=False,
                output_fmt="NLC",
                intermediates_only=not self.final_cls,
            )
            if self.final_cls:
                final, blocks = out
                return torch.cat(blocks, dim=-1), final[:, 0]
            return torch.cat(out, dim=-1), None
        fmap = self.model(x)[-1]
        return fmap.flatten(2).transpose(1, 2), None

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``frames [N, 3, H, W]`` -> ``tokens [N, S, C]``, ``cls [N, C_cls] | None``."""
        if frames.dim() != 4 or frames.shape[1] != 3:
            raise ValueError(f"backbone expects frames [N, 3, H, W], got {tuple(frames.shape)}")
        grad = torch.is_grad_enabled() and not self.fully_frozen
        dtype = AUTOCAST_DTYPES.get(self.config.autocast)
        autocast = (
            contextlib.nullcontext() if dtype is None  # the caller's precision, e.g. Lightning's
            else torch.autocast(frames.device.type, dtype=dtype)
        )
        memory_format = (
            torch.channels_last if self.config.channels_last else torch.contiguous_format
        )
        tokens, cls = [], []
        with torch.set_grad_enabled(grad):
            for chunk in frames.split(self.config.chunk_size):
                with autocast:
                    t, c = self._extract(chunk.contiguous(memory_format=memory_format))
                tokens.append(t if dtype is None else t.float())
                if c is not None:
                    cls.append(c if dtype is None else c.float())
        return torch.cat(tokens), (torch.cat(cls) if cls else None)

    def feature_grid(self, height: int, width: int) -> tuple[int, int]:
        """Spatial token grid (rows, cols) for an input of the given size."""
        if self.is_vit:
            return self.model.patch_embed.dynamic_feat_size((height, width))
        r = self.model.feature_info.reduction()[-1]
        return (height + r - 1) // r, (width + r - 1) // r


def _resolve_blocks(blocks: list[int], depth: int, name: str) -> list[int]:
    if not blocks:
        raise ConfigError(f"backbone.blocks is empty: name at least one of the {depth} blocks")
    out = []
    for b in blocks:
        if not -depth <= b < depth:
            raise ConfigError(
                f"backbone.blocks: block index {b} is out of range for {name} "
                f"({depth} blocks: 0..{depth - 1})"
            )
        out.append(b % depth)
    if len(set(out)) != len(out):
        raise ConfigError(f"backbone.blocks: repeated block in {blocks}")
    return sorted(out)


def _create(config: BackboneConfig) -> tuple[nn.Module, bool]:
    name = config.name
    arch = name.split(".")[0]
    if not timm.is_model(arch):
        import difflib

        close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; closest timm names: {', '.join(close)}" if close else ""
        raise ConfigError(f"unknown backbone {name!r}: timm has no such model{hint}")
    source = config.pretrained
    kwargs = dict(config.model_kwargs)
    is_vit = _is_vit(arch, kwargs)
    if is_vit:
        if config.img_size is not None:
            kwargs["img_size"] = config.img_size
    else:
        kwargs.update(features_only=True, out_indices=(-1,))
    # No classifier: its weights in a file are dropped, and timm then loads the rest strictly.
    kwargs["num_classes"] = 0
    overlay = _weights_overlay(source, name, is_vit)
    try:
        # 'none' is a fixed random init, so the recorded source rebuilds the same backbone
        # (checkpoints never hold frozen weights).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            # The full name (tag included) also without hub weights: the tag selects the data
            # config (e.g. ``.dino`` normalises with ImageNet statistics, the default ViT not).
            model = timm.create_model(
                name, pretrained=source != "none", pretrained_cfg_overlay=overlay, **kwargs
            )
    except (OSError, RuntimeError) as e:
        if source == "none":
            raise
        if source == "hub":
            raise ConfigError(
                f"could not fetch pretrained weights for {name!r} from timm's hub ({e}). Without "
                "network access, set model.backbone.pretrained to a local "
                ".safetensors/.pth/.npz file, or to 'none' for random weights"
            ) from e
        detail = " ".join(str(e).split())  # torch's message spans lines
        raise CheckpointError(f"backbone weights {source} do not fit {name}: {detail}") from e
    return model, is_vit


def _weights_overlay(source: str, name: str, is_vit: bool) -> dict | None:
    """timm ``pretrained_cfg_overlay`` that points timm's own loading at our weight source."""
    if source in ("hub", "none"):
        return None
    if source.startswith("package:"):
        # CNNs are built features-only: weights without the head timm would warn about.
        state = load_package_weights(
            source.split(":", 1)[1], name.split(".")[0], features_only=not is_vit
        )
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise MissingFileError(
                f"backbone.pretrained={source!r}: no such file; use 'hub', 'none', "
                "'package:<name>' or the path to a .safetensors/.pth/.npz file"
            )
        if path.suffix == ".npz":
            if not is_vit:
                raise ConfigError(f"{source}: .npz weights are supported for ViTs only")
            # Big-vision .npz checkpoints: timm's ViT reads them itself (``load_pretrained``).
            return {"file": str(path), "custom_load": True, "num_classes": 0}
        state = load_state_dict_file(path)
        if not is_vit:
            state = feature_extractor_state(state, name.split(".")[0])
    pretrained_cfg = timm.models.get_pretrained_cfg(name)
    heads = pretrained_cfg.classifier if pretrained_cfg is not None else None
    for head in (heads,) if isinstance(heads, str) else heads or ():
        state = {k: v for k, v in state.items() if not k.startswith(f"{head}.")}
    # num_classes 0 on both sides: timm keeps its load strict (every tensor must be there).
    return {"state_dict": state, "num_classes": 0}


def _is_vit(arch: str, kwargs: dict) -> bool:
    """Whether timm builds ``arch`` as a ViT-style model with block intermediates (checked on
    the meta device, so it costs no memory)."""
    with torch.device("meta"):
        probe = timm.create_model(arch, pretrained=False, num_classes=0, **kwargs)
    return all(
        hasattr(probe, a)
        for a in ("forward_intermediates", "blocks", "patch_embed", "num_prefix_tokens")
    )
