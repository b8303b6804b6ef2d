"""Time-Contrastive Network loss (TCN, Sermanet et al. 2018; the TCC paper's baseline), as the
reference trains it (its ``algos/tcn.py`` and ``configs/tcn_config.yml``, ``mvformer.md``).

Each training video gives one view of ``T`` frames laid out anchor, positive, anchor,
positive, ...: ``T / 2`` anchor steps from the reference's ``offset_uniform`` sampling, each
followed by a positive step drawn uniformly from ``[step - positive_window, step - 1]``. Per
video, the n-pairs loss: cross-entropy of the anchor-positive similarity matrix (plain dot
products, no temperature) with the diagonal as labels, plus ``0.25 * reg_lambda * (mean
||anchor||^2 + mean ||positive||^2)``; the batch loss is the mean over videos. Like the
reference, every anchor and positive takes part (masks are not used: a step before the
video's start is clamped to its first frame).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mvf_lightning.data.contract import TrainingBatches
from mvf_lightning.errors import ConfigError
from mvf_lightning.losses.base import SequenceLoss, check_inputs

__all__ = ["TCN", "time_contrastive_loss"]


def time_contrastive_loss(embs: torch.Tensor, *, reg_lambda: float = 0.002) -> torch.Tensor:
    """The mean over the batch of each video's n-pairs loss.

    ``embs [B, 2n, D]``: anchor embeddings at even positions, each one's positive at the next
    odd position. Per video: ``CE(anchors @ positives^T, labels = 0..n-1)`` (mean over the n
    anchors) ``+ 0.25 * reg_lambda * (mean_i ||anchor_i||^2 + mean_i ||positive_i||^2)``.
    """
    if embs.dim() != 3 or embs.shape[1] % 2 or embs.shape[1] == 0:
        raise ValueError(
            f"embs must be [B, 2n, D] (anchor and positive interleaved), got {list(embs.shape)}"
        )
    anchors, positives = embs[:, 0::2], embs[:, 1::2]  # [B, n, D]
    n = anchors.shape[1]
    similarity = anchors @ positives.transpose(1, 2)  # [B, n, n]
    labels = torch.arange(n, device=embs.device).expand(embs.shape[0], n)
    xent = F.cross_entropy(similarity.transpose(1, 2), labels, reduction="none").mean(1)  # [B]
    reg = anchors.square().sum(-1).mean(1) + positives.square().sum(-1).mean(1)  # [B]
    return (xent + 0.25 * reg_lambda * reg).mean()


class TCN(SequenceLoss):
    """:func:`time_contrastive_loss` on one view per video of anchor/positive pairs, on the
    L2-normalised embedding without projection head (the reference's TCN config)."""

    embedding = "normalized"

    def __init__(self, reg_lambda: float = 0.002, positive_window: int = 5) -> None:
        """
        Args:
            reg_lambda: weight of the embeddings' squared norms (``0.25 * reg_lambda``).
            positive_window: each positive is drawn from the ``positive_window`` frames
                before its anchor.
        """
        if reg_lambda < 0:
            raise ConfigError(f"reg_lambda must be >= 0, got {reg_lambda}")
        if int(positive_window) < 1:
            raise ConfigError(f"positive_window must be >= 1, got {positive_window}")
        self.reg_lambda = float(reg_lambda)
        self.positive_window = int(positive_window)

    def batches(self) -> TrainingBatches:
        """One view per video: ``offset_uniform`` anchors, each followed by its positive."""
        return TrainingBatches(
            views=1, frames="offset_uniform", positive_window=self.positive_window
        )

    def __call__(
        self,
        embs: torch.Tensor,
        steps: torch.Tensor,
        seq_lens: torch.Tensor,
        masks: torch.Tensor,
    ) -> torch.Tensor:
        check_inputs(embs, steps, seq_lens, masks, views=1)
        if embs.shape[2] % 2:
            raise ConfigError(
                f"TCN pairs each anchor frame with a positive: data.num_frames must be even, "
                f"got {embs.shape[2]}"
            )
        return time_contrastive_loss(embs[:, 0], reg_lambda=self.reg_lambda)
