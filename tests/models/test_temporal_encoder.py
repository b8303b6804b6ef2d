"""Temporal positions and the pre-norm transformer, against formulas and torch's reference."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mvf_lightning.models.temporal_encoder import (
    TemporalEncoderLayer,
    TemporalPositionEncoding,
    TemporalTransformer,
    position_mode,
    sinusoidal_positions,
)


@pytest.mark.parametrize("dim", [8, 7])
def test_sinusoidal_values_follow_the_formula(dim):
    positions = torch.tensor([0.0, 1.0, 5.0, 2.5])
    pe = sinusoidal_positions(positions, dim)
    assert pe.shape == (4, dim)
    for row, pos in enumerate(positions.tolist()):
        for c in range(dim):
            # The reference's formula: the exponent is c / d for odd channels too (not c - 1).
            angle = pos / 10000 ** (c / dim)
            want = math.sin(angle) if c % 2 == 0 else math.cos(angle)
            assert pe[row, c].item() == pytest.approx(want, abs=1e-6), (pos, c)


def test_sinusoidal_hand_computed_entries():
    """d = 4: channel c of position p uses p / 10000^(c/4) = p / 10^c."""
    pe = sinusoidal_positions(torch.tensor([1.0, 5.0]), 4)
    want = torch.tensor([
        [math.sin(1.0), math.cos(0.1), math.sin(0.01), math.cos(0.001)],
        [math.sin(5.0), math.cos(0.5), math.sin(0.05), math.cos(0.005)],
    ])
    torch.testing.assert_close(pe, want)
    # The textbook formula would give cos(1.0) in channel 1 of position 1 instead of cos(0.1).
    assert abs(pe[0, 1].item() - math.cos(1.0)) > 0.4


def test_position_encoding_adds_the_same_vector_to_every_token_of_a_frame():
    enc = TemporalPositionEncoding(dim=6, train_length=5, dropout=0.0)
    x = torch.randn(2, 5, 3, 6)
    out = enc(x)
    added = out - x
    want = sinusoidal_positions(torch.arange(5.0), 6)
    for b in range(2):
        for k in range(3):
            torch.testing.assert_close(added[b, :, k], want)


@pytest.mark.parametrize("length", [9, 3, 1])
def test_other_lengths_are_spread_over_the_training_range(length):
    enc = TemporalPositionEncoding(dim=6, train_length=5, dropout=0.0)
    positions = enc.positions(length, torch.device("cpu"))
    torch.testing.assert_close(positions, torch.linspace(0, 4, length))
    x = torch.zeros(1, length, 2, 6)
    want = sinusoidal_positions(torch.linspace(0, 4, length), 6)
    torch.testing.assert_close(enc(x)[0, :, 1], want)


def test_training_length_uses_integer_positions():
    enc = TemporalPositionEncoding(dim=4, train_length=80)
    assert enc.positions(80, torch.device("cpu")).tolist() == list(range(80))


def test_fixed_mode_puts_every_frame_at_the_middle_position_until_the_block_ends():
    model = nn.Sequential(TemporalPositionEncoding(dim=6, train_length=5, dropout=0.0))
    enc = model[0]
    with position_mode(model, "fixed"):
        assert enc.positions(7, torch.device("cpu")).tolist() == [2.0] * 7
        out = enc(torch.zeros(1, 7, 2, 6))
    torch.testing.assert_close(out[0, :, 0], sinusoidal_positions(torch.full((7,), 2.0), 6)
                               .expand(7, 6))
    torch.testing.assert_close(enc.positions(7, torch.device("cpu")), torch.linspace(0, 4, 7))
    with (pytest.raises(ValueError, match=r"positions must be one of spread\|fixed, got .x."),
          position_mode(model, "x")):
        pass


def test_fixed_positions_make_the_embedder_follow_content_not_order(tiny_vit_config):
    """With every frame at one position the temporal encoder is permutation-equivariant:
    shuffling a video's frames shuffles its embeddings and nothing else."""
    from mvf_lightning.models.mvformer import EmbedderConfig, MVFormer

    torch.manual_seed(0)
    model = MVFormer(tiny_vit_config(), EmbedderConfig(
        num_tokens=2, pool_dim=16, capacity=1, hidden_dim=32, num_layers=1, num_heads=4,
        ff_dim=64, embedding_dim=16, projection_hidden_dim=16, num_frames=8)).eval()
    frames = torch.randn(1, 6, 3, 32, 32)
    order = torch.tensor([3, 0, 5, 1, 4, 2])
    with torch.no_grad(), position_mode(model, "fixed"):
        a = model(frames)["embeddings"][0]
        b = model(frames[:, order])["embeddings"][0]
    torch.testing.assert_close(b, a[order], rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # spread (evaluation's) positions: order changes the embeddings
        a, b = model(frames)["embeddings"][0], model(frames[:, order])["embeddings"][0]
    assert (b - a[order]).abs().max() > 1e-2


def test_position_encoding_rejects_empty_training_length():
    with pytest.raises(ValueError, match="train_length.*got 0"):
        TemporalPositionEncoding(dim=4, train_length=0)


def _torch_reference(layer: TemporalEncoderLayer, dim: int, heads: int, ff: int):
    ref = nn.TransformerEncoderLayer(
        dim, heads, ff, dropout=0.0, activation="relu", batch_first=True, norm_first=True
    )
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(layer.qkv.weight)
        ref.self_attn.in_proj_bias.copy_(layer.qkv.bias)
        ref.self_attn.out_proj.weight.copy_(layer.proj.weight)
        ref.self_attn.out_proj.bias.copy_(layer.proj.bias)
        ref.linear1.load_state_dict(layer.ff[0].state_dict())
        ref.linear2.load_state_dict(layer.ff[2].state_dict())
        ref.norm1.load_state_dict(layer.norm1.state_dict())
        ref.norm2.load_state_dict(layer.norm2.state_dict())
    return ref.eval()


def test_layer_equals_torch_transformer_encoder_layer():
    dim, heads, ff = 16, 4, 32
    layer = TemporalEncoderLayer(dim, heads, ff, dropout=0.1).eval()
    ref = _torch_reference(layer, dim, heads, ff)
    x = torch.randn(3, 10, dim)
    valid = torch.ones(3, 10, dtype=torch.bool)
    valid[1, 6:] = False
    valid[2, :2] = False
    with torch.no_grad():
        torch.testing.assert_close(layer(x), ref(x))
        ours = layer(x, valid[:, None, None, :])
        theirs = ref(x, src_key_padding_mask=~valid)
    torch.testing.assert_close(ours[valid], theirs[valid])


def test_parameter_count_equals_torch_layer():
    layer = TemporalEncoderLayer(256, 8, 1024)
    ref = nn.TransformerEncoderLayer(256, 8, 1024, batch_first=True, norm_first=True)
    ours = sum(p.numel() for p in layer.parameters())
    assert ours == sum(p.numel() for p in ref.parameters()) == 789_760


def test_heads_must_divide_width():
    with pytest.raises(ValueError, match="256 is not divisible by num_heads=3"):
        TemporalEncoderLayer(256, 3, 1024)


def test_dropout_is_active_in_training_only():
    layer = TemporalEncoderLayer(16, 2, 32, dropout=0.5)
    x = torch.randn(2, 5, 16)
    layer.train()
    assert not torch.allclose(layer(x), layer(x))
    layer.eval()
    torch.testing.assert_close(layer(x), layer(x))


def test_padded_keys_do_not_influence_valid_positions():
    enc = TemporalTransformer(dim=16, num_layers=2, num_heads=2, ff_dim=32).eval()
    x = torch.randn(2, 8, 16)
    valid = torch.ones(2, 8, dtype=torch.bool)
    valid[0, 5:] = False
    changed = x.clone()
    changed[0, 5:] = 100 * torch.randn(3, 16)
    with torch.no_grad():
        a, b = enc(x, valid), enc(changed, valid)
        unmasked = enc(changed)
    torch.testing.assert_close(a[valid], b[valid])
    # Without the mask the padding would leak into the valid positions.
    assert not torch.allclose(a[0, :5], unmasked[0, :5])


def test_dropout_only_on_the_two_residual_branches():
    """No dropout on the attention weights and none inside the feed-forward: with the two
    residual dropouts at 0, a layer in training mode is deterministic despite dropout 0.5."""
    layer = TemporalEncoderLayer(16, 2, 32, dropout=0.5).train()
    assert layer.drop1.p == 0.5 and layer.drop2.p == 0.5
    assert not any(isinstance(m, nn.Dropout) for m in layer.ff)
    dropouts = [name for name, m in layer.named_modules() if isinstance(m, nn.Dropout)]
    assert dropouts == ["drop1", "drop2"]
    layer.drop1.p = layer.drop2.p = 0.0
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(layer(x), layer(x))


def test_weight_matrices_are_xavier_uniform():
    """Every weight matrix Xavier-uniform, with query, key and value as three 256 x 256
    matrices (bound sqrt(6 / 512) = 0.108, not the fused 768 x 256 bound 0.077)."""
    layer = TemporalEncoderLayer(256, 8, 1024)
    matrices = {
        "q": layer.qkv.weight[:256], "k": layer.qkv.weight[256:512],
        "v": layer.qkv.weight[512:], "proj": layer.proj.weight,
        "ff1": layer.ff[0].weight, "ff2": layer.ff[2].weight,
    }
    for name, w in matrices.items():
        fan_out, fan_in = w.shape
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert w.abs().max().item() <= bound, name
        assert w.abs().max().item() > 0.99 * bound, name  # uniform over the whole range
        # Uniform(-a, a) has standard deviation a / sqrt(3).
        assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02), name
    # Biases and norms keep PyTorch's defaults.
    torch.testing.assert_close(layer.norm1.weight, torch.ones(256))
    assert layer.proj.bias.abs().max().item() <= 1 / math.sqrt(256)


def test_layers_start_as_identical_copies():
    enc = TemporalTransformer(dim=16, num_layers=3, num_heads=2, ff_dim=32)
    first = enc.layers[0].state_dict()
    for layer in enc.layers[1:]:
        for key, value in layer.state_dict().items():
            assert torch.equal(value, first[key]), key
        # Copies, not one shared layer: each trains on its own.
        assert layer.qkv.weight.data_ptr() != enc.layers[0].qkv.weight.data_ptr()
