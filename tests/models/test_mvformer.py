"""MV-Former end to end: parameter counts of the paper configs, shapes, masking, batching,
gradients, token identity, late fusion and config errors."""

from __future__ import annotations

import pytest
import torch

from mvf_lightning.models.backbone import BackboneConfig
from mvf_lightning.models.mvformer import (
    EmbedderConfig,
    LateFusionEmbedder,
    MultiEntityEmbedder,
    MVFormer,
)

B, T, K = 2, 4, 3


def _count(module: torch.nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _lin(i: int, o: int) -> int:
    return i * o + o


def _small(**overrides) -> EmbedderConfig:
    cfg = {
        "num_tokens": K,
        "pool_dim": 16,
        "capacity": 2,
        "hidden_dim": 16,
        "num_layers": 2,
        "num_heads": 2,
        "ff_dim": 32,
        "embedding_dim": 8,
        "projection_hidden_dim": 6,
        "num_frames": T,
    }
    cfg.update(overrides)
    return EmbedderConfig(**cfg)


@pytest.fixture
def tiny_model(tiny_vit_config):
    def build(backbone=None, **embedder) -> MVFormer:
        return MVFormer(backbone or tiny_vit_config(), _small(**embedder))

    return build


# --------------------------------------------------------------------------- paper configs


def _paper_model(blocks: list[int], embedder: EmbedderConfig) -> MVFormer:
    # The meta device builds the real ViT-B/8 architecture without allocating its weights.
    with torch.device("meta"):
        return MVFormer(
            BackboneConfig(name="vit_base_patch8_224.dino", pretrained="none", blocks=blocks),
            embedder,
        )


def test_penn_action_parameter_counts():
    model = _paper_model([3, 7, 11], EmbedderConfig())
    assert model.backbone.out_channels == 2304
    emb = model.embedder
    assert _count(emb.pool) == 1_771_776
    assert _count(emb.mlp.blocks) == 463_360
    assert _count(emb.mlp.out) == 131_328
    assert _count(emb.encoder) == 2_369_280
    assert _count(emb.embedding) == 32_896
    assert _count(emb) == 4_768_640
    assert _count(model.projection) == 33_280
    assert _count(model) == 4_801_920
    assert _count(model.backbone) == 0
    assert _count(model.backbone, trainable_only=False) > 80_000_000


def test_finegym_parameter_counts():
    cfg = EmbedderConfig(num_tokens=6, capacity=6, embedding_dim=256, reduction="avg")
    model = _paper_model([9, 10, 11], cfg)
    assert _count(model.embedder) == 7_569_024
    assert _count(model.projection) == 66_176
    assert _count(model) == 7_635_200


VIT_B8 = "vit_base_patch8_224.dino"
RN50 = "resnet50.tv_in1k"


@pytest.mark.parametrize(
    ("backbone", "blocks", "embedder", "trainable"),
    [
        (VIT_B8, [11], {"num_tokens": 1}, 3_620_480),                       # lstp1
        (VIT_B8, [11], {"num_tokens": 3}, 3_622_272),                       # lstp3
        (VIT_B8, [11], {"num_tokens": 5}, 3_624_064),                       # lstp5
        (VIT_B8, [3, 7, 11], {"num_tokens": 1}, 4_800_128),                 # multi_lstp1
        (VIT_B8, [3, 7, 11], {"num_tokens": 5}, 4_803_712),                 # multi_lstp5
        (VIT_B8, [11], {"fusion": "late", "late_pool": "cls"}, 3_225_216),  # late_cls
        (VIT_B8, [11], {"fusion": "late", "late_pool": "max"}, 3_225_216),  # late_max
        (VIT_B8, [11], {"fusion": "late", "late_pool": "avg"}, 3_225_216),  # late_avg
        (VIT_B8, [3, 7, 11], {"fusion": "fixed_width"}, 3_916_032),         # fwb3
        (VIT_B8, [3, 7, 11], {"fusion": "fixed_width", "num_tokens": 5}, 4_507_648),  # fwb5
        (RN50, [], {"num_tokens": 1}, 4_603_520),                           # rn50_lstp1
        (RN50, [], {"num_tokens": 3}, 4_605_312),                           # rn50_lstp3
        (RN50, [], {"num_tokens": 5}, 4_607_104),                           # rn50_lstp5
        (RN50, [], {"fusion": "late", "late_pool": "max"}, 3_880_576),      # rn50_max
    ],
)
def test_ablation_parameter_counts(backbone, blocks, embedder, trainable):
    """The reference's trainable counts for every row of the spec's ablation table."""
    with torch.device("meta"):
        model = MVFormer(
            BackboneConfig(name=backbone, pretrained="none", blocks=blocks or [11]),
            EmbedderConfig(**embedder),
        )
    assert _count(model) == trainable


def test_dynamic_tokens_read_the_final_cls():
    """Dynamic queries come from the 768-wide final CLS, also with three blocks of 2304."""
    with torch.device("meta"):
        model = _paper_model([3, 7, 11], EmbedderConfig(dynamic_tokens=2))
    assert model.backbone.final_cls
    assert model.embedder.pool.dynamic.in_features == 768
    assert model.embedder.pool.dynamic.out_features == 2 * 384


# --------------------------------------------------------------------------- forward


def test_forward_shapes_and_attention_from_the_same_pass(tiny_model):
    model = tiny_model().eval()
    calls = []
    model.backbone.model.patch_embed.register_forward_hook(lambda m, i, o: calls.append(1))
    frames = torch.randn(B, T, 3, 32, 32)
    with torch.no_grad():
        plain = model(frames)
        assert len(calls) == 1
        with_attn = model(frames, return_attention=True)
        assert len(calls) == 2  # one backbone pass per forward, attention included
    assert plain["embeddings"].shape == (B, T, 8)
    assert plain["attention"] is None
    attn = with_attn["attention"]
    assert attn.shape == (B, T, K, 4)  # S = 2 x 2 patches of the 32 px tiny ViT
    torch.testing.assert_close(attn.sum(-1), torch.ones(B, T, K))
    torch.testing.assert_close(with_attn["embeddings"], plain["embeddings"])
    # The attention is LSTP's attention over this frame's tokens.
    tokens, _ = model.backbone(frames[1, 2:3])
    _, direct = model.embedder.pool(tokens, return_attention=True)
    torch.testing.assert_close(attn[1, 2], direct[0])


def test_other_lengths_than_training_length_run(tiny_model):
    model = tiny_model().eval()
    with torch.no_grad():
        out = model(torch.randn(1, 7, 3, 32, 32))
    assert out["embeddings"].shape == (1, 7, 8)


def test_batch_equals_samples_run_one_by_one(tiny_model):
    model = tiny_model(reduction="avg").eval()
    frames = torch.randn(3, T, 3, 32, 32)
    valid = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    with torch.no_grad():
        batch = model(frames, valid)["embeddings"]
        for b in range(3):
            single = model(frames[b : b + 1], valid[b : b + 1])["embeddings"]
            torch.testing.assert_close(batch[b : b + 1], single, atol=1e-5, rtol=1e-4)


def test_padded_frames_do_not_affect_valid_frames(tiny_model):
    # "max" reduction looks at every token of a frame: if any of a padded frame's K tokens
    # were left unmasked, the valid frames would change.
    model = tiny_model(reduction="max").eval()
    frames = torch.randn(B, T, 3, 32, 32)
    valid = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
    changed = frames.clone()
    changed[~valid] = 10 * torch.randn(int((~valid).sum()), 3, 32, 32)
    with torch.no_grad():
        a = model(frames, valid)["embeddings"]
        b = model(changed, valid)["embeddings"]
        unmasked = model(changed)["embeddings"]
    torch.testing.assert_close(a[valid], b[valid])
    assert not torch.allclose(a[valid], unmasked[valid], atol=1e-4)


def test_mask_covers_all_tokens_of_a_padded_frame(tiny_model):
    """Only one of the padded frame's K tokens changes: still no effect on valid frames."""
    emb = tiny_model().eval().embedder
    tokens = torch.randn(1, T, 4, 64)
    cls = torch.randn(1, T, 64)
    valid = torch.tensor([[1, 1, 1, 0]], dtype=torch.bool)
    base = emb(tokens, cls, valid)["embeddings"]
    pooled = {}

    def change_token(module, inputs, output):
        out = output[0].clone()
        out[T - 1, K - 1] += 50.0  # pooled [B*T, K, P]: last frame, last entity token
        pooled["hit"] = True
        return out, output[1]

    handle = emb.pool.register_forward_hook(change_token)
    changed = emb(tokens, cls, valid)["embeddings"]
    handle.remove()
    assert pooled
    torch.testing.assert_close(base[0, :3], changed[0, :3])


@pytest.mark.parametrize(
    "overrides",
    [{}, {"reduction": "linear", "token_identity": "enc", "dynamic_tokens": 1}],
)
def test_every_trainable_parameter_gets_a_gradient(tiny_model, overrides):
    model = tiny_model(**overrides).train()
    frames = torch.randn(B, T, 3, 32, 32)
    valid = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.bool)
    z = model.project(model(frames, valid)["embeddings"])
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(B, T))
    (z * torch.randn_like(z)).sum().backward()
    for name, p in model.named_parameters():
        if name.startswith("backbone."):
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    if overrides:
        assert model.embedder.pool.dynamic.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------- token identity


def _capture_input(module: torch.nn.Module) -> dict:
    seen = {}

    def hook(module, inputs, output) -> None:  # returns None: the output stays as it is
        seen.setdefault("x", inputs[0].detach())

    module.register_forward_hook(hook)
    return seen


@pytest.mark.parametrize("where", ["pool", "enc", "none"])
def test_token_identity(tiny_model, where):
    model = tiny_model(token_identity=where).eval()
    emb = model.embedder
    mlp_in = _capture_input(emb.mlp)
    pos_in = _capture_input(emb.position)
    with torch.no_grad():
        model(torch.randn(B, T, 3, 32, 32))
    eye = torch.eye(K).expand(B, T, K, K)
    first_linear = emb.mlp.blocks[1]
    if where == "pool":
        assert first_linear.in_features == 16 + K and emb.mlp.out.out_features == 16
        torch.testing.assert_close(mlp_in["x"][..., -K:], eye)
    elif where == "enc":
        assert first_linear.in_features == 16 and emb.mlp.out.out_features == 16 - K
        assert pos_in["x"].shape == (B, T, K, 16 - K)  # positions at width hidden - K
        return
    else:
        assert first_linear.in_features == 16 and emb.mlp.out.out_features == 16
    assert pos_in["x"].shape == (B, T, K, 16)


@pytest.mark.parametrize("training", [False, True])
def test_token_identity_enc_appends_the_one_hot_after_positions_and_dropout(tiny_model, training):
    """The reference's ``enc``: positions of width hidden - K added to the MLP's output, then
    dropout, then the K one-hot channels, untouched by either, as the encoder's input."""
    from mvf_lightning.models.temporal_encoder import sinusoidal_positions

    model = tiny_model(token_identity="enc", dropout=0.5).train(training)
    emb = model.embedder
    mlp_out, enc_in = {}, _capture_input(emb.encoder)
    emb.mlp.register_forward_hook(lambda m, i, o: mlp_out.setdefault("x", o.detach()))
    with torch.no_grad():
        model(torch.randn(B, T, 3, 32, 32))
    x = enc_in["x"].view(B, T, K, 16)
    # exactly one-hot: no position added, never scaled by the dropout's 1 / (1 - p)
    assert torch.equal(x[..., -K:], torch.eye(K).expand(B, T, K, K))
    if not training:
        want = mlp_out["x"] + sinusoidal_positions(torch.arange(T).float(), 16 - K)[:, None]
        torch.testing.assert_close(x[..., :-K], want)
    else:  # dropout acts on the other channels only
        assert (x[..., :-K] == 0).float().mean() > 0.2


def test_token_identity_enc_needs_room_in_the_hidden_width():
    with pytest.raises(ValueError, match="hidden_dim larger than the token count"):
        _small(token_identity="enc", num_tokens=16).validate()


# --------------------------------------------------------------------------- late fusion


def test_late_fusion_cnn_max_pool():
    cfg = _small(fusion="late", late_pool="max", hidden_dim=16)
    model = MVFormer(BackboneConfig(name="resnet18", pretrained="none"), cfg).eval()
    assert isinstance(model.embedder, LateFusionEmbedder)
    mlp_in = _capture_input(model.embedder.mlp)
    frames = torch.randn(B, T, 3, 64, 64)
    with torch.no_grad():
        out = model(frames, return_attention=True)
        tokens, _ = model.backbone_features(frames)
    assert out["embeddings"].shape == (B, T, 8)
    assert out["attention"] is None
    torch.testing.assert_close(mlp_in["x"], tokens.amax(dim=2))  # global max pool per frame
    width = 16 * 2
    mlp = _lin(512, width) + 2 * width + _lin(width, width) + 2 * width + _lin(width, 16)
    layer = 2 * 2 * 16 + _lin(16, 48) + _lin(16, 16) + _lin(16, 32) + _lin(32, 16)
    assert _count(model.embedder) == mlp + 2 * layer + _lin(16, 8)
    assert _count(model.projection) == _lin(8, 6) + 2 * 6 + _lin(6, 8)


def test_late_fusion_average_pool_of_spatial_tokens(tiny_vit_config):
    model = MVFormer(tiny_vit_config(blocks=[2]), _small(fusion="late", late_pool="avg")).eval()
    assert not model.backbone.final_cls  # no CLS needed: the final norm is not kept
    mlp_in = _capture_input(model.embedder.mlp)
    frames = torch.randn(B, T, 3, 32, 32)
    with torch.no_grad():
        model(frames)
        tokens, _ = model.backbone_features(frames)
    torch.testing.assert_close(mlp_in["x"], tokens.mean(dim=2))


def test_fixed_width_baseline_tokens_come_from_the_final_cls(tiny_vit_config):
    model = MVFormer(tiny_vit_config(), _small(fusion="fixed_width")).eval()
    pool = model.embedder.pool
    assert model.backbone.final_cls and model.backbone.cls_channels == 32
    assert pool.linear.in_features == 32 and pool.linear.out_features == K * 16
    frames = torch.randn(B, T, 3, 32, 32)
    with torch.no_grad():
        out = model(frames, return_attention=True)
        _, cls = model.backbone_features(frames)
        pooled, attn = pool(None, cls.reshape(B * T, -1))
    assert out["embeddings"].shape == (B, T, 8) and out["attention"] is None and attn is None
    # Token k, channel p is output p * K + k of the Linear (the reference's [P, K] layout).
    flat = cls.reshape(B * T, -1) @ pool.linear.weight.T + pool.linear.bias
    torch.testing.assert_close(pooled[:, 1, 5], flat[:, 5 * K + 1])
    assert pooled.shape == (B * T, K, 16)
    # Then the same pipeline as MV-Former: one-hot identity, MLP, encoder, reduction.
    assert model.embedder.mlp.blocks[1].in_features == 16 + K


def test_fixed_width_baseline_needs_a_cls_token():
    with pytest.raises(ValueError, match="resnet18 has no CLS token"):
        MVFormer(BackboneConfig(name="resnet18", pretrained="none"), _small(fusion="fixed_width"))
    with pytest.raises(ValueError, match="fixed_width' needs a backbone with a CLS token"):
        MultiEntityEmbedder(512, _small(fusion="fixed_width"), cls_dim=None)


def test_late_fusion_vit_cls(tiny_vit_config):
    model = MVFormer(tiny_vit_config(), _small(fusion="late", late_pool="cls")).eval()
    mlp_in = _capture_input(model.embedder.mlp)
    frames = torch.randn(B, T, 3, 32, 32)
    valid = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    changed = frames.clone()
    changed[0, 2:] = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(frames, valid)["embeddings"]
        _, cls = model.backbone_features(frames)
        out_changed = model(changed, valid)["embeddings"]
    assert out.shape == (B, T, 8)
    torch.testing.assert_close(mlp_in["x"], cls)
    # The backbone's final CLS (width 32), not the CLS tokens of the two chosen blocks (64).
    assert model.embedder.mlp.blocks[1].in_features == 32
    assert model.backbone.final_cls
    torch.testing.assert_close(out[valid], out_changed[valid])


def test_late_fusion_cls_needs_a_vit():
    with pytest.raises(ValueError, match="resnet18 has no CLS token: late fusion on 'cls'"):
        MVFormer(BackboneConfig(name="resnet18", pretrained="none"), _small(fusion="late",
                                                                           late_pool="cls"))


def test_dynamic_tokens_need_a_vit():
    with pytest.raises(ValueError, match="CLS"):
        MultiEntityEmbedder(512, _small(dynamic_tokens=2), cls_dim=None)


def test_cnn_multi_entity_attention_covers_the_feature_map():
    model = MVFormer(BackboneConfig(name="resnet18", pretrained="none"), _small()).eval()
    with torch.no_grad():
        out = model(torch.randn(1, T, 3, 64, 96), return_attention=True)
    assert out["attention"].shape == (1, T, K, 2 * 3)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("fusion", "early", "('multi_entity', 'late', 'fixed_width')"),
        ("token_identity", "both", "('pool', 'enc', 'none')"),
        ("reduction", "mean", "('one', 'avg', 'max', 'linear')"),
        ("late_pool", "mean", "('max', 'avg', 'cls')"),
    ],
)
def test_invalid_names_give_the_key_and_allowed_values(tiny_vit_config, key, value, allowed):
    with pytest.raises(ValueError) as info:
        MVFormer(tiny_vit_config(), _small(**{key: value}))
    message = str(info.value)
    assert f"model.embedder.{key}={value!r}" in message
    assert allowed in message


@pytest.mark.parametrize("key", ["num_tokens", "hidden_dim", "num_frames", "embedding_dim"])
def test_non_positive_sizes(key):
    with pytest.raises(ValueError, match=f"model.embedder.{key} must be >= 1, got 0"):
        _small(**{key: 0}).validate()


def test_frames_must_be_five_dimensional(tiny_model):
    model = tiny_model()
    with pytest.raises(ValueError, match=r"\[B, T, 3, H, W\].*\(4, 3, 32, 32\)"):
        model(torch.randn(4, 3, 32, 32))


def test_normalize_gives_unit_vectors():
    x = torch.randn(2, 3, 5)
    out = MVFormer.normalize(x)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2, 3))
    torch.testing.assert_close(out * x.norm(dim=-1, keepdim=True), x)
