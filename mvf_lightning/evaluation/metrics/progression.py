"""Phase progression, linear regressions of the time since each phase boundary: the kernel
:func:`phase_progression` and the metric :class:`PhaseProgression`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from ...errors import ConfigError, DataError
from ._inputs import ArrayLike, _check_fraction, _select_train
from .base import Video, VideoMetric, top_label, with_labels

if TYPE_CHECKING:
    from ..protocol import EvalProtocol, SetSpec


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
        raise ConfigError(f"{fn}: num_classes must be an integer >= 2, got {num_classes!r}")
    num_classes = int(num_classes)
    (x, y, lens), (xv, yv, vlens) = _select_train(
        train_embs, train_labels, val_embs, val_labels, fraction, fn
    )
    if x.shape[0] == 0:
        raise DataError(f"{fn}: no labelled frames in the selected train videos")
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


class PhaseProgression(VideoMetric):
    """:func:`phase_progression`: mean R^2 on the labelled val frames of linear regressions
    of phase progression fitted on the first ``max(1, int(fraction N))`` train videos.

    Args:
        num_classes: phase count of the set (targets per boundary); default: largest label
            + 1 among the videos.
        fraction: share of the train videos (in ``train_order``) the regressions are fitted on.
        train_order: see :class:`~.base.VideoMetric`.
    """

    def __init__(self, num_classes: int | None = None, fraction: float = 1.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.fraction = _check_fraction(fraction, "PhaseProgression")

    def score(self, train: list[Video], val: list[Video]) -> float | None:
        if not val or not with_labels(val) or not with_labels(train):
            return None
        num_classes = self.num_classes or top_label(train + val) + 1
        if num_classes < 2:
            return None
        return phase_progression(
            [v.embeddings for v in train], [v.labels for v in train],
            [v.embeddings for v in val], [v.labels for v in val],
            num_classes=num_classes, fraction=self.fraction,
        )

    @classmethod
    def names(cls, protocol: EvalProtocol) -> list[str]:
        return ["phase_progression"]

    @classmethod
    def for_protocol(cls, protocol: EvalProtocol, spec: SetSpec | None) -> dict[str, VideoMetric]:
        order = spec.train_ids if spec is not None and spec.train_ids else None
        width = spec.num_classes if spec is not None and spec.num_classes else None
        return {"phase_progression": cls(width, train_order=order)}
