"""Entry point: ``python -m mvf_lightning <command>``.

Commands: ``fit | validate | test | predict`` (LightningCLI), ``summary`` (parameter counts,
no data), ``prepare`` (dataset converters), ``evaluate`` (metrics on exported embeddings),
``results`` (a table and pictures of runs) and ``align`` (align videos with a checkpoint).
Every command imports what it needs only when it runs: ``--help`` loads no torch, Lightning or
W&B (Lightning alone takes seconds to import).
"""

from __future__ import annotations

import os
import re
import sys
import traceback

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")

COMMANDS = {
    "fit": "train a model from a config: --config configs/demo.yaml (the demo)",
    "validate": "evaluate a checkpoint on the validation videos: --config ... --ckpt_path CKPT",
    "test": "evaluate a checkpoint on the test videos: --config ... --ckpt_path CKPT",
    "predict": "run a checkpoint over videos, e.g. to export embeddings (EmbeddingExport)",
    "summary": "build the model from a config and count its parameters",
    "prepare": "convert a dataset release into mvf_lightning's index",
    "evaluate": "alignment metrics on exported embeddings (--embeddings DIR)",
    "results": "a table of runs (finished, running, failed) and their plots: RUNS_DIR --plot DIR",
    "align": "align videos to a query video, frame by frame (--ckpt CKPT)",
}
"""Every command, with the one line ``--help`` shows for it."""

USAGE = "\n".join([
    "usage: python -m mvf_lightning <command> [options]",
    "",
    "commands:",
    *(f"  {name:<10} {line}" for name, line in COMMANDS.items()),
    "",
    "Start with the demo: python -m mvf_lightning fit --config configs/demo.yaml",
    "Run `python -m mvf_lightning <command> --help` for the options of one command.",
    "",
])


def summary(argv: list[str]) -> int:
    """Print exact trainable / frozen parameter counts and a per-module table."""
    import torch

    from .config_files import expand_config_args
    from .lightning_cli import MVFLightningCLI

    # Counting needs shapes, not values: the meta device builds even ViT-B/8 in no time.
    with torch.device("meta"):
        cli = MVFLightningCLI(args=expand_config_args(argv), run=False, model_only=True)
    model = cli.model
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    print(f"trainable parameters: {trainable}")
    print(f"frozen parameters: {frozen}")
    print()
    rows = [("module", "trainable", "frozen")]
    for name, sub in _summary_modules(model):
        t = sum(p.numel() for p in sub.parameters() if p.requires_grad)
        f = sum(p.numel() for p in sub.parameters() if not p.requires_grad)
        rows.append((name, f"{t:,}", f"{f:,}"))
    rows.append(("total", f"{trainable:,}", f"{frozen:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for i, r in enumerate(rows):
        print(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}")
        if i == 0 or i == len(rows) - 2:
            print("-" * (sum(widths) + 4))
    return 0


def _summary_modules(module):
    """The rows of ``summary``: the backbone, each part of the embedder, and the training
    heads the loss has (the projection head, a loss's own head)."""
    model = module.model
    yield "backbone", model.backbone
    for name, sub in model.embedder.named_children():
        yield f"embedder.{name}", sub
    if model.projection is not None:
        yield "projection", model.projection
    if module.loss_head is not None:
        yield "loss_head", module.loss_head


# ---------------------------------------------------------------------- errors (helper "faults")
def is_user_error(error: BaseException) -> bool:
    """A mistake the user can fix (one line), as opposed to a failure (traceback), told apart
    by type alone: :class:`~mvf_lightning.errors.MVFError` (every error of ours meant for a
    user derives from it) and Lightning's ``MisconfigurationException`` (a setting that
    contradicts another). Anything else (a built-in ``ValueError`` wherever it was raised,
    CUDA out of memory, NCCL errors) keeps its traceback.
    """
    from ..errors import MVFError

    if isinstance(error, MVFError):
        return True
    return any(c.__name__ == "MisconfigurationException" for c in type(error).__mro__)


def _user_error_in(error: BaseException) -> BaseException | None:
    """``error`` or the exception it was raised from, if that is a user error: the config
    parser wraps an error raised while it builds a class (a DataModule refusing its root, a
    callback refusing a combination of settings) in its own ``ValueError``."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if is_user_error(error):
            return error
        error = error.__cause__
    return None


_WORKER_TRACEBACK = re.compile(r"Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback")


def _one_line(error: BaseException) -> str:
    text = str(error)
    if _WORKER_TRACEBACK.match(text):
        # Re-raised by a DataLoader from a worker: torch put the worker's traceback in the
        # message, and the original message ends it, after "<module>.<class>: ".
        kind = type(error)
        name = kind.__qualname__ if kind.__module__ == "builtins" else (
            f"{kind.__module__}.{kind.__qualname__}"
        )
        _, found, original = text.rpartition(f"\n{name}: ")
        text = original if found else text
    return " ".join(text.split()) or type(error).__name__


def _interrupted(command: str, rest: list[str], error: BaseException) -> str:
    """The line printed when a fit stopped on SIGTERM: where its checkpoint is, how to resume."""
    path = getattr(error, "checkpoint_path", None)
    epoch, step = getattr(error, "position", (None, None))
    where = f" at epoch {epoch}, step {step}" if epoch is not None else ""
    if command != "fit":
        return f"{command} stopped by SIGTERM; nothing was saved: run the same command again"
    if path is None:
        return f"stopped by SIGTERM{where} before training began: nothing to resume"
    if os.environ.get("SLURM_JOB_ID"):
        return (
            f"stopped by SIGTERM{where}; checkpoint saved to {path}; a Slurm job restores it "
            "when it starts again (requeued, or resubmitted with the same default_root_dir)"
        )
    kept, skip = [], False
    for arg in rest:
        if skip:
            skip = False
        elif arg == "--ckpt_path":
            skip = True
        elif not arg.startswith("--ckpt_path="):
            kept.append(arg)
    resume = " ".join(["python -m mvf_lightning", command, *kept, "--ckpt_path", path])
    return f"stopped by SIGTERM{where}; checkpoint saved to {path}; resume with: {resume}"


class _WithoutLightningTips:
    """A logging filter that drops Lightning's advertisements ("💡 Tip: For seamless cloud
    logging ... try installing [litlogger]", the same for litmodels), shown on every fit that
    does not use Lightning's cloud loggers: nothing a user of this framework acts on."""

    def filter(self, record) -> bool:
        return not str(record.msg).startswith("💡 Tip: For seamless cloud")


def _quiet_lightning_notices() -> None:
    """Keep out of the output what a user cannot act on, each as narrowly as it comes."""
    import logging
    import warnings

    # Lightning's rank-zero messages go through this logger (lightning.pytorch.utilities.rank_zero).
    tips = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _WithoutLightningTips) for f in tips.filters):
        tips.addFilter(_WithoutLightningTips())
    # Lightning 2.6's own pytree copy (lightning/pytorch/utilities/_pytree.py, used by its
    # CombinedLoader on every fit) builds `LeafSpec()`, which torch 2.15 deprecates with this
    # FutureWarning. Not our code and nothing to change in ours: ignored only for that module.
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )


def _run_lightning(command: str, rest: list[str]) -> int:
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from ..training.faults import remove_empty_log_dirs
    from .config_files import expand_config_args
    from .lightning_cli import MVFLightningCLI

    _quiet_lightning_notices()
    try:
        cli = MVFLightningCLI(args=[command, *expand_config_args(rest)])
    except SIGTERMException as e:
        print(_interrupted(command, rest, e), file=sys.stderr, flush=True)
        return 143  # 128 + SIGTERM, as a shell reports a process killed by it
    finally:
        remove_empty_log_dirs()
    if command == "fit" and getattr(cli, "trainer", None) is not None:
        from .run_summary import print_fit_summary

        run = getattr(cli, "run_identity", None)  # set by --run_name (training/runs.py)
        print_fit_summary(cli.trainer, rest, run.dir if run is not None else None)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    from ..tracking.wandb_setup import offline_without_account

    offline_without_account()
    command, rest = argv[0], argv[1:]
    try:
        if command == "prepare":
            from ..prepare.cli import main as prepare_main

            return prepare_main(rest)
        if command == "evaluate":
            from ..evaluation.evaluate_cli import main as evaluate_main

            return evaluate_main(rest)
        if command == "results":
            from ..tracking.results import main as results_main

            return results_main(rest)
        if command == "align":
            from ..align.command import main as align_main

            return align_main(rest)
        if command == "summary":
            return summary(rest)
        if command in LIGHTNING_COMMANDS:
            return _run_lightning(command, rest)
    except Exception as e:
        if os.environ.get("MVF_DEBUG"):
            raise
        mistake = _user_error_in(e)
        if mistake is not None:
            print(f"error: {_one_line(mistake)}", file=sys.stderr)
            return 1
        traceback.print_exc()
        print(
            f"error: {command} failed with {type(e).__name__}: {_one_line(e)[:300]} "
            "(a failure, not a setting; the traceback above shows where)",
            file=sys.stderr,
        )
        return 1
    print(f"error: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2
