"""Training losses: each is a plain function plus a small :class:`SequenceLoss` class that
holds only that loss's settings, chosen in a config as ``model.loss``::

    model:
      loss:
        class_path: mvf_lightning.losses.TCC      # or just TCC; SCL is the default
        init_args: {temperature: 0.1, loss_type: regression_mse_var}

or on the command line ``--model.loss=TCC --model.loss.temperature=0.2``; the CLI checks
each key and value against the chosen class's typed constructor.

The losses: :class:`SCL` (the paper's), :class:`TCC`, :class:`TCN` (the reference's other
self-supervised methods) and :class:`Classification` (the supervised upper bound). Each says
what it is computed on (``embedding``), what its batches hold (``batches()``: views, frame
sampling, labels, same-action batches; the DataModule follows) and whether it trains a head.

Adding a loss: write ``losses/<name>.py`` with the function and a ``SequenceLoss`` subclass
whose typed ``__init__`` stores each argument under its own name and whose
``__call__(embs, steps, seq_lens, masks)`` returns the scalar; then register it here: import
it and add it to ``LOSSES`` (its short name, for configs and old checkpoints) and
``__all__``. The module, the DataModule, the CLI and checkpoints need no change.
"""

from __future__ import annotations

import importlib
from typing import Any

from mvf_lightning.errors import ConfigError
from mvf_lightning.losses.base import SequenceLoss
from mvf_lightning.losses.classification import Classification, phase_classification_loss
from mvf_lightning.losses.sequence_contrastive import NEGATIVES, SCL, sequence_contrastive_loss
from mvf_lightning.losses.temporal_cycle_consistency import TCC, temporal_cycle_consistency_loss
from mvf_lightning.losses.time_contrastive import TCN, time_contrastive_loss

LOSSES: dict[str, type[SequenceLoss]] = {
    "scl": SCL,
    "tcc": TCC,
    "tcn": TCN,
    "classification": Classification,
}


def get_loss(name: str) -> type[SequenceLoss]:
    """The loss class registered under ``name``; ValueError lists the valid names."""
    try:
        return LOSSES[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown loss {name!r}; valid names: {sorted(LOSSES)}") from None


def _loss_class(class_path: str) -> type[SequenceLoss]:
    """A registered name (``tcc``), class name (``TCC``) or import path -> the loss class."""
    by_name = {cls.__name__: cls for cls in LOSSES.values()}
    if class_path.lower() in LOSSES:
        return LOSSES[class_path.lower()]
    if class_path in by_name:
        return by_name[class_path]
    module_name, _, attr = class_path.rpartition(".")
    cls = None
    if module_name:
        try:
            cls = getattr(importlib.import_module(module_name), attr, None)
        except ImportError:
            cls = None
    if not (isinstance(cls, type) and issubclass(cls, SequenceLoss)):
        raise ConfigError(
            f"model.loss: {class_path!r} is not a loss class; use one of "
            f"{sorted(by_name)} or the import path of a SequenceLoss subclass"
        )
    return cls


def build_loss(spec: SequenceLoss | dict[str, Any] | str | None) -> SequenceLoss:
    """A loss from a config value: an instance, ``{"class_path", "init_args"}`` (what configs
    and checkpoints hold), a name, ``None`` (SCL's defaults), or the ``{"name": "scl", ...}``
    dict of checkpoints written before losses took their own arguments."""
    if spec is None:
        return SCL()
    if isinstance(spec, SequenceLoss):
        return spec
    if isinstance(spec, str):
        return _loss_class(spec)()
    if not isinstance(spec, dict):
        raise ConfigError(f"model.loss must be a loss or a dict, got {type(spec).__name__}")
    if "class_path" in spec:
        unknown = sorted(set(spec) - {"class_path", "init_args"})
        if unknown:
            raise ConfigError(f"model.loss: unknown key(s) {unknown}; use class_path, init_args")
        cls = _loss_class(spec["class_path"])
        args = dict(spec.get("init_args") or {})
    elif "name" in spec:
        cls = get_loss(spec["name"])
        args = {k: v for k, v in spec.items() if k not in ("name", "kwargs")}
        args.update(spec.get("kwargs") or {})
    else:
        cls, args = SCL, dict(spec)
    try:
        return cls(**args)
    except TypeError as err:
        raise ConfigError(f"model.loss: {cls.__name__}: {err}") from None


__all__ = [
    "LOSSES",
    "NEGATIVES",
    "SCL",
    "TCC",
    "TCN",
    "Classification",
    "SequenceLoss",
    "build_loss",
    "get_loss",
    "phase_classification_loss",
    "sequence_contrastive_loss",
    "temporal_cycle_consistency_loss",
    "time_contrastive_loss",
]
