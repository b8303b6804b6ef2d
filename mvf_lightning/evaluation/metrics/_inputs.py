"""Input validation and frame selection shared by every metric: per-video arrays to
validated tensors, the label / stride rule, the "first videos" of a train fraction."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ...errors import ConfigError

ArrayLike = np.ndarray | torch.Tensor

# Upper bound on the elements of one intermediate tensor (float64 -> 256 MiB).
_CHUNK_ELEMENTS = 1 << 25
_DISTANCES = ("sqeuclidean", "cosine")


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
        raise ConfigError(f"{fn}: stride must be a positive integer, got {stride!r}")
    return int(stride)


def _check_distance(distance: str, fn: str) -> str:
    if distance not in _DISTANCES:
        raise ConfigError(f"{fn}: distance must be one of {_DISTANCES}, got {distance!r}")
    return distance


def _check_fraction(fraction: float, fn: str) -> float:
    if not (isinstance(fraction, (int, float)) and 0.0 < float(fraction) <= 1.0):
        raise ConfigError(f"{fn}: fraction must be in (0, 1], got {fraction!r}")
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


def _first_videos(n: int, fraction: float) -> int:
    """Number of train videos used at ``fraction``: ``max(1, int(fraction * n))``."""
    return max(1, int(fraction * n))


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

