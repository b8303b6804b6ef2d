"""What ``--ckpt_path`` keeps of a checkpoint's settings, checked around Lightning's own
parsing of its hyperparameters (LightningCLI replaces the model settings by the checkpoint's).

A fit resumed from a checkpoint refuses model settings that differ from the checkpoint's,
naming them, since resuming keeps the checkpoint's; settings that are not restored and shape
no tensor (:data:`RESUME_COMPATIBLE`) keep the user's value. ``validate`` / ``test`` /
``predict`` use the checkpoint's and say which they replaced. A missing, truncated or foreign
file, and a fit with nothing left to train, end in one line before anything is built.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ..errors import CheckpointError, ConfigError, MissingFileError
from ..training.lightning_private import epochs_and_steps_done
from .config_values import flat_values, plain

__all__ = ["RESUME_COMPATIBLE", "CheckpointSettings"]

RESUME_COMPATIBLE = ("loss.", "eval_max_frames", "init_from")
"""Model settings a resumed fit may change: not restored from the checkpoint, no tensors."""
_LIGHTNING_CKPT_NAMES = ("last", "best", "hpc")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


class CheckpointSettings:
    """The ``--ckpt_path`` of one command: read (and checked) before LightningCLI parses its
    hyperparameters, the model settings compared after."""

    def __init__(self, subcommand: str, path: str, before: dict[str, Any]) -> None:
        self.subcommand = subcommand
        self.path = path
        self.before = before

    @classmethod
    def read(cls, config: Any) -> CheckpointSettings | None:
        """Check the command's ``--ckpt_path`` (None without one); call before LightningCLI
        loads it. Also refuses a fit whose checkpoint has nothing left to train."""
        import torch

        sub = config.get("subcommand")
        path = config[sub].get("ckpt_path") if sub else None
        if not path or str(path) in _LIGHTNING_CKPT_NAMES or str(path).startswith("registry"):
            return None
        if not os.path.isfile(path):
            raise MissingFileError(f"--ckpt_path: checkpoint not found: {path}")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except (RuntimeError, EOFError, OSError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise CheckpointError(
                f"--ckpt_path {path}: not a readable checkpoint (truncated or not a torch "
                f"file: {reason})"
            ) from None
        if not isinstance(ckpt, dict):
            raise CheckpointError(f"--ckpt_path {path}: not a Lightning checkpoint")
        if sub == "fit":
            _check_training_left(config[sub]["trainer"], str(path), ckpt)
        return cls(sub, str(path), flat_values(config[sub]["model"]))

    def compare(self, config: Any) -> None:
        """After LightningCLI took the checkpoint's model settings: keep the user's value of
        :data:`RESUME_COMPATIBLE` ones, refuse (fit) or report (other commands) the rest."""
        sub, before = self.subcommand, self.before
        after = flat_values(config[sub]["model"])
        differ = sorted(
            k for k in set(before) | set(after) if not _same(before.get(k), after.get(k))
        )
        keep = [k for k in differ if k.startswith(RESUME_COMPATIBLE)]
        conflicts = [k for k in differ if k not in keep]
        for key in keep:
            config[f"{sub}.model.{key}"] = before[key]
        if not conflicts:
            return
        if sub != "fit":
            sys.stderr.write(
                f"note: using the checkpoint's model settings for {', '.join(conflicts)}\n"
            )
            return
        detail = ", ".join(
            f"model.{k}={before.get(k)!r} (checkpoint: {after.get(k)!r})" for k in conflicts[:6]
        )
        more = f" and {len(conflicts) - 6} more" if len(conflicts) > 6 else ""
        raise ConfigError(
            f"--ckpt_path {self.path} resumes a run whose model settings differ from this "
            f"command's: {detail}{more}; resuming keeps the checkpoint's, so drop these "
            f"settings, or start a new run from its weights with --model.init_from={self.path}"
        )


def _check_training_left(trainer: Any, path: str, ckpt: dict) -> None:
    """A fit resumed from a checkpoint that already reached ``max_epochs`` / ``max_steps``
    would stop at once and report success: say so instead."""
    epochs_done, steps_done = epochs_and_steps_done(ckpt)
    trainer = plain(trainer)
    max_epochs, max_steps = trainer.get("max_epochs"), trainer.get("max_steps")
    if max_epochs is not None and max_epochs >= 0 and epochs_done >= max_epochs:
        raise ConfigError(
            f"--ckpt_path {path} has already trained {epochs_done} epoch(s) and "
            f"trainer.max_epochs={max_epochs}: nothing left to train; raise trainer.max_epochs"
        )
    if max_steps is not None and max_steps > 0 and steps_done >= max_steps:
        raise ConfigError(
            f"--ckpt_path {path} has already trained {steps_done} step(s) and "
            f"trainer.max_steps={max_steps}: nothing left to train; raise trainer.max_steps"
        )
