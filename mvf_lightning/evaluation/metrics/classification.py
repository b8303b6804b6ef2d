"""Phase classification: the logistic-regression probe :func:`phase_classification` (Penn
Action, Pouring) and the metric :class:`PhaseClassification` (with FineGym's SGD probe too)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from ...errors import ConfigError, DataError
from ._inputs import ArrayLike, _check_fraction, _select_train
from .base import Video, VideoMetric, top_label, with_labels
from .sgd_probe import SGDProbeSettings, phase_classification_sgd, probe_train_videos

if TYPE_CHECKING:
    from ..protocol import EvalProtocol, SetSpec


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
        raise DataError(f"{fn}: no labelled frames in the selected train videos")
    classes, y_idx = torch.unique(y, sorted=True, return_inverse=True)
    if classes.numel() == 1:
        pred = classes.expand_as(yv)
    else:
        w, b = _fit_logistic(x, y_idx, int(classes.numel()), c, max_iter, tol)
        z = xv @ w + b
        pred_idx = (z[:, 0] > 0).long() if z.shape[1] == 1 else z.argmax(1)
        pred = classes[pred_idx]
    return float((pred == yv).to(torch.float64).mean())



PROBES = ("logreg", "sgd")


class PhaseClassification(VideoMetric):
    """Phase classification accuracy of a linear probe fitted on the first
    ``max(1, int(fraction N))`` train videos (``logreg``, :func:`phase_classification`) or
    FineGym's SGD probe on its train subset (``sgd``, :func:`phase_classification_sgd`),
    scored on every labelled val frame.

    Args:
        fraction: share of the train videos (in ``train_order``) the probe is fitted on.
        probe: ``logreg`` (Penn Action, Pouring) or ``sgd`` (FineGym).
        num_classes: the SGD probe's width (FineGym 99 / 288); default: largest label + 1.
        sgd: the SGD probe's settings.
        train_order: see :class:`~.base.VideoMetric`.
    """

    def __init__(self, fraction: float = 1.0, probe: str = "logreg", *,
                 num_classes: int | None = None, sgd: SGDProbeSettings | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fraction = _check_fraction(fraction, "PhaseClassification")
        if probe not in PROBES:
            raise ConfigError(f"PhaseClassification: probe must be one of {PROBES}, got {probe!r}")
        self.probe = probe
        self.num_classes = num_classes
        self.sgd = sgd or SGDProbeSettings()

    def score(self, train: list[Video], val: list[Video]) -> float | None:
        if not val or not with_labels(val) or not with_labels(train):
            return None
        args = ([v.embeddings for v in train], [v.labels for v in train],
                [v.embeddings for v in val], [v.labels for v in val])
        if self.probe == "sgd":
            if not with_labels(train[: probe_train_videos(len(train), self.fraction, self.sgd)]):
                return None
            top = top_label(train + val)
            width = max(self.num_classes or 0, top + 1)
            return phase_classification_sgd(*args, self.fraction, num_classes=width,
                                            settings=self.sgd)
        if not with_labels(train[: max(1, int(self.fraction * len(train)))]):
            return None
        return phase_classification(*args, fraction=self.fraction)

    @classmethod
    def names(cls, protocol: EvalProtocol) -> list[str]:
        return [protocol.classification_name(f) for f in protocol.fractions]

    @classmethod
    def for_protocol(cls, protocol: EvalProtocol, spec: SetSpec | None) -> dict[str, VideoMetric]:
        order = spec.train_ids if spec is not None and spec.train_ids else None
        width = spec.num_classes if spec is not None and spec.num_classes else None
        return {
            protocol.classification_name(f): cls(
                f, protocol.probe, num_classes=width, sgd=protocol.sgd, train_order=order
            )
            for f in protocol.fractions
        }
