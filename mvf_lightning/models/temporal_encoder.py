"""Temporal part of the model: sine-cosine frame positions and a pre-norm transformer."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_positions(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Fixed sine-cosine encoding of (possibly fractional) positions ``[T]`` -> ``[T, dim]``."""
    half = torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32)
    freq = torch.exp(-math.log(10000.0) * half / dim)
    angles = positions.float().unsqueeze(1) * freq
    pe = torch.zeros(positions.shape[0], dim, device=positions.device)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : dim // 2])
    return pe


class TemporalPositionEncoding(nn.Module):
    """Add frame positions to ``x [B, T, K, D]``; other lengths are spread over the training
    range ``[0, train_length - 1]`` so whole-video evaluation sees the positions it trained on."""

    def __init__(self, dim: int, train_length: int, dropout: float = 0.1) -> None:
        super().__init__()
        if train_length < 1:
            raise ValueError(f"train_length (frames per view) must be >= 1, got {train_length}")
        self.dim = dim
        self.train_length = train_length
        self.dropout = nn.Dropout(dropout)

    def positions(self, length: int, device: torch.device) -> torch.Tensor:
        if length == self.train_length:
            return torch.arange(length, device=device, dtype=torch.float32)
        return torch.linspace(0, self.train_length - 1, length, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pe = sinusoidal_positions(self.positions(x.shape[1], x.device), self.dim)
        return self.dropout(x + pe.to(x.dtype).view(1, x.shape[1], 1, self.dim))


class TemporalEncoderLayer(nn.Module):
    """Pre-norm transformer encoder layer (self-attention + ReLU feed-forward) on SDPA."""

    def __init__(
        self, dim: int = 256, num_heads: int = 8, ff_dim: int = 1024, dropout: float = 0.1
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden width {dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, ff_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff_dim, dim)
        )
        self.drop1 = nn.Dropout(dropout)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, L, D]``; ``attn_mask`` bool ``[B, 1, 1, L]``, True where a key may be seen."""
        b, n, d = x.shape
        q, k, v = (
            self.qkv(self.norm1(x))
            .view(b, n, 3, self.num_heads, d // self.num_heads)
            .permute(2, 0, 3, 1, 4)
        )
        a = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.drop1(self.proj(a.transpose(1, 2).reshape(b, n, d)))
        return x + self.drop2(self.ff(self.norm2(x)))


class TemporalTransformer(nn.Module):
    """Stack of pre-norm layers over one token sequence with a key padding mask."""

    def __init__(
        self,
        dim: int = 256,
        num_layers: int = 3,
        num_heads: int = 8,
        ff_dim: int = 1024,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TemporalEncoderLayer(dim, num_heads, ff_dim, dropout) for _ in range(num_layers)
        )

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, L, D]``, ``valid`` bool ``[B, L]`` (False = padding) -> ``[B, L, D]``."""
        mask = None if valid is None else valid[:, None, None, :]
        for layer in self.layers:
            x = layer(x, mask)
        return x
