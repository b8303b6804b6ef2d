"""Phase classification by the reference's FineGym probe: one linear layer trained by SGD.

Procedure (``mvformer.md``, "Phase classification, FineGym"): a linear map ``E -> classes``
trained with cross-entropy by SGD (momentum 0.9, weight decay 1e-6 on weights and bias,
learning rate ``lr (1 + cos(pi e / epochs)) / 2`` during epoch ``e``) for 100 epochs on
mini-batches of 10 train videos (all their labelled frames; the loss is the mean over
those frames), shuffled each epoch, the last incomplete batch dropped. The train subset is
the first ``max(batch_videos * world_size, int(f N))`` videos in the given order (sorted
event ids for FineGym). The value is the frame accuracy on the labelled val frames after
the last epoch.

Randomness, fixed by ``seed`` (a CPU ``torch.Generator``): first the weights
``U(-1/sqrt(E), 1/sqrt(E))`` ``[classes, E]``, then the bias ``[classes]`` likewise
(``nn.Linear``'s default initialisation), then one ``torch.randperm(n)`` of the train
videos per epoch. All frames stay in memory on the inputs' device; each step is one
gather and two matrix products (no Python loop over frames).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ...errors import ConfigError, DataError
from ._inputs import (
    ArrayLike,
    _check_fraction,
    _device_of,
    _embeddings,
    _labels,
)


@dataclass(frozen=True)
class SGDProbeSettings:
    """Hyperparameters of the FineGym SGD probe (defaults: the reference's)."""

    lr: float = 50.0
    epochs: int = 100
    momentum: float = 0.9
    weight_decay: float = 1e-6
    batch_videos: int = 10
    seed: int = 0
    world_size: int = 1
    """GPUs of the reference's run: the train subset has at least ``batch_videos`` per GPU."""


def probe_train_videos(n: int, fraction: float, settings: SGDProbeSettings) -> int:
    """Train videos used at ``fraction``: ``max(batch_videos * world_size, int(f n))`` (<= n)."""
    return min(n, max(settings.batch_videos * settings.world_size, int(fraction * n)))


def lr_at_epoch(epoch: int, settings: SGDProbeSettings) -> float:
    """Per-epoch cosine schedule: ``lr (1 + cos(pi e / epochs)) / 2``."""
    return settings.lr * (1.0 + math.cos(math.pi * epoch / settings.epochs)) / 2.0


def init_linear(
    dim: int, num_classes: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 ``(W [classes, E], b [classes])`` drawn like ``nn.Linear``'s default."""
    bound = 1.0 / math.sqrt(dim)
    w = (torch.rand(num_classes, dim, generator=generator, dtype=torch.float64) * 2 - 1) * bound
    b = (torch.rand(num_classes, generator=generator, dtype=torch.float64) * 2 - 1) * bound
    return w, b


def _frames_in(
    embs: list[torch.Tensor], labels: list[torch.Tensor], dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Labelled frames of all videos concatenated in ``dtype`` (no float64 copy of a
    FineGym-sized set), their labels and per-video counts ``[V]``."""
    x = torch.cat([e.to(dtype) for e in embs])
    y = torch.cat(labels)
    vid = torch.repeat_interleave(
        torch.arange(len(embs), device=y.device),
        torch.tensor([e.shape[0] for e in embs], device=y.device),
    )
    keep = y >= 0
    return x[keep], y[keep], torch.bincount(vid[keep], minlength=len(embs))


def phase_classification_sgd(
    train_embs: Sequence[ArrayLike],
    train_labels: Sequence[ArrayLike],
    val_embs: Sequence[ArrayLike],
    val_labels: Sequence[ArrayLike],
    fraction: float = 1.0,
    *,
    num_classes: int | None = None,
    settings: SGDProbeSettings = SGDProbeSettings(),
    dtype: torch.dtype = torch.float32,
) -> float:
    """Val frame accuracy (a fraction in [0, 1]) of the SGD linear probe; see the module doc.

    ``num_classes`` is the probe's output width (FineGym: 99 or 288); default: the largest
    label + 1. Frames labelled < 0 are dropped first. ``nan`` if no labelled val frames.
    Fewer train videos than one batch: no step is taken (the initial weights are scored).
    """
    fn = "phase_classification_sgd"
    fraction = _check_fraction(fraction, fn)
    if settings.batch_videos < 1 or settings.epochs < 1:
        raise ConfigError(f"{fn}: batch_videos and epochs must be >= 1, got {settings}")
    device = _device_of(train_embs, train_labels, val_embs, val_labels)
    tx = _embeddings(train_embs, device, fn, "train_embs", convert=False)
    ty = _labels(train_labels, tx, device, fn, "train_labels", "train_embs")
    vx = _embeddings(val_embs, device, fn, "val_embs", convert=False)
    vy = _labels(val_labels, vx, device, fn, "val_labels", "val_embs")
    dim = tx[0].shape[1]
    if dim != vx[0].shape[1]:
        raise DataError(f"{fn}: train embedding dim {dim} != val embedding dim {vx[0].shape[1]}")
    n = probe_train_videos(len(tx), fraction, settings)
    x, y, lens = _frames_in(tx[:n], ty[:n], dtype)
    xv, yv, _ = _frames_in(vx, vy, dtype)
    if yv.numel() == 0:
        return math.nan
    top = int(max(int(y.max()) if y.numel() else -1, int(yv.max())))
    classes = top + 1 if num_classes is None else int(num_classes)
    if classes < 1 or top >= classes:
        raise DataError(f"{fn}: labels go up to {top} but num_classes is {num_classes}")

    generator = torch.Generator().manual_seed(int(settings.seed))
    w64, b64 = init_linear(dim, classes, generator)
    w, b = w64.to(device, dtype), b64.to(device, dtype)
    buf_w = buf_b = None
    lens_cpu = lens.cpu()
    starts = torch.cumsum(lens_cpu, 0) - lens_cpu
    num_batches = n // settings.batch_videos
    wd, momentum = settings.weight_decay, settings.momentum
    for epoch in range(settings.epochs):
        lr = lr_at_epoch(epoch, settings)
        perm = torch.randperm(n, generator=generator)
        if num_batches == 0:
            continue
        plens = lens_cpu[perm]
        ends = torch.cumsum(plens, 0)
        # frames of the permuted videos, video after video: one gather index per epoch
        order = torch.repeat_interleave(starts[perm] - (ends - plens), plens)
        order = (order + torch.arange(int(ends[-1]))).to(device)
        cuts = [0] + ends[settings.batch_videos - 1 :: settings.batch_videos].tolist()
        for k in range(num_batches):
            lo, hi = cuts[k], cuts[k + 1]
            if hi == lo:  # no labelled frame in these videos: no loss, no step
                continue
            idx = order[lo:hi]
            xb, yb = x[idx], y[idx]
            prob = torch.softmax(xb @ w.T + b, dim=1)
            prob[torch.arange(hi - lo, device=device), yb] -= 1.0
            prob /= hi - lo
            grad_w = prob.T @ xb + wd * w
            grad_b = prob.sum(0) + wd * b
            if buf_w is None:
                buf_w, buf_b = grad_w, grad_b
            else:
                buf_w = buf_w.mul_(momentum).add_(grad_w)
                buf_b = buf_b.mul_(momentum).add_(grad_b)
            w = w - lr * buf_w
            b = b - lr * buf_b
    pred = (xv @ w.T + b).argmax(1)
    return float((pred == yv).to(torch.float64).mean())
