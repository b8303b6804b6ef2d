"""Fine-grained frame retrieval precision at K (the protocol's "AP@K"): the kernel
:func:`retrieval_ap_at` and the metric :class:`RetrievalAP`."""

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
    _labelled_frames,
    _labels,
    _normalise_rows,
)
from ._neighbours import _ranking_operands
from .base import Video, VideoMetric, with_labels

if TYPE_CHECKING:
    from ..protocol import EvalProtocol, SetSpec


def retrieval_ap_at(
    embs: Sequence[ArrayLike],
    labels: Sequence[ArrayLike],
    ks: Sequence[int],
    stride: int = 2,
    distance: str = "sqeuclidean",
) -> dict[int, float]:
    """Fine-grained retrieval precision at several ``k`` in one pass; see :func:`retrieval_ap`."""
    fn = "retrieval_ap"
    stride = _check_stride(stride, fn)
    distance = _check_distance(distance, fn)
    ks = [int(k) for k in ks]
    if not ks or any(k < 1 for k in ks):
        raise ConfigError(f"{fn}: k must be a positive integer, got {ks}")
    device = _device_of(embs, labels)
    xs = _embeddings(embs, device, fn, convert=False)
    feats, labs, lens = _labelled_frames(xs, _labels(labels, xs, device, fn), stride)
    num = lens.shape[0]
    total = int(lens.sum())
    if total == 0:
        return {k: math.nan for k in ks}
    owner = torch.repeat_interleave(torch.arange(num, device=device), lens)  # [M]
    if distance == "cosine":
        feats = _normalise_rows(feats)
    q32, c32, eps = _ranking_operands(feats, distance)
    available = total - lens  # candidates per query video
    kmax = min(max(ks), total)
    width = min(kmax + 1, total)  # one more than needed: the gap after the k-th
    hits = torch.zeros(total, kmax, dtype=torch.int64, device=device)
    bounds = [0] + torch.cumsum(lens, 0).tolist()
    rows = max(1, _CHUNK_ELEMENTS // total)
    v = 0
    while v < num:  # row chunks aligned to whole query videos
        v_end = v + 1
        while v_end < num and bounds[v_end + 1] - bounds[v] <= rows:
            v_end += 1
        r0, r1 = bounds[v], bounds[v_end]
        if r1 > r0:
            dist = q32[r0:r1] @ c32.T  # [r, M]
            for u in range(v, v_end):  # a video is not its own candidate
                dist[bounds[u] - r0 : bounds[u + 1] - r0, bounds[u] : bounds[u + 1]] = math.inf
            vals, idx = torch.topk(dist, width, dim=1, largest=False, sorted=True)
            del dist
            # Redo exactly the rows whose k-th and (k+1)-th candidates are within the
            # float32 error (a gap to an excluded +inf entry is never close).
            close = torch.zeros(r1 - r0, dtype=torch.bool, device=device)
            for k in ks:
                if k < width:
                    close |= (vals[:, k] - vals[:, k - 1]) <= eps[r0:r1]
            if bool(close.any()):
                redo = close.nonzero()[:, 0] + r0
                idx[redo - r0, :kmax] = _exact_topk(feats, owner, redo, kmax, distance)
            hits[r0:r1] = (labs[idx[:, :kmax]] == labs[r0:r1, None]).long()
        v = v_end
    cum = hits.cumsum(1)  # [M, kmax]
    avail_q = available[owner]  # [M]
    query_ok = (lens > 0) & (available > 0)
    out = {}
    for k in ks:
        kk = torch.clamp(avail_q, max=k).clamp_min(1)  # neighbours actually retrieved
        col = (kk - 1).clamp(max=kmax - 1)
        prec = cum.gather(1, col[:, None])[:, 0].to(torch.float64) / kk.to(torch.float64)
        per_video = torch.zeros(num, dtype=torch.float64, device=device)
        per_video.index_add_(0, owner, prec)
        per_video = per_video / lens.clamp_min(1)
        out[k] = float(per_video[query_ok].mean()) if bool(query_ok.any()) else math.nan
    return out


def retrieval_ap(
    embs: Sequence[ArrayLike],
    labels: Sequence[ArrayLike],
    k: int,
    stride: int = 2,
    distance: str = "sqeuclidean",
) -> float:
    """Fine-grained retrieval precision at ``k`` (the protocol's "AP@K"), a fraction in [0, 1].

    Frames with label < 0 are dropped, then every ``stride``-th frame is kept, for
    query and candidate videos alike. Each video is a query; its candidates are the
    kept frames of all other videos. Per query frame: share of its ``k`` nearest
    candidates (squared Euclidean) whose label equals its own; mean over the frames,
    then over the query videos. If fewer than ``k`` candidates exist, all of them
    count. Ties at the ``k``-th distance are broken arbitrarily. ``nan`` when no
    video has both query frames and candidates.
    """
    return retrieval_ap_at(embs, labels, [k], stride=stride, distance=distance)[int(k)]


def _exact_topk(
    feats: torch.Tensor, owner: torch.Tensor, rows: torch.Tensor, kmax: int, distance: str
) -> torch.Tensor:
    """float64 ``kmax`` nearest candidates (other videos' frames) of the query ``rows``."""
    out = []
    step = max(1, _CHUNK_ELEMENTS // (feats.shape[0] * 2))
    cand = feats.T
    sq = None if distance == "cosine" else (feats * feats).sum(1)
    for s0 in range(0, rows.shape[0], step):
        r = rows[s0 : s0 + step]
        dist = -(feats[r] @ cand) if sq is None else sq[None, :] - 2.0 * (feats[r] @ cand)
        dist.masked_fill_(owner[None, :] == owner[r, None], math.inf)
        out.append(torch.topk(dist, kmax, dim=1, largest=False, sorted=True).indices)
    return torch.cat(out)



class RetrievalAP(VideoMetric):
    """:func:`retrieval_ap_at` over the labelled val videos collected: each one queries the
    others (train videos are not used).

    Args:
        k: K of AP@K; several Ks (a list) are computed in one pass and returned as a dict
            ``{"retrieval_ap@K": value}``.
        stride: every ``stride``-th labelled frame, for queries and candidates alike.
        distance: ``sqeuclidean`` or ``cosine``.
    """

    def __init__(self, k: int | Sequence[int] = 5, stride: int = 2,
                 distance: str = "sqeuclidean", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ks = (int(k),) if isinstance(k, int) else tuple(int(v) for v in k)
        if not self.ks or any(v < 1 for v in self.ks):
            raise ConfigError(f"RetrievalAP: k must be positive integers, got {k!r}")
        self.single = isinstance(k, int)
        self.stride = _check_stride(stride, "RetrievalAP")
        self.distance = _check_distance(distance, "RetrievalAP")

    def score_all(self, train: list[Video], val: list[Video]) -> dict[int, float] | None:
        """AP@K for every K, or None when undefined (fewer than two labelled val videos)."""
        if len(val) < 2 or not with_labels(val):
            return None
        return retrieval_ap_at([v.embeddings for v in val], [v.labels for v in val], self.ks,
                               stride=self.stride, distance=self.distance)

    def score(self, train: list[Video], val: list[Video]) -> float | None:
        values = self.score_all(train, val)
        return None if values is None else values[self.ks[0]]

    def compute(self) -> torch.Tensor | dict[str, torch.Tensor]:
        if self.single:
            return super().compute()
        values = self.score_all(*self.videos())
        self.defined = values is not None
        return {f"retrieval_ap@{k}": torch.tensor(math.nan if values is None else values[k],
                                                   dtype=torch.float64) for k in self.ks}

    @classmethod
    def names(cls, protocol: EvalProtocol) -> list[str]:
        return [f"retrieval_ap@{k}" for k in protocol.ap_ks]

    @classmethod
    def for_protocol(cls, protocol: EvalProtocol, spec: SetSpec | None) -> dict[str, VideoMetric]:
        return {"retrieval_ap": cls(k=list(protocol.ap_ks), stride=protocol.stride)}
