"""Learnable Spatial Token Pooling (LSTP): K learned queries cross-attend over a frame's
spatial tokens and return K entity tokens per frame."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


class LearnableSpatialTokenPooling(nn.Module):
    """Pool ``tokens [N, S, C]`` into ``[N, K, P]`` with one-head cross-attention.

    The K static queries are a learned ``[1, K, P]`` tensor plus a learned P-vector shared by
    all queries, both uniform in +-1/sqrt(K P) (Kaiming-uniform over the fan-in K P, as in the
    reference; much smaller than an ``nn.Linear(K, P)``'s +-1/sqrt(K)). Keys and values are
    separate linear maps C -> P. Options: L2-normalised keys, extra "dynamic" queries generated
    from the backbone's final CLS vector, and a "disjoint" variant in which each spatial token
    only feeds the query that gives it the highest attention probability (see
    :meth:`_attention`).
    """

    def __init__(
        self,
        in_dim: int,
        num_tokens: int = 3,
        dim: int = 384,
        normalize_keys: bool = False,
        num_dynamic_tokens: int = 0,
        cls_dim: int | None = None,
        disjoint: bool = False,
    ) -> None:
        super().__init__()
        if num_tokens < 1:
            raise ConfigError(
                f"num_tokens must be >= 1 (entity tokens per frame), got {num_tokens}"
            )
        if num_dynamic_tokens < 0:
            raise ConfigError(f"num_dynamic_tokens must be >= 0, got {num_dynamic_tokens}")
        if num_dynamic_tokens and not cls_dim:
            raise ConfigError("dynamic tokens need a CLS token: the backbone has none")
        self.num_static = num_tokens
        self.num_dynamic = num_dynamic_tokens
        self.dim = dim
        self.normalize_keys = normalize_keys
        self.disjoint = disjoint
        self.queries = nn.Parameter(torch.empty(1, num_tokens, dim))
        self.query_bias = nn.Parameter(torch.empty(dim))
        bound = 1 / math.sqrt(num_tokens * dim)
        nn.init.uniform_(self.queries, -bound, bound)  # = kaiming_uniform_(a=sqrt(5)), fan-in KP
        nn.init.uniform_(self.query_bias, -bound, bound)
        self.key = nn.Linear(in_dim, dim)
        self.value = nn.Linear(in_dim, dim)
        self.dynamic = nn.Linear(cls_dim, dim * num_dynamic_tokens) if num_dynamic_tokens else None

    @property
    def num_tokens(self) -> int:
        return self.num_static + self.num_dynamic

    def _queries(self, n: int, cls: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        q = (self.queries + self.query_bias).to(like.dtype).expand(n, -1, -1)
        if self.dynamic is not None:
            if cls is None:
                raise ValueError("dynamic tokens need the CLS token, but none was given")
            q = torch.cat([q, self.dynamic(cls).view(n, self.num_dynamic, self.dim)], dim=1)
        return q

    def forward(
        self, tokens: torch.Tensor, cls: torch.Tensor | None = None, return_attention: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``tokens [N, S, C]``, ``cls [N, C]`` -> pooled ``[N, K, P]``, attention ``[N, K, S]``.

        Without key normalisation the linear maps are moved off the S spatial tokens: a
        query's logits are ``(q W_k) x^T + q b_k`` and its output ``W_v (a x) + b_v`` (the
        attention ``a`` sums to 1), the same function at K/S of the cost of projecting every
        token (and no ``[N, S, P]`` keys or values kept for the backward pass)."""
        n = tokens.shape[0]
        if self.normalize_keys:
            return self._attend_projected(tokens, cls, return_attention)
        q = self._queries(n, cls, tokens)
        q_in = q @ self.key.weight.to(q.dtype)  # [N, Q, C]: queries in the tokens' space
        # q b_k is one logit offset per query (softmax ignores it), kept so that the logits,
        # and the key bias's (zero up to rounding) gradient, are the reference's.
        key_bias = (q @ self.key.bias.to(q.dtype)).unsqueeze(-1)  # [N, Q, 1]
        if not (return_attention or self.disjoint):
            pooled = F.scaled_dot_product_attention(
                q_in.unsqueeze(1), tokens.unsqueeze(1), tokens.unsqueeze(1),
                attn_mask=(key_bias / math.sqrt(self.dim)).unsqueeze(1).expand(
                    -1, -1, -1, tokens.shape[1]
                ),
                scale=1 / math.sqrt(self.dim),
            ).squeeze(1)
            return self.value(pooled), None
        attn = self._attention((q_in @ tokens.transpose(1, 2) + key_bias) / math.sqrt(self.dim))
        # W_v (a x) + (sum a) b_v: a disjoint query's weights may sum to less than 1.
        pooled = F.linear(attn @ tokens, self.value.weight.to(attn.dtype))
        return pooled + attn.sum(-1, keepdim=True) * self.value.bias.to(attn.dtype), attn

    def _attend_projected(
        self, tokens: torch.Tensor, cls: torch.Tensor | None, return_attention: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attention over projected (and L2-normalised) keys and values."""
        k = F.normalize(self.key(tokens), dim=-1)
        v = self.value(tokens)
        q = self._queries(tokens.shape[0], cls, k)
        if not (return_attention or self.disjoint):
            out = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1))
            return out.squeeze(1), None
        attn = self._attention(q @ k.transpose(1, 2) / math.sqrt(self.dim))
        return attn @ v, attn

    def _attention(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax over the spatial tokens ``[N, Q, S]``. "Disjoint" (the reference's): each
        spatial token keeps its probability only in the query where that probability is
        largest (the first on a tie) and is zeroed in the others, with no renormalisation, so
        a query's weights sum to at most 1 (0 for a query that wins no token)."""
        attn = logits.softmax(dim=-1)
        if self.disjoint:
            winner = attn.argmax(dim=1, keepdim=True)  # [N, 1, S]
            own = torch.arange(attn.shape[1], device=attn.device).view(1, -1, 1) == winner
            attn = attn * own
        return attn


class FixedWidthTokens(nn.Module):
    """The fixed-width baseline's stand-in for LSTP: one Linear from the frame's CLS vector to
    K x P, read as K tokens of width P (the width of K entities without spatial pooling).

    The Linear's output is laid out as the reference's: channel-major, ``[P, K]``.
    """

    def __init__(self, cls_dim: int, num_tokens: int = 3, dim: int = 384) -> None:
        super().__init__()
        if num_tokens < 1:
            raise ConfigError(
                f"num_tokens must be >= 1 (entity tokens per frame), got {num_tokens}"
            )
        self.num_tokens = num_tokens
        self.dim = dim
        self.linear = nn.Linear(cls_dim, dim * num_tokens)

    def forward(
        self, tokens: torch.Tensor, cls: torch.Tensor | None = None, return_attention: bool = False
    ) -> tuple[torch.Tensor, None]:
        """``cls [N, C_cls]`` -> ``[N, K, P]``; the spatial ``tokens`` are not used."""
        if cls is None:
            raise ValueError("the fixed-width baseline needs the backbone's CLS vector")
        out = self.linear(cls).view(-1, self.dim, self.num_tokens).transpose(1, 2)
        return out, None
