"""Per-token MLP, frame reductions and the projection head."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mvf_lightning.models.heads import FrameReduction, ProjectionHead, TokenMLP


def _tokens() -> torch.Tensor:
    # [B=1, T=2, K=3, D=2]
    return torch.tensor(
        [[[[1.0, -4.0], [3.0, 2.0], [-1.0, 5.0]], [[0.0, 0.0], [2.0, -2.0], [4.0, 8.0]]]]
    )


@pytest.mark.parametrize(
    ("mode", "want"),
    [
        ("one", [[[1.0, -4.0], [0.0, 0.0]]]),
        ("avg", [[[1.0, 1.0], [2.0, 2.0]]]),
        ("max", [[[3.0, 5.0], [4.0, 8.0]]]),
    ],
)
def test_reductions(mode, want):
    out = FrameReduction(mode, num_tokens=3, dim=2)(_tokens())
    torch.testing.assert_close(out, torch.tensor(want))


def test_linear_reduction_maps_the_concatenated_tokens():
    red = FrameReduction("linear", num_tokens=3, dim=2)
    assert red.linear.in_features == 6 and red.linear.out_features == 2
    x = _tokens()
    want = x.reshape(1, 2, 6) @ red.linear.weight.T + red.linear.bias
    torch.testing.assert_close(red(x), want)
    # Token order matters: the concatenation is token 0's channels, then token 1's, ...
    with torch.no_grad():
        red.linear.weight.zero_()
        red.linear.bias.zero_()
        red.linear.weight[0, 2] = 1.0  # token 1, channel 0
    torch.testing.assert_close(red(x)[..., 0], x[:, :, 1, 0])


def test_unknown_reduction():
    with pytest.raises(ValueError, match=r"'mean'.*\('one', 'avg', 'max', 'linear'\)"):
        FrameReduction("mean", 3, 2)


def test_projection_head_is_unit_norm_and_matches_its_layers():
    head = ProjectionHead(dim=6, hidden=4).eval()
    x = torch.randn(2, 5, 6)
    out = head(x)
    assert out.shape == (2, 5, 6)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2, 5))
    lin1, bn, _, lin2 = head.net
    with torch.no_grad():
        h = torch.relu(bn(lin1(x.reshape(10, 6))))
        want = nn.functional.normalize(lin2(h), dim=-1).view(2, 5, 6)
    torch.testing.assert_close(out, want)


def test_projection_head_batchnorm_uses_all_frames_of_all_videos():
    head = ProjectionHead(dim=3, hidden=4).train()
    x = torch.randn(2, 7, 3)
    head(x)
    bn = head.net[1]
    h = head.net[0](x.reshape(14, 3)).detach()
    # One BatchNorm step from the initial stats (0, 1) with momentum 0.1 over all 14 rows.
    torch.testing.assert_close(bn.running_mean, 0.1 * h.mean(0))


def test_token_mlp_structure_and_any_leading_shape():
    mlp = TokenMLP(in_dim=5, width=8, out_dim=3, dropout=0.1).eval()
    kinds = [type(m) for m in mlp.blocks]
    block = [nn.Dropout, nn.Linear, nn.BatchNorm1d, nn.ReLU]
    assert kinds == block + block
    assert mlp.blocks[0].p == 0.1
    assert mlp.out.in_features == 8 and mlp.out.out_features == 3
    x = torch.randn(2, 4, 3, 5)
    out = mlp(x)
    assert out.shape == (2, 4, 3, 3)
    with torch.no_grad():
        for i in range(2):
            torch.testing.assert_close(out[i, 1, 2], mlp(x[i, 1, 2][None])[0])
