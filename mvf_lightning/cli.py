"""Entry point: ``python -m mvf_lightning <command>``.

Commands: ``fit | validate | test | predict`` (LightningCLI), ``summary`` (parameter counts,
no data), ``prepare`` (dataset converters) and ``evaluate`` (metrics on exported embeddings).
Lightning is imported only by the commands that need it (it takes seconds to import).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

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


def _wandb_offline_without_account() -> None:
    """Without credentials W&B would prompt for a login: log offline instead (sync later)."""
    if os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY"):
        return
    netrc = Path.home() / ".netrc"
    if netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore"):
        return
    os.environ["WANDB_MODE"] = "offline"


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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _wandb_offline_without_account()
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    try:
        if command == "prepare":
            from .prepare.cli import main as prepare_main

            return prepare_main(rest)
        if command == "evaluate":
            from .evaluation.evaluate_cli import main as evaluate_main

            return evaluate_main(rest)
        if command == "results":
            from .results import main as results_main

            return results_main(rest)
        if command == "align":
            from .align.command import main as align_main

            return align_main(rest)
        if command == "summary":
            return summary(rest)
        if command in LIGHTNING_COMMANDS:
            from .lightning_cli import MVFLightningCLI

            MVFLightningCLI(args=[command, *expand_config_args(rest)])
            return 0
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError) as e:
        if os.environ.get("MVF_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"error: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2
