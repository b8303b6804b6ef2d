"""A tiny random-weight checkpoint whose embeddings follow the frames' content (the real clip
and its time-warped copy are fixtures of tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """Random weights, tiny ViT at 32 px. ``num_frames=1`` puts every frame at position 0, so
    the embeddings depend on the frames' content only (random temporal weights would
    otherwise let the position dominate)."""
    from mvf_lightning.models.backbone import BackboneConfig
    from mvf_lightning.models.mvformer import EmbedderConfig
    from mvf_lightning.training.module import MVFormerModule

    torch.manual_seed(0)
    module = MVFormerModule(
        backbone=BackboneConfig(
            name="vit_small_patch16_224", pretrained="none", blocks=[0, 1], img_size=32,
            model_kwargs={"depth": 2, "embed_dim": 32, "num_heads": 2},
        ),
        embedder=EmbedderConfig(
            num_tokens=2, pool_dim=16, capacity=1, hidden_dim=32, num_layers=1, num_heads=4,
            ff_dim=64, embedding_dim=16, projection_hidden_dim=16, num_frames=1,
        ),
    )
    ckpt = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "datamodule_hyper_parameters": {"crop_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3},
    }
    module.on_save_checkpoint(ckpt)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    torch.save(ckpt, path)
    return path
