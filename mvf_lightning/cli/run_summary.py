"""What a finished ``fit`` prints last: where its files are and the commands to try next.

::

    fit finished: runs/demo/lightning_logs/version_0
      checkpoint  runs/demo/lightning_logs/version_0/checkpoints/epoch=11-step=72.ckpt (best ...)
      last        runs/demo/lightning_logs/version_0/checkpoints/last.ckpt
      metrics     runs/demo/lightning_logs/version_0/metrics.csv
      table       runs/demo/lightning_logs/version_0/metrics_table_val_epoch0011.csv
      pictures    runs/demo/lightning_logs/version_0/media/
    next:
      python -m mvf_lightning validate --config configs/demo.yaml --ckpt_path runs/demo/...
      python -m mvf_lightning align --ckpt runs/demo/... VIDEO_1 VIDEO_2 --out ...
      python -m mvf_lightning results runs/demo --plot runs/demo/plots

:func:`run_files` reads where things are from the trainer's public attributes (its checkpoint
callbacks, its loggers' folders, its DataModule's evaluation index) and the files on disk;
:func:`summary_lines` turns that into text with real paths, placeholders only where no path
is known (no checkpoint, no evaluation videos). Nothing here imports Lightning.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RunFiles", "print_fit_summary", "run_files", "summary_lines"]

# Options of `fit` that name its run or its checkpoint: not for the commands suggested after it.
_FIT_ONLY = ("--ckpt_path", "--run_name", "--resume", "--runs_dir")


@dataclass
class RunFiles:
    """Where a finished fit left its files (paths as the trainer knows them)."""

    run_folder: Path | None = None
    best_checkpoint: Path | None = None
    best_score: str = ""
    last_checkpoint: Path | None = None
    metrics: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)
    pictures: list[Path] = field(default_factory=list)
    wandb_runs: list[Path] = field(default_factory=list)
    runs_dir: Path | None = None
    videos: list[Path] = field(default_factory=list)

    @property
    def checkpoint(self) -> Path | None:
        """The checkpoint the next commands use: the best one, else the last."""
        return self.best_checkpoint or self.last_checkpoint


def _existing(path: Any) -> Path | None:
    return Path(path) if path and Path(path).exists() else None


def _checkpoints(trainer: Any, files: RunFiles) -> None:
    for callback in getattr(trainer, "checkpoint_callbacks", None) or []:
        best = _existing(getattr(callback, "best_model_path", ""))
        last = _existing(getattr(callback, "last_model_path", ""))
        if best is None and last is None:
            continue
        files.best_checkpoint, files.last_checkpoint = best, last
        score, monitor = getattr(callback, "best_model_score", None), callback.monitor
        if best is not None and monitor and score is not None:
            files.best_score = f"best {monitor} = {float(score):.4f}"
        if files.best_checkpoint == files.last_checkpoint:
            files.last_checkpoint = None
        return


def _table_epoch(path: Path) -> int:
    """The epoch in ``metrics_table_<stage>_epoch<E>.csv`` (not zero-padded: 11 after 3)."""
    digits = path.stem.rsplit("epoch", 1)[-1]
    return int(digits) if digits.isdigit() else -1


def _is_wandb(logger: Any) -> bool:
    return any(c.__name__ == "WandbLogger" for c in type(logger).__mro__)


def _wandb_folder(logger: Any) -> Path | None:
    """The run's folder under ``<save_dir>/wandb/`` (``offline-run-*-<id>`` or ``run-*-<id>``),
    found on disk, so W&B itself is not asked (its run may have finished)."""
    root = Path(logger.save_dir or ".") / "wandb"
    found = sorted(root.glob(f"*run-*-{logger.version}"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _loggers(trainer: Any, files: RunFiles) -> None:
    save_dirs: list[Path] = []
    for logger in getattr(trainer, "loggers", None) or []:
        if getattr(logger, "save_dir", None):
            save_dirs.append(Path(logger.save_dir))
        if _is_wandb(logger):
            folder = _wandb_folder(logger)
            if folder is not None:
                files.wandb_runs.append(folder)
                files.run_folder = files.run_folder or folder
                if (folder / "files" / "media").is_dir():
                    files.pictures.append(folder / "files" / "media")
            continue
        log_dir = _existing(getattr(logger, "log_dir", None))
        if log_dir is None:
            continue
        files.run_folder = files.run_folder or log_dir
        if (log_dir / "metrics.csv").is_file():
            files.metrics.append(log_dir / "metrics.csv")
        tables = sorted(log_dir.glob("metrics_table_*_epoch*.csv"), key=_table_epoch)
        if tables:
            files.tables.append(tables[-1])
        if (log_dir / "media").is_dir():
            files.pictures.append(log_dir / "media")
    if files.runs_dir is None:
        files.runs_dir = save_dirs[0] if save_dirs else _existing(trainer.default_root_dir)


def _evaluation_videos(trainer: Any, count: int = 2) -> list[Path]:
    """The first ``count`` videos of the trainer's evaluation val split, if it has an index."""
    from ..data.contract import evaluation_indexes

    datamodule = evaluation_indexes(trainer)
    if datamodule is None:
        return []
    try:
        index = datamodule.eval_indexes().get("val")
        videos = [index.video_path(video) for video in list(index)[:count]] if index else []
    except (OSError, ValueError):
        return []
    return videos if len(videos) == count and all(v.is_file() for v in videos) else []


def run_files(trainer: Any, run_dir: str | os.PathLike | None = None) -> RunFiles:
    """Where a finished fit's checkpoints, metrics, pictures and runs folder are.

    ``run_dir``: the run's folder when ``fit`` had ``--run_name`` (``<runs_dir>/<name>``); its
    parent then is the folder ``results`` reads.
    """
    files = RunFiles(runs_dir=Path(run_dir).parent if run_dir else None)
    _checkpoints(trainer, files)
    _loggers(trainer, files)
    files.videos = _evaluation_videos(trainer)
    return files


def _show(path: Path, cwd: Path) -> str:
    """``path`` relative to ``cwd`` when it is inside it (as typed in a shell there), else
    absolute."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(cwd))
    except ValueError:
        return str(absolute)


def _command_prefix() -> str:
    """How this process was started: ``uv run python -m mvf_lightning`` under ``uv run``."""
    return ("uv run " if os.environ.get("UV_RUN_RECURSION_DEPTH") else "") + (
        "python -m mvf_lightning"
    )


def _without_fit_options(args: Sequence[str]) -> list[str]:
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in _FIT_ONLY:
            skip = True
        elif not arg.startswith(tuple(f"{o}=" for o in _FIT_ONLY)):
            kept.append(arg)
    return kept


def summary_lines(
    files: RunFiles,
    fit_args: Sequence[str],
    cwd: str | os.PathLike | None = None,
    prefix: str | None = None,
) -> list[str]:
    """The lines printed when a fit ends: its files, then the next commands, with real paths
    (relative to ``cwd`` when inside it) and placeholders in capitals only where no path is
    known. ``fit_args``: the arguments ``fit`` was given (after ``fit``)."""
    here = Path(os.path.abspath(cwd or os.getcwd()))
    prefix = prefix or _command_prefix()

    def show(path: Path) -> str:
        return _show(path, here)

    def q(path: Path) -> str:
        return shlex.quote(show(path))

    lines = ["fit finished" + (f": {show(files.run_folder)}" if files.run_folder else "")]
    rows: list[tuple[str, str]] = []
    if files.best_checkpoint is not None:
        note = f" ({files.best_score})" if files.best_score else ""
        rows.append(("checkpoint", show(files.best_checkpoint) + note))
    if files.last_checkpoint is not None:
        rows.append(("last" if files.best_checkpoint else "checkpoint",
                     show(files.last_checkpoint)))
    rows += [("metrics", show(p)) for p in files.metrics]
    rows += [("table", show(p)) for p in files.tables]
    rows += [("pictures", show(p) + "/") for p in files.pictures]
    rows += [("W&B run", f"{show(p)} (upload: wandb sync {q(p)})"
              if p.name.startswith("offline-") else show(p)) for p in files.wandb_runs]
    if files.checkpoint is None:
        rows.append(("checkpoint", "none saved (add a ModelCheckpoint to trainer.callbacks)"))
    lines += [f"  {name:<11} {value}" for name, value in rows]

    ckpt = q(files.checkpoint) if files.checkpoint is not None else "CHECKPOINT"
    config = [shlex.quote(a) for a in _without_fit_options(fit_args)]
    videos = " ".join(q(v) for v in files.videos) or "QUERY.mp4 OTHER.mp4"
    aligned = q(files.run_folder / "aligned") if files.run_folder else "aligned"
    lines.append("next:")
    lines.append("  " + " ".join([prefix, "validate", *config, "--ckpt_path", ckpt]))
    lines.append(f"  {prefix} align --ckpt {ckpt} {videos} --out {aligned}")
    if files.runs_dir is not None:
        runs = files.runs_dir
        lines.append(f"  {prefix} results {q(runs)} --plot {q(runs / 'plots')}")
    else:
        lines.append(f"  {prefix} results RUNS_DIR --plot PLOTS_DIR")
    return lines


def print_fit_summary(
    trainer: Any, fit_args: Sequence[str], run_dir: str | os.PathLike | None = None
) -> None:
    """Print :func:`summary_lines` on global rank 0 after a fit that finished."""
    if not getattr(trainer, "is_global_zero", True):
        return
    state = getattr(trainer, "state", None)
    if state is not None and not getattr(state, "finished", True):
        return
    lines = summary_lines(run_files(trainer, run_dir), fit_args)
    print("\n" + "\n".join(lines), file=sys.stdout, flush=True)
