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
    embs: Sequence[ArrayLike], device: torch.device, fn: str, what: str = "embs"
) -> list[torch.Tensor]:
    """Per-video float64 tensors ``[N_i, E]`` on ``device``, all with the same ``E``."""
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
                f"{fn}: {what}[{i}] has embedding dim {t.shape[1]}, expected {dim} "
                f"(as {what}[0])"
            )
        out.append(t.to(device=device, dtype=torch.float64))
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
        raise ValueError(
            f"{fn}: {len(embs)} videos in {emb_what} but {len(labels)} in {what}"
        )
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


def _drop_unlabelled(
    embs: list[torch.Tensor], labels: list[torch.Tensor]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Drop frames whose label is ``< 0`` from every video."""
    out_e, out_y = [], []
    for x, y in zip(embs, labels):
        keep = y >= 0
        out_e.append(x[keep])
        out_y.append(y[keep])
    return out_e, out_y


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
    lens = torch.tensor([lens_list[i] for i in order], dtype=torch.int64, device=device)
    if distance == "cosine":
        seqs = [_normalise_rows(x) for x in seqs]
        big = 3.0
    else:
        big = 4.0 * max(float((x * x).sum(-1).max()) if x.shape[0] else 0.0 for x in seqs) + 1.0
    buckets = _length_buckets([int(v) for v in lens])
    # Distances from one matmul: [-2q, 1] . [c, |c|^2] = |c|^2 - 2 q.c ranks candidates
    # like |q - c|^2 (cosine: [-q_hat, 1] . [c_hat, 0]). Padded candidate frames get a
    # constant larger than any real distance.
    qscale = -1.0 if distance == "cosine" else -2.0
    queries, cands = [], []
    for b0, b1 in buckets:
        feats, blens = _pad(seqs[b0:b1], device)
        valid = torch.arange(feats.shape[1], device=device)[None, :] < blens[:, None]
        extra = torch.zeros_like(feats[..., 0]) if distance == "cosine" else (feats * feats).sum(-1)
        extra = extra.masked_fill(~valid, big)
        queries.append(torch.cat([qscale * feats, torch.ones_like(feats[..., :1])], -1))
        cands.append(torch.cat([feats, extra[..., None]], -1).reshape(-1, feats.shape[2] + 1).T)
    widest = max(c.shape[1] for c in cands)
    small = torch.int16 if int(lens[0]) < 2**15 else torch.int32
    everyone = torch.arange(num, device=device)
    tau_sum = 0.0
    tau_count = 0
    for (b0, b1), qfeats in zip(buckets, queries):
        lq = qfeats.shape[1]
        if int(lens[b0]) < 2:  # shorter videos cannot give a defined tau as queries
            continue
        per_query = lq * max(widest, num * (lq - 1) // 2)
        chunk = max(1, _CHUNK_ELEMENTS // max(per_query, 1))
        ia, ib = torch.triu_indices(lq, lq, 1, device=device)
        for c0 in range(b0, b1, chunk):
            c1 = min(b1, c0 + chunk)
            q = qfeats[c0 - b0 : c1 - b0].reshape((c1 - c0) * lq, -1)
            nn = torch.empty(c1 - c0, lq, num, dtype=small, device=device)
            for (v0, v1), cand in zip(buckets, cands):
                dist = (q @ cand).view(c1 - c0, lq, v1 - v0, -1)  # [c, Lq, nb, Lb]
                nn[:, :, v0:v1] = dist.argmin(-1).to(small)
                del dist
            nn = nn.permute(0, 2, 1)  # [c, V, Lq]
            # Tau-b against the query index (no ties there): for query frames a < b,
            # S = sum sign(nn_b - nn_a) = concordant - discordant; untied pairs = sum |sign|.
            qlens = lens[c0:c1]
            pair_ok = (ib[None, :] < qlens[:, None]).to(small)[:, None, :]  # [c, 1, P]
            sgn = torch.sign(nn[..., ib] - nn[..., ia]) * pair_ok  # [c, V, P]
            s_ = sgn.sum(-1, dtype=torch.int64)
            untied = sgn.abs().sum(-1, dtype=torch.int64)
            del sgn, nn
            n0 = (qlens * (qlens - 1) // 2)[:, None].to(torch.float64)  # [c, 1]
            denom = torch.sqrt(n0 * untied.to(torch.float64))  # sqrt(n0 * (n0 - ties))
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
    xs = _embeddings(embs, device, fn)
    ys = _labels(labels, xs, device, fn)
    xs, ys = _drop_unlabelled(xs, ys)
    xs = [x[::stride] for x in xs]
    ys = [y[::stride] for y in ys]
    lens = torch.tensor([x.shape[0] for x in xs], dtype=torch.int64, device=device)
    total = int(lens.sum())
    if total == 0:
        return {k: math.nan for k in ks}
    feats = torch.cat(xs)  # [M, E]
    labs = torch.cat(ys)  # [M]
    owner = torch.repeat_interleave(torch.arange(len(xs), device=device), lens)  # [M]
    if distance == "cosine":
        feats = _normalise_rows(feats)
    # One matmul gives |c|^2 - 2 q.c (cosine: -q_hat.c_hat), which ranks like |q - c|^2.
    extra = torch.zeros_like(feats[:, 0]) if distance == "cosine" else (feats * feats).sum(-1)
    qscale = -1.0 if distance == "cosine" else -2.0
    queries = torch.cat([qscale * feats, torch.ones_like(feats[:, :1])], 1)
    cands = torch.cat([feats, extra[:, None]], 1).T  # [E+1, M]
    available = total - lens  # candidates per query video
    kmax = min(max(ks), total)
    hits = torch.zeros(total, kmax, dtype=torch.int64, device=device)
    bounds = [0] + torch.cumsum(lens, 0).tolist()
    rows = max(1, _CHUNK_ELEMENTS // total)
    v = 0
    while v < len(xs):  # row chunks aligned to whole query videos
        v_end = v + 1
        while v_end < len(xs) and bounds[v_end + 1] - bounds[v] <= rows:
            v_end += 1
        r0, r1 = bounds[v], bounds[v_end]
        if r1 > r0:
            dist = queries[r0:r1] @ cands  # [r, M]
            for u in range(v, v_end):  # a video is not its own candidate
                dist[bounds[u] - r0 : bounds[u + 1] - r0, bounds[u] : bounds[u + 1]] = math.inf
            idx = torch.topk(dist, kmax, dim=1, largest=False, sorted=True).indices
            del dist
            hits[r0:r1] = (labs[idx] == labs[r0:r1, None]).long()
        v = v_end
    cum = hits.cumsum(1)  # [M, kmax]
    avail_q = available[owner]  # [M]
    query_ok = (lens > 0) & (available > 0)
    out = {}
    for k in ks:
        kk = torch.clamp(avail_q, max=k).clamp_min(1)  # neighbours actually retrieved
        col = (kk - 1).clamp(max=kmax - 1)
        prec = cum.gather(1, col[:, None])[:, 0].to(torch.float64) / kk.to(torch.float64)
        per_video = torch.zeros(len(xs), dtype=torch.float64, device=device)
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


# --------------------------------------------------------------------------- classification


def _first_videos(n: int, fraction: float) -> int:
    """Number of train videos used at ``fraction``: ``max(1, int(fraction * n))``."""
    return max(1, int(fraction * n))


def _logistic_objective(
    params: torch.Tensor, x: torch.Tensor, target: torch.Tensor, alpha: float
) -> tuple[float, torch.Tensor]:
    """Value and analytic gradient of the mean log-loss plus ``0.5 * alpha * ||W||^2``.

    ``params`` is ``[E + 1, cols]`` (last row the unpenalised intercept). ``cols == 1``
    is binary logistic with ``target`` the 0/1 indicator ``[n, 1]``; otherwise softmax
    with one-hot ``target`` ``[n, cols]``.
    """
    n = x.shape[0]
    w, b = params[:-1], params[-1]
    z = x @ w + b
    if params.shape[1] == 1:
        sgn = 2.0 * target - 1.0
        loss = torch.nn.functional.softplus(-sgn * z).sum() / n
        dz = (torch.sigmoid(z) - target) / n
    else:
        logp = torch.log_softmax(z, dim=1)
        loss = -(target * logp).sum() / n
        dz = (logp.exp() - target) / n
    grad = torch.cat([x.T @ dz + alpha * w, dz.sum(0, keepdim=True)])
    return float(loss + 0.5 * alpha * (w * w).sum()), grad


def _fit_logistic(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, c: float, max_iter: int, tol: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise scikit-learn's L2 logistic objective with L-BFGS in float64.

    Objective: ``sum_i logloss_i + 0.5 / C * ||W||^2`` (intercept unpenalised),
    divided by ``n`` as scikit-learn does (same minimiser). Multinomial softmax for
    more than two classes; for two, one weight vector (binary logistic), exactly as
    scikit-learn parameterises it (the two regularisations differ). A small
    hand-written L-BFGS (two-loop recursion, backtracking Armijo line search) with
    analytic gradients: ``torch.optim`` would import ``torch._dynamo`` (~4 s).
    Stops when the largest gradient entry is below ``tol``.
    """
    n, dim = x.shape
    cols = num_classes if num_classes > 2 else 1
    if cols == 1:
        target = (y == 1).to(torch.float64)[:, None]
    else:
        target = torch.nn.functional.one_hot(y, num_classes).to(torch.float64)
    alpha = 1.0 / (c * n)
    params = torch.zeros(dim + 1, cols, dtype=torch.float64, device=x.device)
    f, g = _logistic_objective(params, x, target, alpha)
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
            q *= float((s * yv).sum()) / float((yv * yv).sum())
        else:
            q /= max(float(g.abs().sum()), 1.0)  # first step: a unit-ish move
        for (s, yv, rho), a in zip(history, reversed(coeffs)):
            bcoef = rho * float((yv * q).sum())
            q += (a - bcoef) * s
        d = -q
        slope = float((g * d).sum())
        if slope >= 0:  # not a descent direction: restart from steepest descent
            history.clear()
            d = -g / max(float(g.abs().sum()), 1.0)
            slope = float((g * d).sum())
        step = 1.0
        for _ in range(50):
            f_new, g_new = _logistic_objective(params + step * d, x, target, alpha)
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
    return params[:dim], params[dim]


def _select_train(
    train_embs: Sequence[ArrayLike],
    train_labels: Sequence[ArrayLike],
    val_embs: Sequence[ArrayLike],
    val_labels: Sequence[ArrayLike],
    fraction: float,
    fn: str,
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Validated, label-filtered tensors; train restricted to its first videos at ``fraction``."""
    fraction = _check_fraction(fraction, fn)
    device = _device_of(train_embs, train_labels, val_embs, val_labels)
    tx = _embeddings(train_embs, device, fn, "train_embs")
    ty = _labels(train_labels, tx, device, fn, "train_labels", "train_embs")
    vx = _embeddings(val_embs, device, fn, "val_embs")
    vy = _labels(val_labels, vx, device, fn, "val_labels", "val_embs")
    if tx[0].shape[1] != vx[0].shape[1]:
        raise ValueError(
            f"{fn}: train embedding dim {tx[0].shape[1]} != val embedding dim {vx[0].shape[1]}"
        )
    n = _first_videos(len(tx), fraction)
    tx, ty = _drop_unlabelled(tx[:n], ty[:n])
    vx, vy = _drop_unlabelled(vx, vy)
    return tx, ty, vx, vy


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
    tx, ty, vx, vy = _select_train(train_embs, train_labels, val_embs, val_labels, fraction, fn)
    x = torch.cat(tx)
    y = torch.cat(ty)
    xv = torch.cat(vx)
    yv = torch.cat(vy)
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


def _ols_fit(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least squares with intercept (centred, minimum-norm), like sklearn's LinearRegression."""
    x_mean = x.mean(0)
    y_mean = y.mean(0)
    xc = x - x_mean
    yc = y - y_mean
    if x.device.type == "cpu":
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
    tx, ty, vx, vy = _select_train(train_embs, train_labels, val_embs, val_labels, fraction, fn)
    x = torch.cat(tx)
    if x.shape[0] == 0:
        raise ValueError(f"{fn}: no labelled frames in the selected train videos")
    xv = torch.cat(vx)
    if xv.shape[0] == 0:
        return math.nan
    t = torch.cat([progression_targets(y, num_classes) for y in ty])
    tv = torch.cat([progression_targets(y, num_classes) for y in vy])
    w, b = _ols_fit(x, t)
    pred = xv @ w + b
    ss_res = ((tv - pred) ** 2).sum(0)
    ss_tot = ((tv - tv.mean(0)) ** 2).sum(0)
    ok = ss_tot > 1e-12 * (tv * tv).sum(0)  # constant targets (up to rounding): undefined
    if not bool(ok.any()):
        return math.nan
    return float((1.0 - ss_res[ok] / ss_tot[ok]).mean())
