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
    sinusoidal_positions,
)


@pytest.mark.parametrize("dim", [8, 7])
def test_sinusoidal_values_follow_the_formula(dim):
    positions = torch.tensor([0.0, 1.0, 5.0, 2.5])
    pe = sinusoidal_positions(positions, dim)
    assert pe.shape == (4, dim)
    for row, pos in enumerate(positions.tolist()):
        for i in range(dim):
            # PE(pos, 2j) = sin(pos / 10000^(2j/d)), PE(pos, 2j+1) = cos(pos / 10000^(2j/d))
            angle = pos / 10000 ** ((i - i % 2) / dim)
            want = math.sin(angle) if i % 2 == 0 else math.cos(angle)
            assert pe[row, i].item() == pytest.approx(want, abs=1e-5), (pos, i)


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
        ref.linear2.load_state_dict(layer.ff[3].state_dict())
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
