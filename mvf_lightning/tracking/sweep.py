"""Runs started by a W&B sweep agent: a run name that shows the swept values.

The agent starts each run as ``<command> --section.key=value ...`` with ``WANDB_SWEEP_ID``,
``WANDB_RUN_ID`` and ``WANDB_SWEEP_PARAM_PATH`` (a YAML file ``{key: {value: v}}``) in the
environment. W&B itself logs into the agent's run (it reads ``WANDB_RUN_ID``) and adds the
swept values to the run config; this module only names the run after those values, since an
offline run has no name otherwise. Lightning-free.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ..errors import DataError

SWEEP_ID = "WANDB_SWEEP_ID"
SWEEP_PARAM_PATH = "WANDB_SWEEP_PARAM_PATH"
WANDB_LOGGER = "lightning.pytorch.loggers.WandbLogger"
_NOT_SWEPT = ("config", "print_config", "ckpt_path")


def in_sweep(env: Mapping[str, str] = os.environ) -> bool:
    """Whether a sweep agent started this process."""
    return bool(env.get(SWEEP_ID) or env.get(SWEEP_PARAM_PATH))


def swept_values(argv: Sequence[str], env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """``key -> value`` of this run's swept parameters: the agent's parameter file, else the
    command line's ``--key=value`` overrides (in order)."""
    path = env.get(SWEEP_PARAM_PATH)
    if path and Path(path).is_file():
        try:
            params = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as e:
            raise DataError(f"{path} ({SWEEP_PARAM_PATH}): not valid YAML ({e})") from e
        values = {  # also holds `wandb_version: 1` and W&B's own `_...` keys: not swept
            k: v["value"]
            for k, v in params.items()
            if isinstance(v, dict) and "value" in v and not str(k).startswith("_")
        }
        if values:
            return values
    values = {}
    for arg in argv:
        if arg.startswith("--") and "=" in arg:
            key, value = arg[2:].split("=", 1)
            if key not in _NOT_SWEPT:
                values[key] = yaml.safe_load(value) if value else value
    return values


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_format_value(v) for v in value) + "]"
    return str(value)


def _short_keys(keys: Sequence[str]) -> dict[str, str]:
    """The shortest dotted suffix of each key that is still unique among ``keys``."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if sum(k == suffix or k.endswith("." + suffix) for k in keys) == 1:
                break
        out[key] = suffix
    return out


def run_name(values: Mapping[str, Any]) -> str:
    """A readable run name from swept values, e.g. ``num_tokens=5 blocks=[3,7,11]``."""
    short = _short_keys(list(values))
    return " ".join(f"{short[k]}={_format_value(v)}" for k, v in values.items())


def _loggers(trainer: Any) -> list[Any]:
    loggers = trainer.get("logger") if trainer is not None else None
    if loggers is None or isinstance(loggers, bool):
        return []
    return list(loggers) if isinstance(loggers, list) else [loggers]


def log_sweep_run_to_wandb(config: Any, env: Mapping[str, str] = os.environ) -> bool:
    """Under a sweep agent, add a ``WandbLogger`` to the config's loggers when it has none:
    the sweep reads its metric from the agent's W&B run, so a run that logs only to CSV (the
    demo's logger) would never reach it. The config's own loggers stay. Returns True when one
    was added."""
    if not in_sweep(env):
        return False
    trainer = config.get("trainer") if hasattr(config, "get") else None
    if trainer is None:
        return False
    loggers = _loggers(trainer)
    if any(getattr(logger, "class_path", None) == WANDB_LOGGER for logger in loggers):
        return False
    from jsonargparse import Namespace

    save_dir = trainer.get("default_root_dir") or "runs"
    project = env.get("WANDB_PROJECT") or "mvf_lightning"
    loggers.append(Namespace(class_path=WANDB_LOGGER,
                             init_args=Namespace(save_dir=str(save_dir), project=project)))
    trainer["logger"] = loggers
    print(f"note: a W&B sweep run: logging to W&B as well (project {project!r}, files under "
          f"{save_dir}), where the sweep reads its metric", file=sys.stderr, flush=True)
    return True


def name_sweep_run(config: Any, argv: Sequence[str], env: Mapping[str, str] = os.environ) -> None:
    """Under a sweep agent, give every ``WandbLogger`` in ``config`` (the parsed LightningCLI
    config of the subcommand) without a ``name`` one that shows the swept values."""
    if not in_sweep(env):
        return
    values = swept_values(argv, env)
    if not values:
        return
    trainer = config.get("trainer") if hasattr(config, "get") else None
    name = run_name(values)
    for logger in _loggers(trainer):
        if getattr(logger, "class_path", None) != WANDB_LOGGER:
            continue
        init_args = logger.get("init_args")
        if init_args is not None and init_args.get("name") is None:
            init_args["name"] = name
