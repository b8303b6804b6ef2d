"""Temporal Cycle Consistency (TCC, Dwibedi et al., CVPR 2019), deterministic alignment.

The V views of each of the B videos become N = B V sequences; every ordered pair (i, j),
i != j, is aligned at once as one [N, N, T, T] computation: each frame of i finds its soft
nearest neighbour in j, which must cycle back to where it started in i (mvformer.md, "Other
losses in the reference: TCC"). Masked frames are left out (the reference ignores masks); with
all-ones masks the result equals the reference's.

How it trains (:class:`TCC`): by default as the reference does (``configs/penn_tcc.yaml``):
one view per video, batches of videos of one action, on the embedding itself (no projection
head, no L2 normalisation), so that cycles run between different videos of the same action.
``views=2, embedding="projected"`` is our own variant: cycles between two time-augmented
views of each video, on the projected embedding SCL uses.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from mvf_lightning.data.contract import TrainingBatches
from mvf_lightning.errors import ConfigError
from mvf_lightning.losses.base import EMBEDDINGS, Embedding, SequenceLoss, check_inputs

LOSS_TYPES = ("regression_mse_var", "regression_mse", "regression_huber", "classification")
SIMILARITIES = ("l2", "cosine")


def _scaled_similarity(
    a: torch.Tensor, b: torch.Tensor, similarity: str, temperature: float
) -> torch.Tensor:
    """``a [..., T, D]``, ``b [..., S, D]`` -> ``[..., T, S]``: -squared distance ("l2") or
    dot product ("cosine"), divided by D and by the temperature."""
    channels = a.shape[-1]
    dot = a @ b.transpose(-1, -2)
    if similarity == "l2":
        norm_a = a.square().sum(-1).unsqueeze(-1)
        norm_b = b.square().sum(-1).unsqueeze(-2)
        sim = -(norm_a + norm_b - 2 * dot)
    else:
        sim = dot
    return sim / channels / temperature


def _check_settings(
    loss_type: str,
    similarity: str,
    temperature: float,
    label_smoothing: float,
    variance_lambda: float,
    huber_delta: float,
) -> None:
    if loss_type not in LOSS_TYPES:
        raise ConfigError(f"loss_type must be one of {list(LOSS_TYPES)}, got {loss_type!r}")
    if similarity not in SIMILARITIES:
        raise ConfigError(f"similarity must be one of {list(SIMILARITIES)}, got {similarity!r}")
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    if not 0 <= label_smoothing < 1:
        raise ConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if variance_lambda < 0:
        raise ConfigError(f"variance_lambda must be >= 0, got {variance_lambda}")
    if huber_delta <= 0:
        raise ConfigError(f"huber_delta must be > 0, got {huber_delta}")


def temporal_cycle_consistency_loss(
    embs: torch.Tensor,
    steps: torch.Tensor,
    seq_lens: torch.Tensor,
    masks: torch.Tensor,
    *,
    loss_type: str = "regression_mse_var",
    similarity: str = "l2",
    temperature: float = 0.1,
    label_smoothing: float = 0.1,
    variance_lambda: float = 0.001,
    huber_delta: float = 1.0,
    normalize_indices: bool = True,
) -> torch.Tensor:
    """TCC over all ordered pairs of the B V views, mean over every pair's anchor frames.

    embs [B, V, T, D] embeddings; steps [B, V, T] frame indices; seq_lens [B, V] video
    lengths; masks [B, V, T] (True = valid frame). A view is treated as the sequence of
    its valid frames only: masked frames are no neighbour candidates, no cycle targets and no
    anchors, and label smoothing spreads over the view's valid frames; views with fewer than
    two valid frames anchor no cycle. ``loss_type``: cycle-back regression
    (``regression_mse_var``, ``regression_mse``, ``regression_huber``) or ``classification``
    (cross-entropy between the smoothed labels and softmax of the cycle-back logits, as in
    TCC's paper; the reference's variant is a bug). ``huber_delta`` is the Huber loss's delta;
    the reference ignores it and always uses SmoothL1 with beta 1, which is Huber with delta 1
    (our default). ``normalize_indices`` divides frame indices by the video length. Computed
    in float32 (float64 stays float64) with autocast disabled; returns a scalar.
    """
    _check_settings(loss_type, similarity, temperature, label_smoothing, variance_lambda,
                    huber_delta)
    check_inputs(embs, steps, seq_lens, masks, views=None)
    b, v, t, d = embs.shape
    if t < 2:
        raise ConfigError(f"TCC needs at least 2 frames per view, got T = {t}")
    n = b * v
    if n < 2:
        raise ConfigError(
            "TCC aligns sequences with each other and a batch holds only one: train with "
            "data.batch_size >= 2 (one view per video) or model.loss.views: 2"
        )
    dtype = torch.float64 if embs.dtype == torch.float64 else torch.float32
    device = embs.device
    with torch.autocast(device_type=device.type, enabled=False):
        x = embs.reshape(n, t, d).to(dtype)
        valid = masks.reshape(n, t).to(torch.bool)
        counts = valid.sum(dim=1)
        # A view with no valid frame is aligned as if complete (keeps softmaxes finite); it
        # carries no weight below.
        candidates = valid | (counts == 0).unsqueeze(1)

        # Soft nearest neighbour in j of every frame of i, then similarity back to i's frames.
        x_i, x_j = x.unsqueeze(1), x.unsqueeze(0)  # [N, 1, T, D], [1, N, T, D]
        sim_ij = _scaled_similarity(x_i, x_j, similarity, temperature)  # [N, N, T, T]
        sim_ij = sim_ij.masked_fill(~candidates[None, :, None, :], -math.inf)
        neighbours = torch.softmax(sim_ij, dim=-1) @ x_j  # [N, N, T, D]
        logits = _scaled_similarity(neighbours, x_i, similarity, temperature)  # [N, N, T, T]
        in_i = candidates[:, None, None, :]
        logits = logits.masked_fill(~in_i, -math.inf)

        # Label-smoothed identity over the valid frames of i: (1 - T ls / (T - 1)) on the
        # diagonal plus ls / (T - 1) everywhere, T = number of valid frames.
        frames = counts.clamp(min=2).to(dtype)
        off = (label_smoothing / (frames - 1))[:, None, None]
        diagonal = (1 - frames * label_smoothing / (frames - 1))[:, None, None]
        eye = torch.eye(t, dtype=dtype, device=device)
        labels = (diagonal * eye + off * torch.ones_like(eye)) * valid[:, None, :]  # [N, T, T]
        labels = labels.unsqueeze(1)  # [N, 1, T, T]

        pair = ~torch.eye(n, dtype=torch.bool, device=device)
        rows = (
            pair[:, :, None]
            & valid[:, None, :]
            & (counts >= 2)[:, None, None]
            & (counts >= 1)[None, :, None]
        )  # [N, N, T]: which cycles count

        if loss_type == "classification":
            log_beta = torch.log_softmax(logits, dim=-1).masked_fill(~in_i, 0.0)
            terms = -(labels * log_beta).sum(dim=-1)
        else:
            indices = steps.reshape(n, t).to(dtype)
            if normalize_indices:
                indices = indices / seq_lens.reshape(n, 1).to(dtype)
            indices = indices[:, None, None, :]  # [N, 1, 1, T]
            beta = torch.softmax(logits, dim=-1)
            true = (indices * labels).sum(dim=-1)
            pred = (indices * beta).sum(dim=-1)
            if loss_type == "regression_mse_var":
                variance = ((indices - pred.unsqueeze(-1)).square() * beta).sum(dim=-1)
                log_var = torch.log(torch.where(rows, variance, torch.ones_like(variance)))
                terms = torch.exp(-log_var) * (true - pred).square() + variance_lambda * log_var
            elif loss_type == "regression_mse":
                terms = (pred - true).square()
            else:
                terms = F.huber_loss(
                    pred, true.expand_as(pred), reduction="none", delta=huber_delta
                )
        terms = torch.where(rows, terms, torch.zeros_like(terms))
        return terms.sum() / rows.sum().clamp(min=1).to(dtype)


class TCC(SequenceLoss):
    """Temporal Cycle Consistency (:func:`temporal_cycle_consistency_loss`) with its settings
    (defaults: the reference's, CARL's ``tcc_config.yml`` and ``tcc_transformer_config.yml``:
    one view per video in batches of one action, on the raw embedding)."""

    def __init__(
        self,
        views: Literal[1, 2] = 1,
        embedding: Embedding = "raw",
        loss_type: Literal[
            "regression_mse_var", "regression_mse", "regression_huber", "classification"
        ] = "regression_mse_var",
        similarity: Literal["l2", "cosine"] = "l2",
        temperature: float = 0.1,
        label_smoothing: float = 0.1,
        variance_lambda: float = 0.001,
        huber_delta: float = 1.0,
        normalize_indices: bool = True,
    ) -> None:
        """
        Args:
            views: 1 (the reference's): one view per video, cycles between the videos of a
                batch, which are of one action (``data.train_batches: auto`` follows); 2 (our
                variant): two time-augmented views per video, cycles between all of them.
            embedding: ``raw`` (the reference's: no projection head, no L2 normalisation),
                ``normalized`` or ``projected`` (SCL's projection head).
            loss_type: cycle-back regression (``regression_mse_var``, ``regression_mse``,
                ``regression_huber``) or ``classification``.
            similarity: ``l2`` (negative squared distance) or ``cosine`` (dot product).
            temperature: softmax temperature of the similarities (also divided by D).
            label_smoothing: share of the cycle label spread over the other frames.
            variance_lambda: weight of the log-variance term of ``regression_mse_var``.
            huber_delta: delta of ``regression_huber`` (the reference always uses 1).
            normalize_indices: regress frame index / video length instead of frame index.
        """
        _check_settings(loss_type, similarity, temperature, label_smoothing, variance_lambda,
                        huber_delta)
        if views not in (1, 2):
            raise ConfigError(f"views must be 1 or 2, got {views!r}")
        if embedding not in EMBEDDINGS:
            raise ConfigError(f"embedding must be one of {list(EMBEDDINGS)}, got {embedding!r}")
        self.views = int(views)
        self.embedding = embedding
        self.loss_type = loss_type
        self.similarity = similarity
        self.temperature = float(temperature)
        self.label_smoothing = float(label_smoothing)
        self.variance_lambda = float(variance_lambda)
        self.huber_delta = float(huber_delta)
        self.normalize_indices = bool(normalize_indices)

    def batches(self) -> TrainingBatches:
        """One view per video in same-action batches (the reference's), or two views."""
        return TrainingBatches(views=self.views, same_group=self.views == 1)

    def __call__(
        self,
        embs: torch.Tensor,
        steps: torch.Tensor,
        seq_lens: torch.Tensor,
        masks: torch.Tensor,
    ) -> torch.Tensor:
        # Any V: ``views`` says how batches are built, the cycles run between all B V views.
        check_inputs(embs, steps, seq_lens, masks, views=None)
        settings = {k: v for k, v in self.init_args().items() if k not in ("views", "embedding")}
        return temporal_cycle_consistency_loss(embs, steps, seq_lens, masks, **settings)
