"""Entry point: ``python -m mvf_lightning <command>``.

Commands: ``fit | validate | test | predict`` (LightningCLI), ``summary`` (parameter counts,
no data), ``prepare`` (dataset converters) and ``evaluate`` (metrics on exported embeddings).
Lightning is imported only by the commands that need it (it takes seconds to import).
"""

from __future__ import annotations

import os
import re
import sys
import traceback

from ..tracking.wandb_setup import offline_without_account
from .config_files import expand_config_args

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")

USAGE = """usage: python -m mvf_lightning <command> [options]

commands:
  fit | validate | test | predict   train / evaluate with a config: --config configs/penn.yaml
  summary                           build the model from a config and count its parameters
  prepare                           convert a dataset release into mvf_lightning's index
  evaluate                          alignment metrics on exported embeddings (--embeddings DIR)
  results                           one table of finished / running / failed runs: RUNS_DIR ...
  align                             align videos to a query video, frame by frame (--ckpt)

Run `python -m mvf_lightning <command> --help` for the options of one command.
"""


def summary(argv: list[str]) -> int:
    """Print exact trainable / frozen parameter counts and a per-module table."""
    import torch

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
    for name, sub in _summary_modules(model.model):
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


def _summary_modules(model):
    yield "backbone", model.backbone
    for name, sub in model.embedder.named_children():
        yield f"embedder.{name}", sub
    yield "projection", model.projection


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


def _run_lightning(command: str, rest: list[str]) -> int:
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from ..training.faults import remove_empty_log_dirs
    from .lightning_cli import MVFLightningCLI

    try:
        MVFLightningCLI(args=[command, *expand_config_args(rest)])
    except SIGTERMException as e:
        print(_interrupted(command, rest, e), file=sys.stderr, flush=True)
        return 143  # 128 + SIGTERM, as a shell reports a process killed by it
    finally:
        remove_empty_log_dirs()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    offline_without_account()
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
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
