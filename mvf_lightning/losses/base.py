"""The interface every training loss implements: a small class whose typed constructor holds
the loss's own settings (so the CLI validates them per loss) and whose call computes it."""

from __future__ import annotations

import inspect
from typing import Any

import torch


def check_inputs(
    embs: torch.Tensor, steps: torch.Tensor, seq_lens: torch.Tensor, masks: torch.Tensor
) -> None:
    """Raise ValueError naming the first argument whose shape breaks the [B, 2, T(, D)] layout."""
    if embs.dim() != 4 or embs.shape[1] != 2:
        raise ValueError(f"embs must have shape [B, 2, T, D], got {list(embs.shape)}")
    b, _, t, _ = embs.shape
    for name, tensor, layout, shape in (
        ("steps", steps, "[B, 2, T]", (b, 2, t)),
        ("seq_lens", seq_lens, "[B, 2]", (b, 2)),
        ("masks", masks, "[B, 2, T]", (b, 2, t)),
    ):
        if tuple(tensor.shape) != shape:
            raise ValueError(
                f"{name} must have shape {layout} = {list(shape)} to match embs "
                f"{list(embs.shape)}, got {list(tensor.shape)}"
            )


class SequenceLoss:
    """A loss over two temporally augmented views of each video.

    Called as ``loss(embs [B, 2, T, D], steps [B, 2, T], seq_lens [B, 2], masks [B, 2, T])``
    -> scalar. Subclasses take only their own settings as typed ``__init__`` arguments and keep
    each one in an attribute of the same name, which is how :meth:`config` reads them back.
    """

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
