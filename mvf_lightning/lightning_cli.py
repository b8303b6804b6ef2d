"""LightningCLI for mvf_lightning: fit / validate / test / predict from YAML configs.

Adds to Lightning's CLI: omegaconf interpolation, config inheritance (``inherit:``), a clear
message naming a mistyped key and the closest valid one, and the data's frames-per-view linked
into the model's training length.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import sys
import time
import warnings
from typing import Any

from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from .module import MVFormerModule
from .runs import add_run_arguments, start_run_from_config
from .sweep import name_sweep_run

_KEY_PATTERNS = (
    re.compile(r'key "([^"]+)"'),
    re.compile(r"--([A-Za-z_][\w.]*)"),
    re.compile(r"'([A-Za-z_][\w]*(?:\.[\w]+)+)'"),
)


def _known_keys(parser: Any) -> list[str]:
    keys: set[str] = set()
    for action in parser._actions:
        for opt in action.option_strings:
            if opt.startswith("--"):
                keys.add(opt[2:])
    with contextlib.suppress(Exception):  # suggestions are best effort
        keys.update(parser.get_defaults().keys())
    return sorted(keys)


def suggest_key(message: str, known: list[str]) -> str | None:
    """The valid key closest to the first unknown key named in a parser error message."""
    for pattern in _KEY_PATTERNS:
        for key in pattern.findall(message):
            if key in known:
                continue
            match = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            if match:
                return f'unknown key "{key}": did you mean "{match[0]}"?'
            return f'unknown key "{key}"'
    return None


class MVFArgumentParser(LightningArgumentParser):
    """Argument parser whose errors name the mistyped key and the closest valid one."""

    def error(self, message: str, ex: Exception | None = None) -> Any:
        hint = suggest_key(message, _known_keys(self))
        if hint and hint not in message:
            message = f"{hint}\n{message}"
        return super().error(message, ex) if ex is not None else super().error(message)


class RunConfigSaver(SaveConfigCallback):
    """Saves the resolved config with each run and never replaces an earlier run's file.

    With W&B: ``<save_dir>/<project>/<run id>/config.yaml`` (beside the run's checkpoints),
    and the config is added to the W&B run so runs and sweeps show every setting. Other
    loggers: the log dir's ``config.yaml``, or ``config_<time>.yaml`` if that exists.
    """

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if not self.already_saved:
            if _wandb_loggers(trainer):
                self.save_to_log_dir = False  # written per run in save_config
            else:
                log_dir = trainer.log_dir or "."  # a collective: every rank calls it
                name = self.config_filename
                if trainer.is_global_zero and os.path.isfile(os.path.join(log_dir, name)):
                    name = f"config_{time.strftime('%Y%m%d-%H%M%S')}.yaml"
                self.config_filename = trainer.strategy.broadcast(name)
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer: Any, pl_module: Any, stage: str) -> None:
        for logger in _wandb_loggers(trainer):
            run = logger.experiment
            run.config.update({"cli": _to_plain(self.config)}, allow_val_change=True)
            run_dir = os.path.join(logger.save_dir or ".", str(logger.name), str(run.id))
            os.makedirs(run_dir, exist_ok=True)
            path = os.path.join(run_dir, self.config_filename)
            if not os.path.exists(path):
                self.parser.save(self.config, path, skip_none=False, multifile=False)


def _wandb_loggers(trainer: Any) -> list:
    from lightning.pytorch.loggers import WandbLogger

    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]


class MVFLightningCLI(LightningCLI):
    """Lightning's CLI with the model fixed to :class:`MVFormerModule` and any DataModule."""

    def __init__(self, args: list[str] | None = None, run: bool = True, model_only: bool = False):
        self._model_only = model_only
        self._args = list(args) if args is not None else sys.argv[1:]
        warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter is intended.*")
        # The frozen backbone is in eval mode on purpose.
        warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start")
        super().__init__(
            MVFormerModule,
            LightningDataModule,
            subclass_mode_data=True,
            parser_class=MVFArgumentParser,
            parser_kwargs={"parser_mode": "omegaconf"},
            save_config_callback=RunConfigSaver,
            auto_configure_optimizers=False,
            args=args,
            run=run,
        )

    def add_core_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        if not self._model_only:
            return super().add_core_arguments_to_parser(parser)
        # `summary` builds the model alone: a data section is allowed but not needed.
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.add_lightning_class_args(self._model_class, "model")
        parser.add_lightning_class_args(
            self._datamodule_class, "data", subclass_mode=True, required=False
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        add_run_arguments(parser)  # --run_name / --resume / --runs_dir (runs.py)
        if not self._model_only:
            parser.link_arguments("data.init_args.num_frames", "model.embedder.num_frames")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        # Run identity (runs.py): a fit with a run name continues that run's newest checkpoint
        # through `ckpt_path`, so Lightning restores it like a user-given one.
        if self.config.get("subcommand") == "fit":
            self.run_identity = start_run_from_config(self.config["fit"])

    def before_instantiate_classes(self) -> None:
        if self.subcommand is not None:  # a W&B sweep run gets a name showing its values
            name_sweep_run(self.config[self.subcommand], self._args)

    def instantiate_classes(self) -> None:
        if not self._model_only:
            return super().instantiate_classes()
        model_cfg = _to_plain(self.config["model"])
        # Counting parameters needs no weights: never download or read them here.
        model_cfg["backbone"]["pretrained"] = "none"
        self.model = MVFormerModule(**model_cfg)
        self.datamodule = None
        self.trainer = None


def _to_plain(value: Any) -> Any:
    if hasattr(value, "as_dict"):
        return value.as_dict()
    return value
