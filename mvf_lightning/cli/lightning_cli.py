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

from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from ..tracking.sweep import log_sweep_run_to_wandb, name_sweep_run
from ..tracking.wandb_setup import offline_unless_reachable
from ..training.faults import fault_callbacks, logger_run_folder
from ..training.module import MVFormerModule
from ..training.runs import add_run_arguments, start_run_from_config
from .checkpoint_settings import CheckpointSettings
from .config_files import config_sources, expand_config_args
from .config_values import plain

_KEY_PATTERNS = (
    re.compile(r'key "([^"]+)"'),
    re.compile(r"--([A-Za-z_][\w.]*)"),
    re.compile(r"'([A-Za-z_][\w]*(?:\.[\w]+)+)'"),
)


def _known_keys(parser: Any) -> list[str]:
    keys: set[str] = set()
    parsers = [parser]
    subcommands = getattr(parser, "_subcommands_action", None)
    if subcommands is not None:
        parsers += list(subcommands._name_parser_map.values())
    for p in parsers:
        for action in p._actions:
            for opt in action.option_strings:
                if opt.startswith("--"):
                    keys.add(opt[2:])
        with contextlib.suppress(Exception):  # suggestions are best effort
            keys.update(p.get_defaults().keys())
    return sorted(keys)


def _unknown_key(message: str, known: list[str]) -> str | None:
    """The first key a parser error names that the parser does not know. A subclass's own
    error (``Problem with given class_path '...'``) names its class, not a key: the real
    reason follows in the message, so no key is guessed there."""
    if "Problem with given class_path" in message:
        return None
    for pattern in _KEY_PATTERNS:
        for key in pattern.findall(message):
            if key not in known:
                return key
    return None


def suggest_key(message: str, known: list[str]) -> str | None:
    """The valid key closest to the first unknown key named in a parser error message."""
    key = _unknown_key(message, known)
    if key is None:
        return None
    match = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if match:
        return f'unknown key "{key}": did you mean "{match[0]}"?'
    return f'unknown key "{key}"'


def _flat_keys(data: Any, prefix: str = "") -> set[str]:
    if not isinstance(data, dict):
        return set()
    keys = set()
    for k, v in data.items():
        key = f"{prefix}{k}"
        keys.add(key)
        keys |= _flat_keys(v, f"{key}.")
    return keys


def config_file_with_key(key: str, files: list[str]) -> str | None:
    """The last of ``files`` (YAML) that sets ``key`` (dotted), if any."""
    import yaml

    for path in reversed(files):
        with contextlib.suppress(Exception), open(path) as f:
            if key in _flat_keys(yaml.safe_load(f)):
                return path
    return None


def _one_line(message: str, limit: int = 400) -> str:
    line = "; ".join(part.strip() for part in message.strip().splitlines() if part.strip())
    return line if len(line) <= limit else line[: limit - 3] + "..."


class MVFArgumentParser(LightningArgumentParser):
    """Argument parser whose errors are one line: the mistyped key, the closest valid one and
    the config file that set it."""

    config_files: list[str] = []
    """YAML files given with ``--config`` (set by the CLI), searched for a mistyped key."""

    def error(self, message: str, ex: Exception | None = None) -> Any:
        if not self.exit_on_error or os.environ.get("JSONARGPARSE_DEBUG"):
            return super().error(message, ex)  # raises ArgumentError for jsonargparse to handle
        known = _known_keys(self)
        key = _unknown_key(message, known)
        line = suggest_key(message, known) or _one_line(message)
        source = config_file_with_key(key, self.config_files) if key else None
        if source:
            line += f" (in {source})"
        sys.stderr.write(f"error: {line}\n")
        self.exit(2)


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
            logger.experiment.config.update({"cli": plain(self.config)}, allow_val_change=True)
            run_dir = logger_run_folder(logger)
            run_dir.mkdir(parents=True, exist_ok=True)
            path = run_dir / self.config_filename
            if not path.exists():
                self.parser.save(self.config, str(path), skip_none=False, multifile=False)


def _wandb_loggers(trainer: Any) -> list:
    from lightning.pytorch.loggers import WandbLogger

    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]


def build_trainer(
    *,
    limit_train_batches: int | float | None = None,
    limit_val_batches: int | float | None = None,
    limit_test_batches: int | float | None = None,
    limit_predict_batches: int | float | None = None,
    overfit_batches: int | float = 0.0,
    **kwargs: Any,
) -> Trainer:
    """Lightning's ``Trainer`` with its arguments as the CLI's ``trainer`` section.

    Lightning declares the batch limits ``Optional[Union[int, float]]``, but Python's cache
    of ``typing.Union`` can hand back an equal ``Union[float, int, None]`` made earlier, and
    the parser then reads ``1`` as the fraction ``1.0`` (the whole epoch) instead of one
    batch. Declared here with ``int`` first, an integer stays a number of batches.

    Args:
        limit_train_batches: How much of the training dataset to use per epoch: a float is a
            fraction, an int a number of batches. Default: ``1.0``.
        limit_val_batches: The same for validation.
        limit_test_batches: The same for testing.
        limit_predict_batches: The same for prediction.
        overfit_batches: Overfit a fraction (float) or a number (int) of training batches.
    """
    return Trainer(
        limit_train_batches=limit_train_batches,
        limit_val_batches=limit_val_batches,
        limit_test_batches=limit_test_batches,
        limit_predict_batches=limit_predict_batches,
        overfit_batches=overfit_batches,
        **kwargs,
    )


class MVFLightningCLI(LightningCLI):
    """Lightning's CLI with the model fixed to :class:`MVFormerModule` and any DataModule."""

    def __init__(
        self,
        args: list[str] | None = None,
        run: bool = True,
        model_only: bool = False,
        build: bool = True,
    ):
        """``model_only``: the model section alone (data optional, nothing else built);
        ``build=False`` with it: parse only (:func:`config_sections`)."""
        self._model_only = model_only
        self._build = build
        self._args = list(args) if args is not None else sys.argv[1:]
        MVFArgumentParser.config_files = config_sources(list(args or []))
        warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter is intended.*")
        # The frozen backbone is in eval mode on purpose.
        warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start")
        # The module seeds each training batch in on_before_batch_transfer on purpose.
        warnings.filterwarnings(
            "ignore", message=r".*overridden `on_before_batch_transfer` in `LightningModule`"
        )
        super().__init__(
            MVFormerModule,
            LightningDataModule,
            trainer_class=build_trainer,
            subclass_mode_data=True,
            parser_class=MVFArgumentParser,
            # allow_abbrev=False: `--trainer.max_epoch` is a typo, not `max_epochs`.
            parser_kwargs={"parser_mode": "omegaconf", "allow_abbrev": False},
            save_config_callback=RunConfigSaver,
            # The callbacks every fit gets, whatever the config lists (training/faults.py).
            trainer_defaults={"callbacks": fault_callbacks()},
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
        # Read before LightningCLI takes the checkpoint's model settings (next), compared after.
        self.checkpoint_settings = CheckpointSettings.read(self.config)

    def before_instantiate_classes(self) -> None:
        if self.checkpoint_settings is not None:
            self.checkpoint_settings.compare(self.config)
        if self.subcommand == "fit":  # a W&B sweep run logs to W&B, named by its values
            log_sweep_run_to_wandb(self.config[self.subcommand])
        if self.subcommand is not None:
            name_sweep_run(self.config[self.subcommand], self._args)
        sub = self.config.get("subcommand")
        trainer_cfg = self.config[sub]["trainer"] if sub else self.config.get("trainer")
        if trainer_cfg is not None and _uses_wandb(trainer_cfg.get("logger")):
            offline_unless_reachable(_wandb_save_dir(trainer_cfg.get("logger")))

    def after_fit(self) -> None:
        """Evaluate the model ``fit`` left when its last epoch was not evaluated
        (``check_val_every_n_epoch`` not dividing ``max_epochs``), so a fit always ends with
        the metrics, the table and the results file of the model it saved last."""
        from ..evaluation.callback import final_evaluation_needed

        if final_evaluation_needed(self.trainer):
            self.trainer.validate(self.model, datamodule=self.datamodule, verbose=False)

    def instantiate_classes(self) -> None:
        if not self._model_only:
            return super().instantiate_classes()
        if not self._build:
            self.model = self.datamodule = self.trainer = None
            return None
        model_cfg = plain(self.config["model"])
        # Counting parameters needs no weights: never download or read them here.
        model_cfg["backbone"]["pretrained"] = "none"
        self.model = MVFormerModule(**model_cfg)
        self.datamodule = None
        self.trainer = None


def _uses_wandb(config: Any) -> bool:
    return "WandbLogger" in str(plain(config))


def _wandb_save_dir(config: Any) -> str | None:
    loggers = plain(config)
    for logger in map(plain, loggers if isinstance(loggers, list) else [loggers]):
        if isinstance(logger, dict) and "WandbLogger" in str(logger.get("class_path")):
            return (logger.get("init_args") or {}).get("save_dir")
    return None


def config_sections(config: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model settings, DataModule init args)`` of a training config file (``inherit:``
    applied), as the CLI resolves them; builds nothing."""
    cli = MVFLightningCLI(
        args=expand_config_args(["--config", str(config)]), run=False, model_only=True,
        build=False,
    )
    data = plain(cli.config.get("data")) or {}
    return plain(cli.config["model"]), dict(data.get("init_args") or {})
