"""Small heads around the temporal encoder: per-token MLP, frame reduction, projection."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

REDUCTIONS = ("one", "avg", "max", "linear")


class TokenMLP(nn.Module):
    """Two [Dropout, Linear, BatchNorm1d, ReLU] blocks then a Linear to the hidden width.

    Works on any leading shape ``[..., in_dim]``; BatchNorm sees all tokens as one batch.
    """

    def __init__(self, in_dim: int, width: int, out_dim: int, dropout: float = 0.1, depth: int = 2):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [
                nn.Dropout(dropout),
                nn.Linear(in_dim if i == 0 else width, width),
                nn.BatchNorm1d(width),
                nn.ReLU(inplace=True),
            ]
        self.blocks = nn.Sequential(*layers)
        self.out = nn.Linear(width if depth else in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        return self.out(self.blocks(x.reshape(-1, x.shape[-1]))).view(*lead, -1)


class FrameReduction(nn.Module):
    """Turn the K entity tokens of a frame ``[B, T, K, D]`` into one vector ``[B, T, D]``."""

    def __init__(self, mode: str, num_tokens: int, dim: int) -> None:
        super().__init__()
        if mode not in REDUCTIONS:
            raise ConfigError(f"reduction {mode!r} is not one of {REDUCTIONS}")
        self.mode = mode
        self.linear = nn.Linear(num_tokens * dim, dim) if mode == "linear" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "one":
            return x[:, :, 0]
        if self.mode == "avg":
            return x.mean(dim=2)
        if self.mode == "max":
            return x.amax(dim=2)
        return self.linear(x.flatten(2))


class ProjectionHead(nn.Module):
    """Linear E -> H, BatchNorm1d, ReLU, Linear H -> E, then L2 normalisation (loss only)."""

    def __init__(self, dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        return F.normalize(self.net(x.reshape(-1, x.shape[-1])).view(*lead, -1), dim=-1)
