"""Sequence contrastive loss (SCL) between two temporally augmented views of each video.

Implemented as one vectorised log-sum-exp computation over all ``2*B*T`` frames so it
stays finite under mixed precision (the reference's exp/divide form can give NaN in fp16).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from mvf_lightning.errors import ConfigError
from mvf_lightning.losses.base import SequenceLoss, check_inputs

NEGATIVES = ("single_noself", "batch_noself", "single", "batch")

_MASKED_DISTANCE = 1e6
_MASKED_WEIGHT = 1e-6
_EPS = 1e-6


def sequence_contrastive_loss(
    embs: torch.Tensor,
    steps: torch.Tensor,
    seq_lens: torch.Tensor,
    masks: torch.Tensor,
    *,
    temperature: float = 0.1,
    label_variance: float = 10.0,
    negatives: str = "single_noself",
) -> torch.Tensor:
    """SCL: KL between Gaussian time-distance targets and softmax over frame similarities.

    embs [B, 2, T, D] projected, L2-normalised; steps [B, 2, T] clamped frame indices;
    seq_lens [B, 2] video lengths; masks [B, 2, T] (True = valid frame). ``negatives``
    picks the denominator: "single" (same video), "batch" (all videos), with "_noself"
    leaving out frames of the anchor's own view. Computed in float32 (float64 stays
    float64) with autocast disabled; returns a scalar.
    """
    if negatives not in NEGATIVES:
        raise ConfigError(f"negatives must be one of {list(NEGATIVES)}, got {negatives!r}")
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    if label_variance <= 0:
        raise ConfigError(f"label_variance must be > 0, got {label_variance}")
    check_inputs(embs, steps, seq_lens, masks)

    b, _, t, d = embs.shape
    n = 2 * b * t
    dtype = torch.float64 if embs.dtype == torch.float64 else torch.float32
    device = embs.device
    with torch.autocast(device_type=device.type, enabled=False):
        z = embs.reshape(n, d).to(dtype)
        s = steps.reshape(n).to(dtype)
        lens = seq_lens.to(dtype).repeat_interleave(t, dim=1).reshape(n)
        valid = masks.reshape(n).to(torch.bool)
        pair_valid = valid[:, None] & valid[None, :]

        frame = torch.arange(n, device=device)
        video = frame // (2 * t)
        view = frame // t  # unique per (video, view)
        same_video = video[:, None] == video[None, :]
        same_view = view[:, None] == view[None, :]
        cross_view = same_video & ~same_view

        # Targets: Gaussian of the time distance over the other view of the same video,
        # normalised by a log-softmax; masked or non-target entries are exactly zero.
        dist = (s[:, None] / lens[:, None] * lens[None, :] - s[None, :]).abs()
        dist = dist.masked_fill(~pair_valid, _MASKED_DISTANCE)
        target_logits = -dist.square() / (2.0 * label_variance)
        target_logits = target_logits.masked_fill(~(cross_view & pair_valid), -math.inf)
        has_target = torch.isfinite(target_logits).any(dim=1, keepdim=True)
        log_targets = torch.log_softmax(target_logits.masked_fill(~has_target, 0.0), dim=1)
        is_target = torch.isfinite(target_logits)
        log_targets = log_targets.masked_fill(~is_target, 0.0)
        targets = log_targets.exp() * is_target

        # Denominator weights as log-weights: 0 (included), -inf (excluded), log 1e-6 (masked).
        included = same_video if negatives.startswith("single") else torch.ones_like(same_video)
        if negatives.endswith("_noself"):
            included = included & ~same_view
        log_weights = torch.zeros((n, n), dtype=dtype, device=device)
        log_weights = log_weights.masked_fill(~included, -math.inf)
        log_weights = log_weights.masked_fill(~pair_valid, math.log(_MASKED_WEIGHT))

        logits = z @ z.T / temperature
        log_p = logits - torch.logsumexp(logits + log_weights, dim=1, keepdim=True)
        log_p_eps = torch.logaddexp(log_p, torch.full_like(log_p, math.log(_EPS)))

        terms = targets * (log_targets - log_p_eps) * pair_valid
        return terms.sum() / valid.sum().clamp(min=1).to(dtype)


class SCL(SequenceLoss):
    """CARL's sequence contrastive loss (:func:`sequence_contrastive_loss`) with its settings."""

    def __init__(
        self,
        temperature: float = 0.1,
        label_variance: float = 10.0,
        negatives: Literal["single_noself", "batch_noself", "single", "batch"] = "single_noself",
    ) -> None:
        """
        Args:
            temperature: softmax temperature of the frame similarities.
            label_variance: variance (sigma^2) of the Gaussian time-distance targets.
            negatives: denominator frames: ``single`` (same video) or ``batch`` (all videos),
                ``_noself`` leaving out the anchor's own view.
        """
        if negatives not in NEGATIVES:
            raise ConfigError(f"negatives must be one of {list(NEGATIVES)}, got {negatives!r}")
        if temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        if label_variance <= 0:
            raise ConfigError(f"label_variance must be > 0, got {label_variance}")
        self.temperature = float(temperature)
        self.label_variance = float(label_variance)
        self.negatives = negatives

    def __call__(
        self,
        embs: torch.Tensor,
        steps: torch.Tensor,
        seq_lens: torch.Tensor,
        masks: torch.Tensor,
    ) -> torch.Tensor:
        return sequence_contrastive_loss(
            embs, steps, seq_lens, masks, temperature=self.temperature,
            label_variance=self.label_variance, negatives=self.negatives,
        )
