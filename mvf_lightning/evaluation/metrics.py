"""Frame-level evaluation metrics of the MV-Former / CARL protocol, as pure torch functions.

Every function takes lists of per-video arrays (numpy or torch, on any device) and
computes with torch on the inputs' device (the first CUDA device among them, else
CPU), in float64. No scikit-learn or scipy at run time; the tests check agreement
with the scipy / scikit-learn formulations. See ``docs/architecture.md`` and the
"Evaluation protocol" of the reference for the definitions.

Conventions shared by all metrics:

* Frames whose label is ``< 0`` are dropped first (before striding); the frame
  index ``t`` used by the progression targets counts the kept frames only.
* ``stride`` (Kendall's tau, retrieval) keeps frames ``0, s, 2s, ...`` of the
  (label-filtered) sequence, for queries and candidates alike. If the embeddings
  were already sub-sampled by the data loader, pass ``stride=1``.
* Classification accuracy and retrieval precision are fractions in ``[0, 1]``.
* A metric that is undefined for the given data (e.g. Kendall's tau with fewer
  than two videos) is ``nan``, never an exception; malformed inputs raise
  :class:`ValueError`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor

__all__ = [
    "kendalls_tau",
    "retrieval_ap",
    "retrieval_ap_at",
    "phase_classification",
    "phase_progression",
    "progression_targets",
]

# Upper bound on the elements of one intermediate tensor (float64 -> 256 MiB).
_CHUNK_ELEMENTS = 1 << 25
_DISTANCES = ("sqeuclidean", "cosine")


# --------------------------------------------------------------------------- inputs


def _device_of(*groups: Sequence[ArrayLike]) -> torch.device:
    """The first CUDA device among the inputs, else CPU."""
    for group in groups:
        for x in group:
            if isinstance(x, torch.Tensor) and x.device.type != "cpu":
                return x.device
    return torch.device("cpu")


def _as_list(arrays: Sequence[ArrayLike], what: str, fn: str) -> list[ArrayLike]:
    if arrays is None or isinstance(arrays, (str, bytes)):
        raise ValueError(f"{fn}: {what} must be a list of per-video arrays, got {type(arrays)}")
    out = list(arrays)
    if not out:
        raise ValueError(f"{fn}: {what} is empty (no videos)")
    return out


def _embeddings(
    embs: Sequence[ArrayLike],
    device: torch.device,
    fn: str,
    what: str = "embs",
    convert: bool = True,
) -> list[torch.Tensor]:
    """Per-video tensors ``[N_i, E]`` on ``device``, all with the same ``E``; float64 if
    ``convert``, else in their own dtype (see :func:`_labelled_frames`)."""
    out = []
    dim = None
    for i, x in enumerate(_as_list(embs, what, fn)):
        t = torch.as_tensor(x)
        if t.ndim != 2:
            raise ValueError(
                f"{fn}: {what}[{i}] must be 2-D [frames, dim], got shape {tuple(t.shape)}"
            )
        if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
            raise ValueError(f"{fn}: {what}[{i}] has unsupported dtype {t.dtype}")
        if dim is None:
            dim = t.shape[1]
        elif t.shape[1] != dim:
            raise ValueError(
                f"{fn}: {what}[{i}] has embedding dim {t.shape[1]}, expected {dim} (as {what}[0])"
            )
        out.append(t.to(device=device, dtype=torch.float64) if convert else t.to(device))
    return out


def _labels(
    labels: Sequence[ArrayLike],
    embs: list[torch.Tensor],
    device: torch.device,
    fn: str,
    what: str = "labels",
    emb_what: str = "embs",
) -> list[torch.Tensor]:
    """Per-video int64 label tensors ``[N_i]``, checked against the embeddings' lengths."""
    labels = _as_list(labels, what, fn)
    if len(labels) != len(embs):
        raise ValueError(f"{fn}: {len(embs)} videos in {emb_what} but {len(labels)} in {what}")
    out = []
    for i, (y, x) in enumerate(zip(labels, embs)):
        t = torch.as_tensor(y)
        if t.ndim != 1:
            raise ValueError(f"{fn}: {what}[{i}] must be 1-D [frames], got shape {tuple(t.shape)}")
        if t.is_floating_point():
            if not torch.all(t == torch.round(t)):
                raise ValueError(f"{fn}: {what}[{i}] holds non-integer labels")
        elif t.dtype == torch.bool or t.is_complex():
            raise ValueError(f"{fn}: {what}[{i}] has unsupported dtype {t.dtype}")
        if t.shape[0] != x.shape[0]:
            raise ValueError(
                f"{fn}: video {i}: {emb_what}[{i}] has {x.shape[0]} frames but "
                f"{what}[{i}] has {t.shape[0]} labels"
            )
        out.append(t.to(device=device, dtype=torch.int64))
    return out


def _labelled_frames(
    embs: list[torch.Tensor], labels: list[torch.Tensor], stride: int = 1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validated videos concatenated: frames whose label is ``>= 0``, then every
    ``stride``-th of those per video. Returns float64 frames ``[M, E]``, labels ``[M]``
    and per-video kept counts ``[V]``; one pass over all videos, no per-video work."""
    device = labels[0].device
    num = len(embs)
    raw = torch.tensor([x.shape[0] for x in embs], dtype=torch.int64, device=device)
    if len({x.dtype for x in embs}) == 1:
        x = torch.cat(embs).to(torch.float64)
    else:
        x = torch.cat([e.to(torch.float64) for e in embs])
    y = torch.cat(labels)
    vid = torch.repeat_interleave(torch.arange(num, device=device), raw)
    keep = y >= 0
    if stride > 1:
        rank = torch.cumsum(keep, 0) - 1  # index among all kept frames
        kept = torch.zeros(num, dtype=torch.int64, device=device).index_add_(0, vid, keep.long())
        rank = rank - (torch.cumsum(kept, 0) - kept)[vid]  # index among the video's kept
        keep = keep & (rank % stride == 0)
    if bool(keep.all()):
        return x, y, raw
    lens = torch.bincount(vid[keep], minlength=num)
    return x[keep], y[keep], lens


def _check_stride(stride: int, fn: str) -> int:
    if isinstance(stride, bool) or int(stride) != stride or stride < 1:
        raise ValueError(f"{fn}: stride must be a positive integer, got {stride!r}")
    return int(stride)


def _check_distance(distance: str, fn: str) -> str:
    if distance not in _DISTANCES:
        raise ValueError(f"{fn}: distance must be one of {_DISTANCES}, got {distance!r}")
    return distance


def _check_fraction(fraction: float, fn: str) -> float:
    if not (isinstance(fraction, (int, float)) and 0.0 < float(fraction) <= 1.0):
        raise ValueError(f"{fn}: fraction must be in (0, 1], got {fraction!r}")
    return float(fraction)


def _pad(seqs: list[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``[N_i, E]`` tensors into ``[V, max N, E]`` (zeros) plus lengths ``[V]``."""
    lens = torch.tensor([s.shape[0] for s in seqs], dtype=torch.int64, device=device)
    lmax = max(int(lens.max()), 1)
    dim = seqs[0].shape[1]
    out = torch.zeros(len(seqs), lmax, dim, dtype=torch.float64, device=device)
    for i, s in enumerate(seqs):
        out[i, : s.shape[0]] = s
    return out, lens


def _length_buckets(lengths: list[int], ratio: float = 0.8) -> list[tuple[int, int]]:
    """Split lengths sorted in descending order into runs ``[start, end)`` whose shortest
    is at least ``ratio`` times their longest (bounds padding waste)."""
    out = []
    start = 0
    for i in range(1, len(lengths) + 1):
        if i == len(lengths) or lengths[i] < ratio * lengths[start]:
            out.append((start, i))
            start = i
    return out


def _normalise_rows(x: torch.Tensor) -> torch.Tensor:
    """L2-normalise the last dim; zero vectors stay zero (cosine distance 1 to everything)."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-300)


# --------------------------------------------------------------------------- nearest neighbours

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


# --------------------------------------------------------------------------- Kendall's tau


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


# --------------------------------------------------------------------------- retrieval


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
        raise ValueError(f"{fn}: k must be a positive integer, got {ks}")
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


# --------------------------------------------------------------------------- classification


def _first_videos(n: int, fraction: float) -> int:
    """Number of train videos used at ``fraction``: ``max(1, int(fraction * n))``."""
    return max(1, int(fraction * n))


class _LogisticObjective:
    """Mean log-loss plus ``0.5 * alpha * ||W||^2`` and its analytic gradient.

    Parameters are ``[cols, E + 1]`` (last column the unpenalised intercept). ``cols == 1``
    is binary logistic (``y`` the 0/1 indicator); otherwise softmax over ``cols`` classes.
    Scores are computed class-major (``[cols, n]``) so the softmax reductions run over
    the short class axis with the frames contiguous.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, cols: int, alpha: float) -> None:
        n = x.shape[0]
        self.xa = torch.cat([x, torch.ones_like(x[:, :1])], 1)  # [n, E+1]
        self.xa_t = self.xa.T  # [E+1, n]; a view: BLAS reads it transposed, no copy
        self.n = n
        self.cols = cols
        if cols == 1:
            self.target = (y == 1).to(torch.float64)  # [n]
            # sum_i t_i z_i = P . (t^T xa): the label term is linear in the parameters
            self.label_term = (self.target @ self.xa)[None, :]  # [1, E+1]
        else:
            onehot = torch.nn.functional.one_hot(y, cols).to(torch.float64)
            self.label_term = onehot.T @ self.xa  # [cols, E+1]
        self.penalty = torch.full_like(self.xa[0], alpha)
        self.penalty[-1] = 0.0

    def __call__(self, params: torch.Tensor) -> tuple[float, torch.Tensor]:
        z = params @ self.xa_t  # [cols, n]
        if self.cols == 1:
            loss = torch.nn.functional.softplus(z).sum()
            prob = torch.sigmoid(z)
        else:
            top = z.amax(0)
            prob = (z - top).exp_()
            norm = prob.sum(0)
            loss = (top + norm.log()).sum()
            prob /= norm
        loss = loss - (params * self.label_term).sum()
        reg = params * self.penalty
        grad = (prob @ self.xa - self.label_term) / self.n + reg
        return float(loss / self.n + 0.5 * (reg * params).sum()), grad


def _fit_logistic(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, c: float, max_iter: int, tol: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise scikit-learn's L2 logistic objective with preconditioned L-BFGS in float64.

    Objective: ``sum_i logloss_i + 0.5 / C * ||W||^2`` (intercept unpenalised),
    divided by ``n`` as scikit-learn does (same minimiser). Multinomial softmax for
    more than two classes; for two, one weight vector (binary logistic), exactly as
    scikit-learn parameterises it (the two regularisations differ). A small
    hand-written L-BFGS (two-loop recursion, backtracking Armijo line search) with
    analytic gradients: ``torch.optim`` would import ``torch._dynamo`` (~4 s). Its
    initial inverse-Hessian estimate is the inverse of the Hessian at zero
    (``h X^T X / n + alpha I`` per class, ``h = 1/4`` binary, ``1/C`` softmax, from the
    Gram matrix of at most 4096 frames), scaled as usual by ``s.y / y.H0.y``: this
    removes the feature correlations that slow plain L-BFGS down. Stops when the
    largest gradient entry is below ``tol``. Returns ``(W [E, cols], b [cols])``.
    """
    n, dim = x.shape
    cols = num_classes if num_classes > 2 else 1
    objective = _LogisticObjective(x, y, cols, 1.0 / (c * n))
    step_rows = max(1, -(-n // 4096))
    sub = objective.xa[::step_rows]
    curvature = 0.25 if cols == 1 else 1.0 / cols
    gram = (sub.T @ sub) * (curvature / sub.shape[0]) + torch.diag(objective.penalty)
    gram += torch.eye(dim + 1, dtype=gram.dtype, device=gram.device) * (
        1e-10 * float(gram.diagonal().mean()) + 1e-300
    )
    chol, info = torch.linalg.cholesky_ex(gram)
    if int(info) != 0:  # not positive definite (degenerate data): plain L-BFGS
        chol = None

    def precondition(v: torch.Tensor) -> torch.Tensor:
        return v if chol is None else torch.cholesky_solve(v.T, chol).T

    params = torch.zeros(cols, dim + 1, dtype=torch.float64, device=x.device)
    f, g = objective(params)
    history: list[tuple[torch.Tensor, torch.Tensor, float]] = []
    memory = 20
    for it in range(max_iter):
        if float(g.abs().max()) <= tol:
            break
        # Two-loop recursion: d = -H g.
        q = g.clone()
        coeffs = []
        for s, yv, rho in reversed(history):
            a = rho * float((s * q).sum())
            q -= a * yv
            coeffs.append(a)
        if history:
            s, yv, _ = history[-1]
            hy = precondition(yv)
            q = precondition(q) * (float((s * yv).sum()) / float((yv * hy).sum()))
        elif chol is not None:
            q = precondition(q)  # the Newton step at zero
        else:
            q /= max(float(g.abs().sum()), 1.0)  # first step: a unit-ish move
        for (s, yv, rho), a in zip(history, reversed(coeffs)):
            bcoef = rho * float((yv * q).sum())
            q += (a - bcoef) * s
        d = -q
        slope = float((g * d).sum())
        if slope >= 0:  # not a descent direction: restart from the preconditioned gradient
            history.clear()
            d = -precondition(g)
            slope = float((g * d).sum())
            if slope >= 0:
                d = -g / max(float(g.abs().sum()), 1.0)
                slope = float((g * d).sum())
        step = 1.0
        for _ in range(50):
            f_new, g_new = objective(params + step * d)
            if f_new <= f + 1e-4 * step * slope:
                break
            step *= 0.5
        else:
            break  # no decrease possible at this precision
        s_vec = step * d
        y_vec = g_new - g
        sy = float((s_vec * y_vec).sum())
        params = params + s_vec
        f_old, f, g = f, f_new, g_new
        if sy > 1e-12:
            history.append((s_vec, y_vec, 1.0 / sy))
            if len(history) > memory:
                history.pop(0)
        if abs(f_old - f) <= 1e-15 * max(abs(f_old), abs(f), 1.0) and it > 0:
            break
    return params[:, :dim].T, params[:, dim]


def _select_train(
    train_embs: Sequence[ArrayLike],
    train_labels: Sequence[ArrayLike],
    val_embs: Sequence[ArrayLike],
    val_labels: Sequence[ArrayLike],
    fraction: float,
    fn: str,
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], ...]:
    """Validated, label-filtered, concatenated ``(frames, labels, lengths)`` of train (its
    first videos at ``fraction``) and of val."""
    fraction = _check_fraction(fraction, fn)
    device = _device_of(train_embs, train_labels, val_embs, val_labels)
    tx = _embeddings(train_embs, device, fn, "train_embs", convert=False)
    ty = _labels(train_labels, tx, device, fn, "train_labels", "train_embs")
    vx = _embeddings(val_embs, device, fn, "val_embs", convert=False)
    vy = _labels(val_labels, vx, device, fn, "val_labels", "val_embs")
    if tx[0].shape[1] != vx[0].shape[1]:
        raise ValueError(
            f"{fn}: train embedding dim {tx[0].shape[1]} != val embedding dim {vx[0].shape[1]}"
        )
    n = _first_videos(len(tx), fraction)
    return _labelled_frames(tx[:n], ty[:n]), _labelled_frames(vx, vy)


def phase_classification(
    train_embs: Sequence[ArrayLike],
    train_labels: Sequence[ArrayLike],
    val_embs: Sequence[ArrayLike],
    val_labels: Sequence[ArrayLike],
    fraction: float = 1.0,
    *,
    c: float = 1.0,
    max_iter: int = 1000,
    tol: float = 1e-5,
) -> float:
    """Per-frame phase classification accuracy (a fraction in [0, 1]) of a linear probe.

    Multinomial logistic regression with scikit-learn's default L2 objective (C = 1,
    no feature standardisation) fitted by L-BFGS on the labelled frames of the first
    ``max(1, int(fraction * N))`` train videos; accuracy on all labelled val frames.
    Only classes present in the fitted frames can be predicted (as in scikit-learn);
    val frames of other classes count as errors. With a single train class every
    frame is predicted as that class. ``nan`` if no labelled val frames remain.
    """
    fn = "phase_classification"
    (x, y, _), (xv, yv, _) = _select_train(
        train_embs, train_labels, val_embs, val_labels, fraction, fn
    )
    if yv.numel() == 0:
        return math.nan
    if y.numel() == 0:
        raise ValueError(f"{fn}: no labelled frames in the selected train videos")
    classes, y_idx = torch.unique(y, sorted=True, return_inverse=True)
    if classes.numel() == 1:
        pred = classes.expand_as(yv)
    else:
        w, b = _fit_logistic(x, y_idx, int(classes.numel()), c, max_iter, tol)
        z = xv @ w + b
        pred_idx = (z[:, 0] > 0).long() if z.shape[1] == 1 else z.argmax(1)
        pred = classes[pred_idx]
    return float((pred == yv).to(torch.float64).mean())


# --------------------------------------------------------------------------- progression


def progression_targets(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Phase-progression regression targets ``[L, num_classes - 1]`` of one video.

    ``target[t, i] = (t - b_i) / L`` with ``b_i`` the last frame whose label is ``i``.
    If phase ``i`` is absent, ``b_i`` is the frame before the first frame with a
    label ``> i`` (where phase ``i`` would have ended in an ordered sequence), or
    ``L - 1`` when no later phase occurs either.
    """
    labels = torch.as_tensor(labels)
    length = labels.shape[0]
    device = labels.device
    t = torch.arange(length, device=device)
    phases = torch.arange(max(num_classes - 1, 0), device=device)
    is_phase = labels[None, :] == phases[:, None]  # [C-1, L]
    last = torch.where(is_phase, t[None, :], torch.full_like(t, -1)[None, :]).amax(1)
    later = labels[None, :] > phases[:, None]
    first_later = torch.where(later, t[None, :], torch.full_like(t, length)[None, :]).amin(1)
    boundary = torch.where(is_phase.any(1), last, first_later - 1)
    return (t[:, None] - boundary[None, :]).to(torch.float64) / max(length, 1)


def _batched_progression_targets(
    labels: torch.Tensor, lens: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """:func:`progression_targets` of consecutive videos at once: ``labels`` ``[N]`` (the
    videos' labels concatenated, none negative), ``lens`` ``[V]`` -> ``[N, C - 1]``."""
    device = labels.device
    num = lens.shape[0]
    phases = num_classes - 1
    vid = torch.repeat_interleave(torch.arange(num, device=device), lens)
    starts = torch.cumsum(lens, 0) - lens
    t = torch.arange(labels.shape[0], device=device) - starts[vid]
    # labels >= C - 1 all count as "later than every boundary": one extra bin
    slot = vid * num_classes + labels.clamp(max=phases)
    last = torch.full((num * num_classes,), -1, dtype=torch.int64, device=device)
    last.scatter_reduce_(0, slot, t, "amax")
    first = torch.full((num * num_classes,), 2**62, dtype=torch.int64, device=device)
    first.scatter_reduce_(0, slot, t, "amin")
    last = last.view(num, num_classes)[:, :phases]
    # first frame with a label > i: suffix minimum over the classes after i
    after = first.view(num, num_classes).flip(1).cummin(1).values.flip(1)[:, 1:]
    after = torch.minimum(after, lens[:, None])
    boundary = torch.where(last >= 0, last, after - 1)  # [V, C-1]
    length = lens.clamp_min(1).to(torch.float64)[vid, None]
    return (t[:, None] - boundary[vid]).to(torch.float64) / length


def _ols_fit(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least squares with intercept (centred, minimum-norm), like sklearn's LinearRegression.

    Well-conditioned problems (Gram eigenvalues within 1e9 of each other, so the normal
    equations lose at most ~1e-7 relative accuracy) are solved from the Gram matrix;
    others by SVD-based least squares.
    """
    x_mean = x.mean(0)
    y_mean = y.mean(0)
    xc = x - x_mean
    yc = y - y_mean
    gram = xc.T @ xc
    evals, evecs = torch.linalg.eigh(gram)
    if float(evals[0]) > 1e-9 * float(evals[-1]) > 0:
        w = evecs @ ((evecs.T @ (xc.T @ yc)) / evals[:, None])
    elif x.device.type == "cpu":
        w = torch.linalg.lstsq(xc, yc, driver="gelsd").solution
    else:  # CUDA lstsq only offers "gels" (full rank); the pseudo-inverse is min-norm too
        w = torch.linalg.pinv(xc) @ yc
    return w, y_mean - x_mean @ w


def phase_progression(
    train_embs: Sequence[ArrayLike],
    train_labels: Sequence[ArrayLike],
    val_embs: Sequence[ArrayLike],
    val_labels: Sequence[ArrayLike],
    num_classes: int,
    fraction: float = 1.0,
) -> float:
    """Mean R^2 on val frames of linear regressions predicting phase progression.

    Targets per :func:`progression_targets` on each label-filtered video (``t`` and
    ``L`` count kept frames), one per boundary ``i = 0..num_classes-2``; one OLS
    regression with intercept per target, fitted on the labelled frames of the first
    ``max(1, int(fraction * N))`` train videos. Targets whose val values are constant
    (R^2 undefined) are excluded from the mean; ``nan`` if none remain.
    """
    fn = "phase_progression"
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"{fn}: num_classes must be an integer >= 2, got {num_classes!r}")
    num_classes = int(num_classes)
    (x, y, lens), (xv, yv, vlens) = _select_train(
        train_embs, train_labels, val_embs, val_labels, fraction, fn
    )
    if x.shape[0] == 0:
        raise ValueError(f"{fn}: no labelled frames in the selected train videos")
    if xv.shape[0] == 0:
        return math.nan
    t = _batched_progression_targets(y, lens, num_classes)
    tv = _batched_progression_targets(yv, vlens, num_classes)
    w, b = _ols_fit(x, t)
    pred = xv @ w + b
    ss_res = ((tv - pred) ** 2).sum(0)
    ss_tot = ((tv - tv.mean(0)) ** 2).sum(0)
    ok = ss_tot > 1e-12 * (tv * tv).sum(0)  # constant targets (up to rounding): undefined
    if not bool(ok.any()):
        return math.nan
    return float((1.0 - ss_res[ok] / ss_tot[ok]).mean())
