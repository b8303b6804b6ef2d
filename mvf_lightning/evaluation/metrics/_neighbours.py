"""Nearest-neighbour search in float32 with exact float64 re-checks, shared by Kendall's tau
and retrieval."""

from __future__ import annotations

import math

import torch

# Candidate search runs in float32 (twice the matmul speed of float64), then every
# decision that float32 rounding could have changed is redone in float64: a query's
# nearest candidate when the runner-up is within the error bound, a retrieval
# query's k-th / (k+1)-th candidates when they are that close. The results are
# therefore those of a float64 search.
_F32_EPS = 2.0**-24  # unit roundoff of float32
_PAD_VALUE = 8.0  # ranking value of padded candidates; real ones lie in [-3, 3] (see below)


def _ranking_operands(
    x: torch.Tensor, distance: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float32 operands whose product ranks candidates like the distance, plus error bounds.

    ``x`` is float64 ``[M, E]`` (rows L2-normalised for cosine). With ``s = 1 / max |x|``:
    query ``[-2 s x, 1]`` and candidate ``[s x, s^2 |x|^2]`` multiply to
    ``s^2 (|c|^2 - 2 q.c)``, which ranks candidates like ``|q - c|^2`` and lies in
    ``[-3, 3]`` (cosine: ``[-x, 1] . [x, 0] = -cos``). Returns ``(queries, candidates,
    eps)`` with ``eps[r]`` a bound on the difference between the float32 and exact
    values of any two entries of query row ``r``: ``2 (E + 4) u`` times the sum of the
    absolute terms (float32 rounding of the operands plus a dot product of ``E + 1``
    terms), doubled for safety.
    """
    dim = x.shape[1]
    if distance == "cosine":
        qscale, extra, cmax = -1.0, torch.zeros_like(x[:, 0]), 1.0
        qnorm = torch.ones_like(x[:, 0])
    else:
        sq = (x * x).sum(1)
        peak = float(sq.max()) if sq.numel() else 0.0
        scale = 1.0 / math.sqrt(peak) if peak > 0 else 1.0
        x = x * scale
        sq = sq * (scale * scale)
        qscale, extra, cmax = -2.0, sq, 1.0
        qnorm = sq.sqrt()
    ones = torch.ones_like(x[:, :1])
    queries = torch.cat([qscale * x, ones], 1).to(torch.float32)
    cands = torch.cat([x, extra[:, None]], 1).to(torch.float32)
    bound = abs(qscale) * qnorm * cmax + (1.0 if distance != "cosine" else 0.0)
    eps = (4.0 * (dim + 4) * _F32_EPS) * bound
    return queries, cands, eps.to(torch.float32)


def _exact_distances(q: torch.Tensor, c: torch.Tensor, distance: str) -> torch.Tensor:
    """float64 distances ``[n, L]`` between rows ``q [n, E]`` and ``c [n, L, E]`` (ranking
    equivalent: cosine gives ``-cos`` of normalised rows)."""
    if distance == "cosine":
        return -(c @ q[:, :, None])[..., 0]
    return ((c - q[:, None, :]) ** 2).sum(-1)

