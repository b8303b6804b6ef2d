"""The interface every training loss implements: a small class whose typed constructor holds
the loss's own settings (so the CLI validates them per loss), which says what it needs (the
embedding it is computed on, the batches it trains on, an optional trainable head) and whose
call computes it."""

from __future__ import annotations

import inspect
from typing import Any, Literal

import torch
from torch import nn

from mvf_lightning.data.contract import TrainingBatches

Embedding = Literal["projected", "normalized", "raw"]
"""What a loss is computed on: the projection head's L2-normalised output (``projected``,
SCL's), the L2-normalised embedding without projection head (``normalized``, the
reference's TCN) or the embedding itself (``raw``, the reference's TCC and classification)."""

EMBEDDINGS: tuple[str, ...] = ("projected", "normalized", "raw")


def check_inputs(
    embs: torch.Tensor,
    steps: torch.Tensor,
    seq_lens: torch.Tensor,
    masks: torch.Tensor,
    views: int | None = 2,
) -> None:
    """Raise ValueError naming the first argument whose shape breaks the ``[B, V, T(, D)]``
    layout (``views``: the V the loss needs; None: any)."""
    if embs.dim() != 4 or (views is not None and embs.shape[1] != views):
        v = "V" if views is None else str(views)
        raise ValueError(f"embs must have shape [B, {v}, T, D], got {list(embs.shape)}")
    b, v, t, _ = embs.shape
    for name, tensor, layout, shape in (
        ("steps", steps, "[B, V, T]", (b, v, t)),
        ("seq_lens", seq_lens, "[B, V]", (b, v)),
        ("masks", masks, "[B, V, T]", (b, v, t)),
    ):
        if tuple(tensor.shape) != shape:
            raise ValueError(
                f"{name} must have shape {layout} = {list(shape)} to match embs "
                f"{list(embs.shape)}, got {list(tensor.shape)}"
            )


class SequenceLoss:
    """A loss over views of the videos of a batch.

    Called as ``loss(embs [B, V, T, D], steps [B, V, T], seq_lens [B, V], masks [B, V, T])``
    -> scalar, plus ``labels=`` ``[B, V, T]`` when :meth:`batches` asks for labels and
    ``head=`` the module built by :meth:`head` when there is one. Subclasses take only their
    own settings as typed ``__init__`` arguments and keep each one in an attribute of the same
    name, which is how :meth:`config` reads them back.
    """

    embedding: Embedding = "projected"
    """What the loss is computed on (see :data:`Embedding`)."""

    def batches(self) -> TrainingBatches:
        """What the training batches must hold (default: two time-augmented views)."""
        return TrainingBatches()

    def head(self, embedding_dim: int) -> nn.Module | None:
        """A trainable module the loss needs on top of the embedding (trained and saved with
        the model), or None."""
        return None

    def __call__(
        self,
        embs: torch.Tensor,
        steps: torch.Tensor,
        seq_lens: torch.Tensor,
        masks: torch.Tensor,
    ) -> torch.Tensor:
        raise NotImplementedError

    def init_args(self) -> dict[str, Any]:
        """The constructor arguments as plain values (what checkpoints and configs store)."""
        names = list(inspect.signature(type(self).__init__).parameters)[1:]
        return {name: getattr(self, name) for name in names}

    def config(self) -> dict[str, Any]:
        """``{"class_path", "init_args"}``: rebuilds this loss, from a checkpoint or a config."""
        cls = type(self)
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": self.init_args()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.init_args().items())
        return f"{type(self).__name__}({args})"
