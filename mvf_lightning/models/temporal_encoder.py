"""Temporal part of the model: sine-cosine frame positions and a pre-norm transformer."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


def sinusoidal_positions(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Fixed sine-cosine encoding of (possibly fractional) positions ``[T]`` -> ``[T, dim]``.

    The reference's formula: channel ``c`` of position ``p`` is ``sin(p / 10000^(c/dim))`` for
    even ``c`` and ``cos(p / 10000^(c/dim))`` for odd ``c`` (its own index in the exponent).
    """
    channels = torch.arange(dim, device=positions.device, dtype=torch.float64)
    angles = positions.double().unsqueeze(1) / 10000.0 ** (channels / dim)
    odd = channels.remainder(2).bool()
    return torch.where(odd, torch.cos(angles), torch.sin(angles)).float()


POSITION_MODES = ("spread", "fixed")
"""``spread``: a sequence's frames spread over the training positions (evaluation's; the
embedding then carries the frame's relative time). ``fixed``: every frame at the middle
training position, so only the frames' content and context tell frames apart."""


class TemporalPositionEncoding(nn.Module):
    """Add frame positions to ``x [B, T, K, D]``; other lengths are spread over the training
    range ``[0, train_length - 1]`` so whole-video evaluation sees the positions it trained on.
    ``mode = "fixed"`` (see :func:`position_mode`) puts every frame at the middle position."""

    def __init__(self, dim: int, train_length: int, dropout: float = 0.1) -> None:
        super().__init__()
        if train_length < 1:
            raise ConfigError(f"train_length (frames per view) must be >= 1, got {train_length}")
        self.dim = dim
        self.train_length = train_length
        self.dropout = nn.Dropout(dropout)
        self.mode = "spread"

    def positions(self, length: int, device: torch.device) -> torch.Tensor:
        if self.mode == "fixed":
            return torch.full((length,), (self.train_length - 1) / 2, device=device)
        if length == self.train_length:
            return torch.arange(length, device=device, dtype=torch.float32)
        return torch.linspace(0, self.train_length - 1, length, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pe = sinusoidal_positions(self.positions(x.shape[1], x.device), self.dim)
        return self.dropout(x + pe.to(x.dtype).view(1, x.shape[1], 1, self.dim))


@contextlib.contextmanager
def position_mode(model: nn.Module, mode: str) -> Iterator[None]:
    """Within the block, every :class:`TemporalPositionEncoding` of ``model`` uses ``mode``
    (one of :data:`POSITION_MODES`); restored afterwards."""
    if mode not in POSITION_MODES:
        raise ValueError(f"positions must be one of {'|'.join(POSITION_MODES)}, got {mode!r}")
    encodings = [m for m in model.modules() if isinstance(m, TemporalPositionEncoding)]
    before = [m.mode for m in encodings]
    for m in encodings:
        m.mode = mode
    try:
        yield
    finally:
        for m, old in zip(encodings, before):
            m.mode = old


class TemporalEncoderLayer(nn.Module):
    """Pre-norm transformer encoder layer (self-attention + ReLU feed-forward) on SDPA.

    Dropout sits on the two residual branches only, none on the attention weights and none
    inside the feed-forward (the reference's layer; ``nn.TransformerEncoderLayer`` has the same
    parameters but drops out in both places). Weight matrices are Xavier-uniform; the query,
    key and value maps are three matrices, each initialised on its own.
    """

    def __init__(
        self, dim: int = 256, num_heads: int = 8, ff_dim: int = 1024, dropout: float = 0.1
    ):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"hidden width {dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_dim), nn.ReLU(), nn.Linear(ff_dim, dim))
        self.drop1 = nn.Dropout(dropout)
        self.drop2 = nn.Dropout(dropout)
        with torch.no_grad():
            for w in (*self.qkv.weight.chunk(3), self.proj.weight, self.ff[0].weight,
                      self.ff[2].weight):
                nn.init.xavier_uniform_(w)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, L, D]``; ``attn_mask`` bool ``[B, 1, 1, L]``, True where a key may be seen."""
        b, n, d = x.shape
        q, k, v = (
            self.qkv(self.norm1(x))
            .view(b, n, 3, self.num_heads, d // self.num_heads)
            .permute(2, 0, 3, 1, 4)
        )
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + self.drop1(self.proj(a.transpose(1, 2).reshape(b, n, d)))
        return x + self.drop2(self.ff(self.norm2(x)))


class TemporalTransformer(nn.Module):
    """Stack of pre-norm layers over one token sequence with a key padding mask. The layers
    start as identical copies of one layer, as in the reference."""

    def __init__(
        self,
        dim: int = 256,
        num_layers: int = 3,
        num_heads: int = 8,
        ff_dim: int = 1024,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        layer = TemporalEncoderLayer(dim, num_heads, ff_dim, dropout)
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, L, D]``, ``valid`` bool ``[B, L]`` (False = padding) -> ``[B, L, D]``."""
        mask = None if valid is None else valid[:, None, None, :]
        for layer in self.layers:
            x = layer(x, mask)
        return x
