"""Training losses as plain functions, looked up by name so new ones (e.g. TCC) plug in."""

from __future__ import annotations

from collections.abc import Callable

import torch

from mvf_lightning.losses.sequence_contrastive import NEGATIVES, sequence_contrastive_loss

LossFn = Callable[..., torch.Tensor]

LOSSES: dict[str, LossFn] = {"scl": sequence_contrastive_loss}


def get_loss(name: str) -> LossFn:
    """Return the loss function registered under ``name``; ValueError lists the valid names."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; valid names: {sorted(LOSSES)}") from None


__all__ = ["LOSSES", "NEGATIVES", "LossFn", "get_loss", "sequence_contrastive_loss"]
