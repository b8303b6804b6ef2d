"""The backbone's and embedder's speed switches: each keeps what the model computes (within
its precision) and changes only how; autocast is the one that changes the cached features."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mvf_lightning.models.backbone import BackboneConfig, ImageBackbone
from mvf_lightning.models.cached_backbone import CachedBackbone
from mvf_lightning.models.mvformer import EmbedderConfig, MVFormer

TINY_EMBEDDER = dict(num_tokens=2, pool_dim=16, capacity=1, hidden_dim=32, num_layers=1,
                     num_heads=4, ff_dim=64, embedding_dim=16, projection_hidden_dim=16,
                     num_frames=4)


def _features(config: BackboneConfig, frames: torch.Tensor):
    with torch.no_grad():
        return ImageBackbone(config)(frames)


def test_bf16_autocast_returns_float32_features_close_to_full_precision(tiny_vit_config):
    frames = torch.randn(5, 3, 32, 32)
    full, _ = _features(tiny_vit_config(), frames)
    half, _ = _features(tiny_vit_config(autocast="bf16"), frames)
    assert half.dtype == torch.float32
    error = ((half - full).norm() / full.norm()).item()
    assert 0 < error < 2e-2  # computed in bfloat16 (not bit-equal), to bfloat16's precision


def test_no_backbone_autocast_keeps_the_callers_precision(tiny_vit_config):
    """``autocast: null`` must not switch off an autocast the trainer opened (bf16-mixed)."""
    backbone = ImageBackbone(tiny_vit_config())
    frames = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        full, _ = backbone(frames)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed, _ = backbone(frames)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=False):
            off, _ = backbone(frames)
    assert torch.equal(off, full)
    error = ((mixed.float() - full).norm() / full.norm()).item()
    assert 0 < error < 2e-2


def test_unknown_autocast_is_refused(tiny_vit_config):
    with pytest.raises(ValueError, match=r"backbone.autocast='bf32': use bf16, fp16 or null"):
        ImageBackbone(tiny_vit_config(autocast="bf32"))


@pytest.mark.parametrize("fused", [False, True])
def test_fused_attention_switch_reaches_every_block_and_keeps_the_features(
    tiny_vit_config, fused
):
    frames = torch.randn(3, 3, 32, 32)
    backbone = ImageBackbone(tiny_vit_config(fused_attn=fused))
    flags = [m.fused_attn for m in backbone.modules() if hasattr(m, "fused_attn")]
    assert len(flags) == 3 and all(f is fused for f in flags)
    with torch.no_grad():
        tokens, _ = backbone(frames)
    torch.testing.assert_close(tokens, _features(tiny_vit_config(), frames)[0],
                               rtol=1e-5, atol=1e-5)


def test_channels_last_cnn_gives_the_same_tokens():
    frames = torch.randn(2, 3, 64, 64)
    config = BackboneConfig(name="resnet18", pretrained="none")
    backbone = ImageBackbone(dataclasses.replace(config, channels_last=True))
    conv = backbone.model.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    with torch.no_grad():
        tokens, _ = backbone(frames)
    torch.testing.assert_close(tokens, _features(config, frames)[0], rtol=1e-4, atol=1e-4)


def test_only_autocast_changes_the_feature_cache_identity(tiny_vit_config):
    def identity(**switches):
        return CachedBackbone(ImageBackbone(tiny_vit_config(**switches))).identity()

    base = identity()
    for switches in ({"chunk_size": 7}, {"fused_attn": False}, {"channels_last": True},
                     {"compile": True}):
        assert identity(**switches) == base, switches
    assert identity(autocast="bf16") != base


@pytest.mark.integration
def test_compiled_backbone_and_embedder_equal_eager_with_the_same_parameter_names(
    tiny_vit_config,
):
    torch.manual_seed(0)
    eager = MVFormer(tiny_vit_config(), EmbedderConfig(**TINY_EMBEDDER)).eval()
    torch.manual_seed(0)
    compiled = MVFormer(tiny_vit_config(compile=True),
                        EmbedderConfig(**TINY_EMBEDDER, compile=True)).eval()
    assert list(compiled.state_dict()) == list(eager.state_dict())
    compiled.load_state_dict(eager.state_dict())
    with torch.no_grad():
        for length in (4, 7):  # another evaluation length: dynamic shapes, no failure
            frames = torch.randn(1, length, 3, 32, 32)
            torch.testing.assert_close(compiled(frames)["embeddings"],
                                       eager(frames)["embeddings"], rtol=1e-4, atol=1e-4)
