"""Supervised per-frame phase classification (the reference's ``algos/classification.py``):
the upper bound that self-supervised methods are compared with, on the same evaluation.

A linear head on the per-frame embedding (no projection head, not L2-normalised) predicts
each frame's phase; the loss is the cross-entropy over the frames whose label is known (>= 0)
and whose mask is set, the mean weighted by the mask, as the reference computes it. Training
batches carry the frames' phase labels (one time-augmented view per video).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mvf_lightning.data.contract import TrainingBatches
from mvf_lightning.errors import ConfigError, DataError
from mvf_lightning.losses.base import SequenceLoss, check_inputs

__all__ = ["Classification", "phase_classification_loss"]


def phase_classification_loss(
    logits: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor
) -> torch.Tensor:
    """``logits [..., C]``, ``labels [...]`` (-1: unknown), ``masks [...]`` -> the cross-entropy
    of the labelled frames, weighted by the mask and divided by the mask's sum over them."""
    valid = labels >= 0
    if not bool(valid.any()):
        return logits.sum() * 0.0  # nothing labelled in this batch: no gradient, no NaN
    weights = masks[valid].to(logits.dtype)
    losses = F.cross_entropy(logits[valid], labels[valid].long(), reduction="none")
    return (losses * weights).sum() / weights.sum().clamp_min(1e-12)


class Classification(SequenceLoss):
    """:func:`phase_classification_loss` of a linear head (``embedding dim -> num_classes``,
    trained with the model) over one time-augmented view per video with its phase labels."""

    embedding = "raw"

    def __init__(self, num_classes: int = 6) -> None:
        """
        Args:
            num_classes: phases the head predicts: at least the largest label + 1 of the
                training set (Penn Action: 6, its most phases; FineGym: 99 or 288).
        """
        if int(num_classes) < 2:
            raise ConfigError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes = int(num_classes)

    def batches(self) -> TrainingBatches:
        """One time-augmented view per video, with its frames' phase labels."""
        return TrainingBatches(views=1, labels=True)

    def head(self, embedding_dim: int) -> nn.Module:
        """The linear classifier ``embedding_dim -> num_classes``."""
        return nn.Linear(embedding_dim, self.num_classes)

    def __call__(
        self,
        embs: torch.Tensor,
        steps: torch.Tensor,
        seq_lens: torch.Tensor,
        masks: torch.Tensor,
        *,
        labels: torch.Tensor | None = None,
        head: nn.Module | None = None,
    ) -> torch.Tensor:
        check_inputs(embs, steps, seq_lens, masks, views=1)
        if labels is None or head is None:
            raise DataError(
                "Classification trains a head on phase labels: it needs labels= (training "
                "batches with labels) and head= (the module of Classification.head)"
            )
        if tuple(labels.shape) != tuple(masks.shape):
            raise ValueError(f"labels must have shape {list(masks.shape)}, got "
                             f"{list(labels.shape)}")
        top = int(labels.max())
        if top >= self.num_classes:
            raise ConfigError(f"model.loss.num_classes={self.num_classes} but a training label "
                              f"is {top}: raise num_classes to at least {top + 1}")
        return phase_classification_loss(head(embs), labels, masks)
