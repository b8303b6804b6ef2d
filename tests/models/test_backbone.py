"""ImageBackbone: token layouts, block concatenation, chunking, freezing and config errors."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from mvf_lightning.models.backbone import BackboneConfig, ImageBackbone

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _copy_from(reference: nn.Module, backbone: ImageBackbone) -> None:
    """Give the backbone the reference model's weights (the backbone lacks head/final norm)."""
    result = backbone.model.load_state_dict(reference.state_dict(), strict=False)
    assert result.missing_keys == []


# --------------------------------------------------------------------------- ViT


def test_vit_token_layout(tiny_vit_config):
    backbone = ImageBackbone(tiny_vit_config(blocks=[0, 2]))
    assert backbone.is_vit
    assert backbone.blocks == [0, 2]
    assert backbone.out_channels == 2 * 32
    assert backbone.num_prefix_tokens == 1
    assert backbone.feature_grid(32, 32) == (2, 2)
    tokens, cls = backbone(torch.randn(5, 3, 32, 32))
    # 32 px / patch 16 = 2 x 2 spatial tokens; CLS is not among them.
    assert tokens.shape == (5, 4, 64)
    assert cls is None and backbone.cls_channels is None
    with_cls = ImageBackbone(tiny_vit_config(blocks=[0, 2]), final_cls=True)
    tokens, cls = with_cls(torch.randn(5, 3, 32, 32))
    assert tokens.shape == (5, 4, 64)
    # The final CLS has the model's width, not that of the concatenated blocks.
    assert with_cls.cls_channels == 32 and cls.shape == (5, 32)


def test_vit_blocks_are_concatenated_block_outputs(
    tiny_vit_config, tiny_vit_kwargs, vit_block_outputs
):
    reference = timm.create_model("vit_small_patch16_224", num_classes=0, **tiny_vit_kwargs).eval()
    # Blocks are given unsorted and with a negative index: -1 is the last block (2).
    backbone = ImageBackbone(tiny_vit_config(blocks=[-1, 0]))
    assert backbone.blocks == [0, 2]
    _copy_from(reference, backbone)
    frames = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        outs = vit_block_outputs(reference, frames)
        # The step-by-step helper agrees with timm's own forward (which ends in the final norm).
        torch.testing.assert_close(reference.norm(outs[-1]), reference.forward_features(frames))
        tokens, cls = backbone(frames)
    torch.testing.assert_close(tokens, torch.cat([outs[0][:, 1:], outs[2][:, 1:]], dim=-1))
    assert cls is None


def test_final_cls_is_the_cls_token_after_the_final_norm(tiny_vit_config, tiny_vit_kwargs):
    """mvformer.md: the CLS vector is the backbone's final output (after its final norm), even
    when the chosen blocks stop earlier; all blocks and the norm are then kept."""
    reference = timm.create_model("vit_small_patch16_224", num_classes=0, **tiny_vit_kwargs).eval()
    backbone = ImageBackbone(tiny_vit_config(blocks=[0]), final_cls=True)
    _copy_from(reference, backbone)
    assert len(backbone.model.blocks) == 3
    frames = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        tokens, cls = backbone(frames)
        want = reference.forward_features(frames)[:, 0]
        first_block = backbone.model.blocks[0](
            backbone.model.norm_pre(backbone.model._pos_embed(backbone.model.patch_embed(frames)))
        )
    torch.testing.assert_close(cls, want)
    torch.testing.assert_close(tokens, first_block[:, 1:])
    # Without the final CLS, the blocks after the last chosen one and the norm are dropped.
    pruned = ImageBackbone(tiny_vit_config(blocks=[0]))
    assert len(pruned.model.blocks) == 1
    norm = sum(p.numel() for p in reference.norm.parameters())
    block = sum(p.numel() for p in reference.blocks[1].parameters())
    full = sum(p.numel() for p in backbone.parameters())
    assert full == sum(p.numel() for p in pruned.parameters()) + 2 * block + norm


def test_final_cls_needs_a_vit_with_a_cls_token():
    with pytest.raises(ValueError, match="resnet18 has no CLS token"):
        ImageBackbone(BackboneConfig(name="resnet18", pretrained="none"), final_cls=True)


def test_vit_with_register_tokens_excludes_all_prefix_tokens():
    cfg = BackboneConfig(
        name="vit_small_patch16_224",
        pretrained="none",
        img_size=32,
        blocks=[1],
        model_kwargs={"depth": 2, "embed_dim": 32, "num_heads": 2, "reg_tokens": 4},
    )
    backbone = ImageBackbone(cfg, final_cls=True)
    assert backbone.num_prefix_tokens == 5
    tokens, cls = backbone(torch.randn(2, 3, 32, 32))
    assert tokens.shape == (2, 4, 32)
    assert cls.shape == (2, 32)


def test_data_config_follows_the_pretrained_tag(tiny_vit_config):
    """``vit_*.dino`` expects ImageNet statistics even when its weights come from a file or
    are random; the un-tagged default ViT uses 0.5 / 0.5."""
    dino = ImageBackbone(tiny_vit_config(name="vit_small_patch16_224.dino"))
    assert dino.mean == pytest.approx(IMAGENET_MEAN)
    assert dino.std == pytest.approx(IMAGENET_STD)
    plain = ImageBackbone(tiny_vit_config())
    assert plain.mean == pytest.approx((0.5, 0.5, 0.5))
    # Plain tuples of three floats: the DataModule's default normalisation reads them.
    for stats in (dino.mean, dino.std, plain.mean, plain.std):
        assert isinstance(stats, tuple) and len(stats) == 3
        assert all(type(v) is float for v in stats)
    with torch.device("meta"):
        resnet = ImageBackbone(BackboneConfig(name="resnet50.tv_in1k", pretrained="none"))
    assert resnet.mean == pytest.approx(IMAGENET_MEAN) and resnet.std == pytest.approx(IMAGENET_STD)


# --------------------------------------------------------------------------- CNN


def test_cnn_last_feature_map_is_the_token_grid():
    reference = timm.create_model("resnet18", pretrained=False).eval()
    backbone = ImageBackbone(BackboneConfig(name="resnet18", pretrained="none"))
    _copy_from(reference, backbone)
    assert not backbone.is_vit
    assert backbone.out_channels == 512
    assert backbone.num_prefix_tokens == 0
    frames = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        tokens, cls = backbone(frames)
        fmap = reference.forward_features(frames)  # [2, 512, 2, 3]
    assert cls is None
    assert tokens.shape == (2, 6, 512)
    # Row-major over the grid: token r * cols + c is feature map position (r, c).
    torch.testing.assert_close(tokens, fmap.flatten(2).transpose(1, 2))


@pytest.mark.parametrize("size", [(64, 64), (70, 100), (33, 31)])
def test_cnn_feature_grid_matches_the_token_count(size):
    backbone = ImageBackbone(BackboneConfig(name="resnet18", pretrained="none"))
    rows, cols = backbone.feature_grid(*size)
    with torch.no_grad():
        tokens, _ = backbone(torch.randn(1, 3, *size))
    assert tokens.shape[1] == rows * cols


# --------------------------------------------------------------------------- chunking


def test_chunked_equals_unchunked(tiny_vit_config):
    backbone = ImageBackbone(tiny_vit_config(chunk_size=2))
    calls = []
    backbone.model.patch_embed.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    frames = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        tokens, cls = backbone(frames)
    assert calls == [2, 2, 1]
    calls.clear()
    backbone.config.chunk_size = 40
    with torch.no_grad():
        whole_tokens, whole_cls = backbone(frames)
    assert calls == [5]
    torch.testing.assert_close(tokens, whole_tokens)
    torch.testing.assert_close(cls, whole_cls)


# --------------------------------------------------------------------------- freezing


def test_stays_in_eval_mode_inside_a_training_parent(tiny_vit_config):
    cfg = tiny_vit_config(model_kwargs={"depth": 3, "embed_dim": 32, "num_heads": 2,
                                        "drop_rate": 0.5, "proj_drop_rate": 0.5})
    parent = nn.Sequential(ImageBackbone(cfg))
    parent.train()
    backbone = parent[0]
    assert not any(m.training for m in backbone.model.modules())
    frames = torch.randn(2, 3, 32, 32)
    # With dropout 0.5 in the blocks, two passes would differ if anything were in train mode.
    torch.testing.assert_close(backbone(frames)[0], backbone(frames)[0])


def test_frozen_backbone_has_no_trainable_weights_and_builds_no_graph(tiny_vit_config):
    backbone = ImageBackbone(tiny_vit_config(), final_cls=True)
    assert backbone.fully_frozen
    assert not any(p.requires_grad for p in backbone.parameters())
    frames = torch.randn(2, 3, 32, 32, requires_grad=True)
    tokens, cls = backbone(frames)
    assert not tokens.requires_grad and not cls.requires_grad
    keys = backbone.frozen_state_keys(prefix="model.backbone.")
    assert sorted(keys) == sorted(f"model.backbone.model.{k}" for k in backbone.model.state_dict())


def test_unfreeze_last_vit_blocks(tiny_vit_config):
    backbone = ImageBackbone(tiny_vit_config(unfreeze_last=1))
    trainable = {n for n, p in backbone.model.named_parameters() if p.requires_grad}
    last = {f"blocks.2.{n}" for n, _ in backbone.model.blocks[2].named_parameters()}
    assert trainable == last
    tokens, _ = backbone(torch.randn(2, 3, 32, 32))
    tokens.square().sum().backward()
    for name, p in backbone.model.named_parameters():
        if name in last:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name
    frozen = set(backbone.frozen_state_keys())
    assert not any(k.startswith("model.blocks.2.") for k in frozen)
    assert "model.blocks.1.attn.qkv.weight" in frozen
    assert "model.patch_embed.proj.weight" in frozen
    # Unfrozen blocks follow the parent's mode; the rest stays in eval mode.
    backbone.train()
    assert backbone.model.blocks[2].training
    assert not backbone.model.blocks[1].training
    backbone.eval()
    assert not backbone.model.blocks[2].training


def test_unfreeze_last_vit_blocks_train_the_final_norm_that_makes_the_cls(tiny_vit_config):
    """The reference fine-tunes the last blocks together with the final norm (its ViT "back
    end"); the norm shapes the final CLS vector, trains from it and is checkpointed."""
    backbone = ImageBackbone(tiny_vit_config(unfreeze_last=1), final_cls=True)
    trainable = {n for n, p in backbone.model.named_parameters() if p.requires_grad}
    last = {f"blocks.2.{n}" for n, _ in backbone.model.blocks[2].named_parameters()}
    assert trainable == last | {"norm.weight", "norm.bias"}
    _, cls = backbone(torch.randn(2, 3, 32, 32))
    cls.square().sum().backward()
    assert backbone.model.norm.weight.grad.abs().sum() > 0
    frozen = set(backbone.frozen_state_keys())
    assert "model.norm.weight" not in frozen and "model.norm.bias" not in frozen
    # Fully frozen, the norm stays frozen.
    frozen_all = ImageBackbone(tiny_vit_config(), final_cls=True)
    assert not any(p.requires_grad for p in frozen_all.parameters())


def test_unfreeze_last_cnn_stage_is_the_last_resnet_layer():
    backbone = ImageBackbone(BackboneConfig(name="resnet18", pretrained="none", unfreeze_last=1))
    trainable = {n.split(".")[0] for n, p in backbone.model.named_parameters() if p.requires_grad}
    assert trainable == {"layer4"}


def test_unfreeze_last_cnn_stage_is_the_last_efficientnet_stage():
    """EfficientNet keeps its stages inside one ``blocks`` container: "last stage" means the
    last of them, not the whole container."""
    backbone = ImageBackbone(
        BackboneConfig(name="tf_efficientnet_lite0", pretrained="none", unfreeze_last=1)
    )
    trainable = {n for n, p in backbone.model.named_parameters() if p.requires_grad}
    assert trainable
    assert all(n.startswith("blocks.6.") for n in trainable)


@pytest.mark.parametrize("value", [-1, 4])
def test_unfreeze_last_out_of_range(tiny_vit_config, value):
    with pytest.raises(ValueError, match=rf"unfreeze_last={value}.*3 blocks"):
        ImageBackbone(tiny_vit_config(unfreeze_last=value))


# --------------------------------------------------------------------------- errors


def test_unknown_backbone_name_suggests_close_names():
    with pytest.raises(ValueError, match="vit_smal_patch16_224") as info:
        ImageBackbone(BackboneConfig(name="vit_smal_patch16_224.dino", pretrained="none"))
    assert "vit_small_patch16_224" in str(info.value).split("closest")[1]


@pytest.mark.parametrize("blocks", [[3], [0, -4]])
def test_block_index_out_of_range(tiny_vit_config, blocks):
    bad = blocks[-1]
    with pytest.raises(ValueError, match=rf"block index {bad} is out of range.*0\.\.2"):
        ImageBackbone(tiny_vit_config(blocks=blocks))


def test_empty_and_repeated_blocks(tiny_vit_config):
    with pytest.raises(ValueError, match="blocks is empty"):
        ImageBackbone(tiny_vit_config(blocks=[]))
    with pytest.raises(ValueError, match="repeated block"):
        ImageBackbone(tiny_vit_config(blocks=[2, -1]))


def test_chunk_size_must_be_positive(tiny_vit_config):
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        ImageBackbone(tiny_vit_config(chunk_size=0))


def test_missing_weight_file(tiny_vit_config, tmp_path):
    path = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        ImageBackbone(tiny_vit_config(pretrained=str(path)))


def test_unsupported_weight_suffix(tmp_path):
    path = tmp_path / "weights.ckpt"
    torch.save({}, path)
    with pytest.raises(ValueError, match=r"weights\.ckpt.*\.safetensors"):
        ImageBackbone(BackboneConfig(name="resnet18", pretrained=str(path)))


def test_npz_weights_are_for_vits_only(tmp_path):
    path = tmp_path / "weights.npz"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="ViTs only"):
        ImageBackbone(BackboneConfig(name="resnet18", pretrained=str(path)))


def test_frames_layout_is_checked(tiny_vit_config):
    backbone = ImageBackbone(tiny_vit_config())
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\].*\(2, 1, 32, 32\)"):
        backbone(torch.randn(2, 1, 32, 32))


def test_random_init_is_reproducible_and_leaves_the_global_rng_alone(tiny_vit_config):
    """``pretrained='none'`` rebuilds the same weights (checkpoints omit frozen tensors)."""
    state = torch.random.get_rng_state()
    a = ImageBackbone(tiny_vit_config())
    torch.testing.assert_close(torch.random.get_rng_state(), state)
    torch.manual_seed(123)
    b = ImageBackbone(tiny_vit_config())
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def test_unknown_pretrained_tag_is_an_error(tiny_vit_config):
    """A misspelt tag must not silently build the default variant (other data config)."""
    with pytest.raises(RuntimeError, match="bogus"):
        ImageBackbone(tiny_vit_config(name="vit_small_patch16_224.bogus"))


@pytest.mark.parametrize(("unfreeze_last", "stages"), [(0, set()), (1, {"layer4"}),
                                                       (2, {"layer3", "layer4"})])
def test_resnet50_fine_tunes_its_last_stages(unfreeze_last, stages):
    """The reference's ``LAYER: 3`` trains layer4 (``unfreeze_last: 1``), ``LAYER: 2`` layer3
    and layer4 (``unfreeze_last: 2``); those stages then train and are checkpointed."""
    with torch.device("meta"):
        backbone = ImageBackbone(BackboneConfig(name="resnet50.tv_in1k", pretrained="none",
                                                 unfreeze_last=unfreeze_last))
    trainable = {n.split(".")[0] for n, p in backbone.model.named_parameters() if p.requires_grad}
    assert trainable == stages
    saved = set(backbone.model.state_dict()) - {
        k.removeprefix("model.") for k in backbone.frozen_state_keys()
    }
    assert {k.split(".")[0] for k in saved} == stages
    if stages:
        assert "layer4.2.bn3.running_mean" in saved  # buffers of trained stages are kept too
