"""Kendall's tau of nearest-neighbour alignments between all ordered pairs of videos: the
kernel :func:`kendalls_tau` and the metric :class:`KendallsTau`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from ...errors import ConfigError
from ._inputs import (
    _CHUNK_ELEMENTS,
    ArrayLike,
    _check_distance,
    _check_stride,
    _device_of,
    _embeddings,
    _length_buckets,
    _normalise_rows,
)
from ._neighbours import _PAD_VALUE, _exact_distances, _ranking_operands
from .base import Video, VideoMetric

if TYPE_CHECKING:
    from ..protocol import EvalProtocol, SetSpec


def _concordant(seqs: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """``#{a < b : seqs[r, a] < seqs[r, b]}`` per row of ``seqs`` ``[R, L]``; ``upper`` is
    the flattened strictly upper triangular ``[L * L]`` uint8 mask. Rows are processed in
    cache-sized chunks (the ``[rows, L, L]`` comparisons are written and read once)."""
    rows, length = seqs.shape
    out = torch.empty(rows, dtype=torch.int64, device=seqs.device)
    step = max(1, (1 << 18) // max(length * length, 1))
    for r0 in range(0, rows, step):
        x = seqs[r0 : r0 + step]
        less = (x[:, :, None] < x[:, None, :]).view(torch.uint8).view(x.shape[0], -1)
        out[r0 : r0 + step] = (less * upper).sum(1)
    return out



def kendalls_tau(
    embs: Sequence[ArrayLike], stride: int = 2, distance: str = "sqeuclidean"
) -> float:
    """Mean Kendall's tau-b of nearest-neighbour alignments over all ordered video pairs.

    For each ordered pair ``(i, j)``, ``i != j``: every ``stride``-th frame of both;
    each frame of ``i`` gets its nearest frame of ``j`` (squared Euclidean or cosine
    distance, first index on ties); tau-b (ties handled as ``scipy.stats.kendalltau``)
    between the query indices and the neighbour indices. Pairs whose tau is undefined
    (fewer than two query frames, or every frame mapped to the same neighbour) are
    excluded from the mean; ``nan`` if every pair is. Labels are not used: drop
    unlabelled frames before calling if the protocol requires it.
    """
    fn = "kendalls_tau"
    stride = _check_stride(stride, fn)
    distance = _check_distance(distance, fn)
    device = _device_of(embs)
    seqs = [x[::stride] for x in _embeddings(embs, device, fn)]
    num = len(seqs)
    if num < 2:
        return math.nan
    # Videos sorted by length (tau's mean over ordered pairs does not depend on the order)
    # and grouped into buckets of similar length, each padded only to its own longest.
    lens_list = [int(x.shape[0]) for x in seqs]
    order = sorted(range(num), key=lambda i: -lens_list[i])
    seqs = [seqs[i] for i in order]
    lens_list = [lens_list[i] for i in order]
    lens = torch.tensor(lens_list, dtype=torch.int64, device=device)
    if lens_list[0] == 0:
        return math.nan
    flat = torch.cat(seqs)  # [M, E] float64
    if distance == "cosine":
        flat = _normalise_rows(flat)
    q32, c32, eps = _ranking_operands(flat, distance)
    dim = flat.shape[1]
    buckets = _length_buckets(lens_list)
    starts = [0]
    for n in lens_list:
        starts.append(starts[-1] + n)
    # Per bucket [nb, Lb, .] padded layouts: float64 frames (exact re-checks), float32
    # query / candidate operands and error bounds. Padded candidates rank last.
    exact, queries, cands, bounds = [], [], [], []
    for b0, b1 in buckets:
        nb, lb = b1 - b0, lens_list[b0]
        rows = torch.cat(
            [torch.arange(starts[v], starts[v] + lb, device=device) for v in range(b0, b1)]
        )
        valid = (torch.arange(lb, device=device)[None, :] < lens[b0:b1, None]).reshape(-1)
        rows = torch.where(valid, rows.clamp(max=flat.shape[0] - 1), 0)
        pad = ~valid[:, None]
        exact.append(flat[rows].masked_fill(pad, 0.0).view(nb, lb, dim))
        queries.append(q32[rows].masked_fill(pad, 0.0).view(nb, lb, dim + 1))
        cand = c32[rows].masked_fill(pad, 0.0)
        cand[:, -1].masked_fill_(~valid, _PAD_VALUE)
        cands.append(cand)
        bounds.append(eps[rows].masked_fill(~valid, -math.inf).view(nb, lb))  # padded: no re-check
    small = torch.int16 if lens_list[0] < 2**15 - 1 else torch.int32
    widest = max(c.shape[0] for c in cands)
    everyone = torch.arange(num, device=device)
    tau_sum = 0.0
    tau_count = 0
    for bi, (b0, b1) in enumerate(buckets):
        lq = lens_list[b0]
        if lq < 2:  # shorter videos cannot give a defined tau as queries
            continue
        per_query = max(lq * widest, num * lq * lq, num * (lens_list[0] + 1))
        chunk = max(1, _CHUNK_ELEMENTS // per_query)
        upper = torch.ones(lq, lq, dtype=torch.uint8, device=device).triu_(1).view(-1)
        for c0 in range(b0, b1, chunk):
            c1 = min(b1, c0 + chunk)
            r = (c1 - c0) * lq
            q = queries[bi][c0 - b0 : c1 - b0].reshape(r, dim + 1)
            q_eps = bounds[bi][c0 - b0 : c1 - b0].reshape(r)
            nn = torch.zeros(num, r, dtype=small, device=device)
            for (v0, v1), cand, cand_exact in zip(buckets, cands, exact):
                if lens_list[v0] == 0:  # empty videos (last bucket): no neighbours
                    continue
                dist = (cand @ q.T).view(v1 - v0, -1, r)  # [nb, Lb, r]
                best, idx = dist.min(1)  # [nb, r]
                if dist.shape[1] > 1:
                    dist.scatter_(1, idx[:, None, :], math.inf)
                    close = (dist.amin(1) - best) <= q_eps[None, :]
                    del dist
                    if bool(close.any()):  # runner-up within the float32 error: redo exactly
                        vi, ri = close.nonzero(as_tuple=True)
                        q_exact = exact[bi][c0 - b0 : c1 - b0].reshape(r, dim)
                        clens = lens[v0:v1]
                        step = max(1, _CHUNK_ELEMENTS // (cand_exact.shape[1] * dim))
                        for s0 in range(0, vi.shape[0], step):
                            v_s, r_s = vi[s0 : s0 + step], ri[s0 : s0 + step]
                            d = _exact_distances(q_exact[r_s], cand_exact[v_s], distance)
                            ok = torch.arange(d.shape[1], device=device)[None, :] < clens[v_s, None]
                            idx[v_s, r_s] = d.masked_fill(~ok, math.inf).argmin(1)
                nn[v0:v1] = idx.to(small)
            # Tau-b against the query index (no ties there): for query frames a < b,
            # concordant = #{nn_a < nn_b}; untied = pairs - #{nn_a == nn_b}; S = 2 conc - untied.
            qlens = lens[c0:c1]
            nn = nn.view(num, c1 - c0, lq).permute(1, 0, 2)  # [c, V, Lq]
            qvalid = torch.arange(lq, device=device)[None, :] < qlens[:, None]  # [c, Lq]
            nn = nn.masked_fill(~qvalid[:, None, :], -1)  # padded frames: never concordant
            conc = _concordant(nn.reshape(-1, lq), upper).view(c1 - c0, num)  # [c, V]
            counts = torch.zeros(c1 - c0, num, lens_list[0] + 1, dtype=torch.int64, device=device)
            counts.scatter_add_(2, nn.long() + 1, torch.ones_like(nn, dtype=torch.int64))
            counts = counts[..., 1:]
            ties = (counts * (counts - 1) // 2).sum(-1)
            n0 = qlens * (qlens - 1) // 2  # [c]
            untied = n0[:, None] - ties
            s_ = 2 * conc - untied
            denom = torch.sqrt(n0[:, None].to(torch.float64) * untied.to(torch.float64))
            tau = s_.to(torch.float64) / denom  # nan where denom == 0
            ok = (denom > 0) & (lens[None, :] > 0) & (everyone[c0:c1, None] != everyone[None, :])
            tau_sum += float(tau[ok].sum())
            tau_count += int(ok.sum())
    return tau_sum / tau_count if tau_count else math.nan



class KendallsTau(VideoMetric):
    """:func:`kendalls_tau` over the val videos collected (train videos are not used).

    Args:
        stride: every ``stride``-th frame of each video.
        distance: ``sqeuclidean`` or ``cosine``.
        frames: ``labelled`` drops the frames labelled < 0 of a video that has labels first
            (the protocol's); ``all`` keeps every frame.
    """

    def __init__(self, stride: int = 2, distance: str = "sqeuclidean",
                 frames: str = "labelled", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stride = _check_stride(stride, "KendallsTau")
        self.distance = _check_distance(distance, "KendallsTau")
        if frames not in ("labelled", "all"):
            raise ConfigError(f"KendallsTau: frames must be 'labelled' or 'all', got {frames!r}")
        self.frames = frames

    def score(self, train: list[Video], val: list[Video]) -> float | None:
        if len(val) < 2:
            return None
        drop = self.frames == "labelled"
        embs = [v.embeddings[v.labels >= 0] if drop and v.labelled else v.embeddings
                for v in val]
        return kendalls_tau(embs, stride=self.stride, distance=self.distance)

    @classmethod
    def names(cls, protocol: EvalProtocol) -> list[str]:
        return ["kendalls_tau"]

    @classmethod
    def for_protocol(cls, protocol: EvalProtocol, spec: SetSpec | None) -> dict[str, VideoMetric]:
        return {"kendalls_tau": cls(stride=protocol.stride, frames=protocol.tau_frames)}
