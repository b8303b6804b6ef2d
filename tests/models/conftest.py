"""Fixtures for the model tests: tiny backbones that build in a fraction of a second."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from mvf_lightning.models.backbone import BackboneConfig

TINY_VIT_KWARGS = {"depth": 3, "embed_dim": 32, "num_heads": 2}


def _tiny_vit(**overrides) -> BackboneConfig:
    cfg = {
        "name": "vit_small_patch16_224",
        "pretrained": "none",
        "img_size": 32,
        "blocks": [0, 2],
        "model_kwargs": dict(TINY_VIT_KWARGS),
    }
    cfg.update(overrides)
    return BackboneConfig(**cfg)


@pytest.fixture
def tiny_vit_config() -> Callable[..., BackboneConfig]:
    """Factory: a 3-block ViT of width 32 on 32 px (2x2 = 4 patches + CLS), blocks 0 and 2."""
    return _tiny_vit


@pytest.fixture
def tiny_vit_kwargs() -> dict:
    """The timm keyword arguments of ``tiny_vit_config`` (to build the same model directly)."""
    return {**TINY_VIT_KWARGS, "img_size": 32}


@pytest.fixture(autouse=True)
def _seeded_single_thread():
    """Seeded, and one intra-op thread: these tiny models run faster without thread hand-offs
    on the shared CPU cores. The thread count is restored afterwards."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _vit_block_outputs(model: torch.nn.Module, frames: torch.Tensor) -> list[torch.Tensor]:
    """Every block's output ``[N, 1 + S, D]`` of a timm ViT, computed step by step (no final
    norm), independently of ``forward_intermediates``."""
    x = model.patch_embed(frames)
    x = model._pos_embed(x)
    x = model.norm_pre(x)
    outs = []
    for block in model.blocks:
        x = block(x)
        outs.append(x)
    return outs


@pytest.fixture
def vit_block_outputs() -> Callable[[torch.nn.Module, torch.Tensor], list[torch.Tensor]]:
    return _vit_block_outputs
