"""MV-Former: frozen backbone -> entity tokens -> multi-entity temporal transformer -> frame
embeddings; the CARL-style late-fusion baseline that reduces each frame to one vector first;
and the fixed-width baseline whose K tokens come from the CLS vector instead of LSTP.

Layouts: ``B`` videos, ``T`` frames, ``S`` spatial tokens, ``C`` backbone channels, ``K`` entity
tokens, ``D`` hidden width, ``E`` embedding width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .backbone import BackboneConfig, ImageBackbone
from .heads import REDUCTIONS, FrameReduction, ProjectionHead, TokenMLP
from .spatial_pooling import FixedWidthTokens, LearnableSpatialTokenPooling
from .temporal_encoder import TemporalPositionEncoding, TemporalTransformer

FUSIONS = ("multi_entity", "late", "fixed_width")
TOKEN_IDENTITY = ("pool", "enc", "none")
LATE_POOLS = ("max", "avg", "cls")


@dataclass
class EmbedderConfig:
    """The trainable part, named as in the paper's tables (defaults: Penn Action)."""

    fusion: str = "multi_entity"
    """``multi_entity`` (MV-Former), ``late`` (CARL-style: one vector per frame first) or
    ``fixed_width`` (K tokens from one Linear on the CLS vector instead of LSTP; ablation)."""
    num_tokens: int = 3
    """Entity tokens per frame (LSTP queries)."""
    pool_dim: int = 384
    normalize_keys: bool = False
    dynamic_tokens: int = 0
    """Extra LSTP queries generated from the backbone's final CLS vector."""
    disjoint: bool = False
    token_identity: str = "pool"
    """One-hot token index: after pooling (``pool``), before the encoder (``enc``: appended
    after the positions, which then cover the other hidden_dim - K channels), ``none``."""
    capacity: int = 2
    """Per-token MLP width = hidden_dim * capacity."""
    hidden_dim: int = 256
    num_layers: int = 3
    num_heads: int = 8
    ff_dim: int = 1024
    dropout: float = 0.1
    reduction: str = "one"
    """How a frame's K tokens become one vector: one | avg | max | linear."""
    embedding_dim: int = 128
    projection_hidden_dim: int = 128
    """Hidden width of the projection head (E -> hidden -> E), used by the training loss only."""
    num_frames: int = 80
    """Training length T: positions of other lengths are interpolated into [0, T-1]."""
    late_pool: str = "max"
    """Late fusion only: global ``max`` or ``avg`` pool of the spatial tokens, or the backbone's
    final ``cls`` vector."""
    compile: bool = False
    """``torch.compile`` the embedder (dynamic shapes: evaluation lengths vary); a speed
    setting, not part of the architecture. See benchmarks/README.md."""

    @property
    def needs_cls(self) -> bool:
        """Whether the backbone must supply its final CLS vector."""
        if self.fusion == "late":
            return self.late_pool == "cls"
        return self.fusion == "fixed_width" or self.dynamic_tokens > 0

    def validate(self) -> None:
        checks = [
            ("fusion", self.fusion, FUSIONS),
            ("token_identity", self.token_identity, TOKEN_IDENTITY),
            ("reduction", self.reduction, REDUCTIONS),
            ("late_pool", self.late_pool, LATE_POOLS),
        ]
        for key, value, allowed in checks:
            if value not in allowed:
                raise ConfigError(f"model.embedder.{key}={value!r}: expected one of {allowed}")
        positive = (
            "num_tokens",
            "pool_dim",
            "capacity",
            "hidden_dim",
            "num_layers",
            "num_heads",
            "ff_dim",
            "embedding_dim",
            "projection_hidden_dim",
            "num_frames",
        )
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(f"model.embedder.{key} must be >= 1, got {getattr(self, key)}")
        if (
            self.token_identity == "enc"
            and self.num_tokens + self.dynamic_tokens >= self.hidden_dim
        ):
            raise ConfigError("token_identity='enc' needs hidden_dim larger than the token count")


class MultiEntityEmbedder(nn.Module):
    """Trainable part of MV-Former: LSTP (or the fixed-width baseline's CLS tokens), token
    identity, MLP, positions, temporal transformer, reduction and embedding. Input: backbone
    tokens ``[B, T, S, C]`` (and the final CLS ``[B, T, C_cls]``)."""

    def __init__(self, in_dim: int, config: EmbedderConfig, cls_dim: int | None = None) -> None:
        super().__init__()
        config.validate()
        self.config = config
        if config.fusion == "fixed_width":
            if not cls_dim:
                raise ConfigError(
                    "model.embedder.fusion='fixed_width' needs a backbone with a CLS token"
                )
            k = config.num_tokens + config.dynamic_tokens
            self.pool: nn.Module = FixedWidthTokens(cls_dim, k, config.pool_dim)
        else:
            self.pool = LearnableSpatialTokenPooling(
                in_dim,
                config.num_tokens,
                config.pool_dim,
                config.normalize_keys,
                config.dynamic_tokens,
                cls_dim,
                config.disjoint,
            )
            k = self.pool.num_tokens
        self.num_tokens = k
        ident_pool = k if config.token_identity == "pool" else 0
        ident_enc = k if config.token_identity == "enc" else 0
        self.mlp = TokenMLP(
            config.pool_dim + ident_pool,
            config.hidden_dim * config.capacity,
            config.hidden_dim - ident_enc,
            config.dropout,
        )
        # With ``enc`` the positions (and their dropout) cover the hidden_dim - K channels the
        # MLP produces; the one-hot is appended afterwards, as in the reference.
        self.position = TemporalPositionEncoding(
            config.hidden_dim - ident_enc, config.num_frames, config.dropout
        )
        self.encoder = TemporalTransformer(
            config.hidden_dim, config.num_layers, config.num_heads, config.ff_dim, config.dropout
        )
        self.reduce = FrameReduction(config.reduction, k, config.hidden_dim)
        self.embedding = nn.Linear(config.hidden_dim, config.embedding_dim)

    def _one_hot(self, x: torch.Tensor) -> torch.Tensor:
        eye = torch.eye(self.num_tokens, device=x.device, dtype=x.dtype)
        return torch.cat([x, eye.expand(*x.shape[:-2], -1, -1)], dim=-1)

    def forward(
        self,
        tokens: torch.Tensor,
        cls: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> dict[str, torch.Tensor | None]:
        """-> ``embeddings [B, T, E]`` (not normalised), ``attention [B, T, K, S] | None``."""
        b, t, s, c = tokens.shape
        flat_cls = None if cls is None else cls.reshape(b * t, -1)
        pooled, attn = self.pool(tokens.reshape(b * t, s, c), flat_cls, return_attention)
        x = pooled.view(b, t, self.num_tokens, -1)
        if self.config.token_identity == "pool":
            x = self._one_hot(x)
        x = self.position(self.mlp(x))
        if self.config.token_identity == "enc":
            x = self._one_hot(x)  # after positions and dropout: the one-hot stays exact
        key_valid = None
        if valid is not None:
            key_valid = valid.bool().unsqueeze(-1).expand(b, t, self.num_tokens).reshape(b, -1)
        x = self.encoder(x.reshape(b, t * self.num_tokens, -1), key_valid)
        x = self.reduce(x.view(b, t, self.num_tokens, -1))
        return {
            "embeddings": self.embedding(x),
            "attention": None if attn is None else attn.view(b, t, self.num_tokens, s),
        }


class LateFusionEmbedder(nn.Module):
    """CARL-style baseline: each frame becomes one vector (max or average pool of its spatial
    tokens, or the backbone's final CLS) before the MLP and a temporal transformer over T
    tokens."""

    def __init__(self, in_dim: int, config: EmbedderConfig, cls_dim: int | None = None) -> None:
        super().__init__()
        config.validate()
        if config.late_pool == "cls" and not cls_dim:
            raise ConfigError("model.embedder.late_pool='cls' needs a backbone with a CLS token")
        self.config = config
        self.num_tokens = 1
        width = cls_dim if config.late_pool == "cls" else in_dim
        self.mlp = TokenMLP(
            width, config.hidden_dim * config.capacity, config.hidden_dim, config.dropout
        )
        self.position = TemporalPositionEncoding(
            config.hidden_dim, config.num_frames, config.dropout
        )
        self.encoder = TemporalTransformer(
            config.hidden_dim, config.num_layers, config.num_heads, config.ff_dim, config.dropout
        )
        self.embedding = nn.Linear(config.hidden_dim, config.embedding_dim)

    def forward(
        self,
        tokens: torch.Tensor,
        cls: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> dict[str, torch.Tensor | None]:
        pool = self.config.late_pool
        frame = cls if pool == "cls" else tokens.amax(dim=2) if pool == "max" else tokens.mean(2)
        x = self.position(self.mlp(frame).unsqueeze(2)).squeeze(2)
        x = self.encoder(x, None if valid is None else valid.bool())
        return {"embeddings": self.embedding(x), "attention": None}


class MVFormer(nn.Module):
    """Frozen backbone + trainable embedder + projection head. The backbone supplies its final
    CLS vector only when the embedder uses it (late fusion on CLS, dynamic tokens, FWB).

    ``forward(frames [B, T, 3, H, W], valid [B, T])`` -> ``embeddings [B, T, E]`` and optional
    LSTP ``attention [B, T, K, S]`` from the same pass. ``project`` gives the L2-normalised
    projection used only by the training loss; ``projection=False`` builds none (losses on
    the embedding itself, like the reference's TCC, TCN and classification configs).
    """

    def __init__(
        self, backbone: BackboneConfig, embedder: EmbedderConfig, projection: bool = True
    ) -> None:
        super().__init__()
        embedder.validate()
        self.backbone = ImageBackbone(backbone, final_cls=embedder.needs_cls)
        cls = LateFusionEmbedder if embedder.fusion == "late" else MultiEntityEmbedder
        self.embedder = cls(self.backbone.out_channels, embedder, self.backbone.cls_channels)
        if embedder.compile:
            self.embedder.compile(dynamic=True)  # in place: parameter names stay the same
        self.projection = (
            ProjectionHead(embedder.embedding_dim, embedder.projection_hidden_dim)
            if projection
            else None
        )

    def backbone_features(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``frames [B, T, 3, H, W]`` -> ``tokens [B, T, S, C]``, ``cls [B, T, C] | None``."""
        b, t = frames.shape[:2]
        tokens, cls = self.backbone(frames.flatten(0, 1))
        tokens = tokens.view(b, t, *tokens.shape[1:])
        return tokens, None if cls is None else cls.view(b, t, -1)

    def forward(
        self,
        frames: torch.Tensor,
        valid: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> dict[str, torch.Tensor | None]:
        if frames.dim() != 5:
            raise ValueError(f"MVFormer expects frames [B, T, 3, H, W], got {tuple(frames.shape)}")
        tokens, cls = self.backbone_features(frames)
        return self.embedder(tokens, cls, valid, return_attention)

    def project(self, embeddings: torch.Tensor) -> torch.Tensor:
        if self.projection is None:
            raise RuntimeError("this MVFormer was built without a projection head")
        return self.projection(embeddings)

    @staticmethod
    def normalize(embeddings: torch.Tensor) -> torch.Tensor:
        """Evaluation embeddings are L2-normalised."""
        return F.normalize(embeddings, dim=-1)
