"""Run identity for ``fit``: a stable name, a stable directory, resume from its newest checkpoint.

A run is named by ``--run_name`` (under Slurm by default the job id, which a requeued job
keeps) and lives in ``<runs_dir>/<run_name>/``: Lightning's HPC checkpoints
(``hpc_ckpt_<n>.ckpt``, written on the requeue signal), ``checkpoints/`` (``last.ckpt`` ...),
the loggers' files and ``run.json`` (the W&B run id and one line per attempt). Starting the
same run again continues from the newest readable checkpoint through Lightning's own
``ckpt_path`` and logs into the same W&B run (``WandbLogger(id=..., resume="allow")``).
Launch, rank discovery, the HPC checkpoint and the requeue itself stay Lightning's and Slurm's.
The one choice made here is which checkpoint: left alone, Lightning 2.6 restores
``hpc_ckpt_<max>`` from ``default_root_dir`` under Slurm even when a later ``last.ckpt`` exists,
and nothing after a node failure or a kill (no HPC checkpoint then), so ``ckpt_path`` is set
to the newest readable one of both kinds.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import string
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..utils.atomic import atomic_path

RUN_FILE = "run.json"
CHECKPOINT_DIRNAME = "checkpoints"
RESUME_CHOICES = ("auto",)
_HPC_CHECKPOINT = re.compile(r"hpc_ckpt_(\d+)\.ckpt$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]*$")


class RunError(ConfigError):
    """A run-identity mistake the user can fix (printed as one line by the CLI)."""


@dataclass
class Run:
    """One training run: its name, directory, W&B id and the checkpoint it resumes from."""

    name: str
    dir: Path
    wandb_id: str | None
    resume_from: Path | None


def slurm_job_name() -> str | None:
    """The Slurm job id of a batch job (``<array job>_<task>`` for arrays), else None.

    Uses Lightning's own detection, so an interactive ``srun bash`` is not a job to name runs by.
    """
    from lightning.fabric.plugins.environments import SLURMEnvironment

    if not SLURMEnvironment.detect():
        return None
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job is not None:
        return f"{array_job}_{os.environ.get('SLURM_ARRAY_TASK_ID', '0')}"
    return os.environ.get("SLURM_JOB_ID")


def global_rank() -> int:
    """This process's global rank as Lightning reads it from the environment (0 if alone)."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


def is_readable_checkpoint(path: Path) -> bool:
    """True for a complete ``torch.save`` zip file; a checkpoint cut short by a kill is not."""
    try:
        with zipfile.ZipFile(path):
            return True
    except (OSError, zipfile.BadZipFile):
        return False


def checkpoint_candidates(run_dir: Path, checkpoint_dirs: list[Path]) -> list[Path]:
    """Lightning's newest HPC checkpoint in ``run_dir`` and every ``.ckpt`` in the checkpoint
    folders, newest first (by modification time)."""
    found: list[Path] = []
    hpc = [(int(m.group(1)), p) for p in run_dir.glob("hpc_ckpt_*.ckpt")
           if (m := _HPC_CHECKPOINT.search(p.name))]
    found += [p for _, p in sorted(hpc, reverse=True)]
    for folder in checkpoint_dirs:
        if folder.is_dir():
            found += [p for p in folder.glob("*.ckpt") if p.is_file()]
    unique = list(dict.fromkeys(found))
    return sorted(unique, key=lambda p: p.stat().st_mtime, reverse=True)


def newest_checkpoint(
    run_dir: Path, checkpoint_dirs: list[Path], skipped: list[Path] | None = None
) -> Path | None:
    """The checkpoint a restarted run continues from: the newest readable one, or None.
    Newer ones that cannot be read (cut short by a kill) are appended to ``skipped``."""
    for path in checkpoint_candidates(run_dir, checkpoint_dirs):
        if is_readable_checkpoint(path):
            return path
        if skipped is not None:
            skipped.append(path)
    return None


def read_run_file(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RUN_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RunError(f"{path}: not valid JSON ({e.msg}); fix or remove it") from None


def new_wandb_id() -> str:
    """An 8-character id like W&B's own (lowercase letters and digits)."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def start_run(
    run_name: str | None,
    resume: str | None,
    runs_dir: str | os.PathLike,
    checkpoint_dirs: Callable[[Path], list[Path]] | None = None,
    explicit_ckpt: bool = False,
    rank: int | None = None,
) -> Run | None:
    """Resolve the run of this ``fit``: name, directory, W&B id and checkpoint to resume from.

    The name is ``run_name``, else under Slurm the job id (not for the runs of a W&B sweep
    agent: several per job); no run (None) without either. Under Slurm, or with
    ``--resume auto``, an existing run continues from its newest checkpoint; outside Slurm a
    run that already has checkpoints is refused unless ``--resume auto`` (or ``--ckpt_path``)
    says what to do, so nothing is trained over by accident. Global rank 0 records the attempt.
    """
    if resume not in (None, *RESUME_CHOICES):
        raise RunError(f"--resume {resume!r}: expected auto (continue from the newest checkpoint)")
    job = slurm_job_name()
    if job is not None and os.environ.get("WANDB_SWEEP_ID"):
        job = None  # a sweep agent's runs (several per job) are the agent's, not the job's
    name = run_name or job
    if name is None:
        if resume == "auto":
            raise RunError("--resume auto needs --run_name NAME (the run to continue)")
        return None
    if not _NAME.match(name):
        raise RunError(
            f"--run_name {name!r}: use letters, digits and . _ = - (it names a folder)"
        )
    run_dir = Path(runs_dir) / name
    rank = global_rank() if rank is None else rank
    auto = resume == "auto" or job is not None

    folders = checkpoint_dirs(run_dir) if checkpoint_dirs else [run_dir / CHECKPOINT_DIRNAME]
    unreadable: list[Path] = []
    newest = newest_checkpoint(run_dir, folders, unreadable)
    if unreadable and auto and not explicit_ckpt and rank == 0:
        where = f"continuing from {newest}" if newest else "no readable one left: starting over"
        print(
            f"warning: run {name!r}: skipped {len(unreadable)} unreadable checkpoint(s) (cut "
            f"short while being written?): {', '.join(str(p) for p in unreadable)}; {where}",
            file=sys.stderr, flush=True,
        )
    resume_from = None
    if newest is not None and not explicit_ckpt:
        if auto:
            resume_from = newest
        else:
            raise RunError(
                f"run {name!r} already has checkpoints in {run_dir}: add --resume auto to "
                "continue it, or choose another --run_name"
            )

    record = read_run_file(run_dir)
    wandb_id = os.environ.get("WANDB_RUN_ID") or record.get("wandb_id")
    if rank == 0:
        if wandb_id is None:
            wandb_id = new_wandb_id()
        attempts = record.get("attempts", [])
        attempts.append(
            {
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "slurm_job_id": job,
                "slurm_restart_count": int(os.environ.get("SLURM_RESTART_COUNT", 0) or 0)
                if job
                else None,
                "resumed_from": str(resume_from) if resume_from else None,
            }
        )
        record.update(name=name, wandb_id=record.get("wandb_id") or wandb_id, attempts=attempts)
        with atomic_path(run_dir / RUN_FILE) as tmp:
            tmp.write_text(json.dumps(record, indent=2) + "\n")
    return Run(name=name, dir=run_dir, wandb_id=wandb_id, resume_from=resume_from)


# --- applying a run to a parsed LightningCLI ``fit`` config ---------------------------------


def _get(ns: Any, key: str, default: Any = None) -> Any:
    if ns is None:
        return default
    if isinstance(ns, dict):
        return ns.get(key, default)
    return getattr(ns, key, default)


def _set(ns: Any, key: str, value: Any) -> None:
    if isinstance(ns, dict):
        ns[key] = value
    else:
        setattr(ns, key, value)


def _class_of(entry: Any) -> type | None:
    """The class a ``{class_path, init_args}`` config entry names, or None."""
    import importlib

    path = _get(entry, "class_path")
    if not isinstance(path, str) or "." not in path:
        return None
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def _entries(value: Any) -> list[Any]:
    if value is None or isinstance(value, bool):
        return []
    return list(value) if isinstance(value, list) else [value]


def _init_args(entry: Any) -> Any:
    args = _get(entry, "init_args")
    if args is None:
        from jsonargparse import Namespace

        args = Namespace()
        _set(entry, "init_args", args)
    return args


def checkpoint_dirs_of(config: Any, run_dir: Path) -> list[Path]:
    """Where this config's ``ModelCheckpoint`` callbacks write, once the run is applied."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    dirs = []
    for entry in _entries(_get(_get(config, "trainer"), "callbacks")):
        cls = _class_of(entry)
        if cls is not None and issubclass(cls, ModelCheckpoint):
            dirpath = _get(_get(entry, "init_args"), "dirpath")
            dirs.append(Path(dirpath) if dirpath else run_dir / CHECKPOINT_DIRNAME)
    return dirs or [run_dir / CHECKPOINT_DIRNAME]


def apply_run(config: Any, run: Run) -> None:
    """Point a parsed ``fit`` config at the run: its directory for the trainer's root (where
    Lightning writes and finds HPC checkpoints), the loggers and ``ModelCheckpoint`` folders
    left unset, the W&B id with ``resume="allow"``, and ``ckpt_path`` to resume from."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import WandbLogger

    trainer = _get(config, "trainer")
    run_dir = str(run.dir)
    _set(trainer, "default_root_dir", run_dir)
    for entry in _entries(_get(trainer, "logger")):
        cls = _class_of(entry)
        if cls is None:
            continue
        args = _init_args(entry)
        if "save_dir" in args or issubclass(cls, WandbLogger):
            _set(args, "save_dir", run_dir)
        if issubclass(cls, WandbLogger):
            _set(args, "id", run.wandb_id)
            extra = _get(entry, "dict_kwargs") or {}  # WandbLogger passes **kwargs to wandb.init
            extra = dict(extra.items()) if not isinstance(extra, dict) else extra
            extra.setdefault("resume", "allow")
            _set(entry, "dict_kwargs", extra)
    for entry in _entries(_get(trainer, "callbacks")):
        cls = _class_of(entry)
        if cls is not None and issubclass(cls, ModelCheckpoint):
            args = _init_args(entry)
            if not _get(args, "dirpath"):
                _set(args, "dirpath", str(run.dir / CHECKPOINT_DIRNAME))
    if run.resume_from is not None:
        _set(config, "ckpt_path", str(run.resume_from))


def add_run_arguments(parser: Any) -> None:
    """``--run_name``, ``--resume`` and ``--runs_dir`` on a LightningCLI subcommand parser."""
    parser.add_argument(
        "--run_name", type=str | None, default=None,
        help="Name of the run: its folder is <runs_dir>/<run_name>; under Slurm the job id by "
        "default. Starting a run that exists continues it (under Slurm, or with --resume auto).",
    )
    parser.add_argument(
        "--resume", type=str | None, default=None,
        help="auto: continue the run from its newest checkpoint if it has one (always so "
        "under Slurm). Without it, a run that already has checkpoints is refused.",
    )
    parser.add_argument(
        "--runs_dir", type=str, default="runs", help="Folder that holds one folder per run."
    )


def start_run_from_config(config: Any) -> Run | None:
    """Resolve and apply the run of a parsed ``fit`` config (no-op without a run name)."""
    run = start_run(
        _get(config, "run_name"),
        _get(config, "resume"),
        _get(config, "runs_dir") or "runs",
        checkpoint_dirs=lambda run_dir: checkpoint_dirs_of(config, run_dir),
        explicit_ckpt=bool(_get(config, "ckpt_path")),
    )
    if run is not None:
        apply_run(config, run)
    return run
