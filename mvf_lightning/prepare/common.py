"""Plumbing shared by every converter: errors, index guards, reports, parallel work, and
:class:`Converter`, what a converter module defines to become a ``prepare`` command.

Each converter follows the same pattern: refuse early if an index it would write already
exists (unless ``--overwrite``), do the per-video work in a pool with a progress bar,
skip work a previous interrupted run already finished, then write the indexes and a
JSON report at the end. Nothing here imports Lightning.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from mvf_lightning.data.index import VideoIndex, VideoRecord, index_path
from mvf_lightning.errors import MVFError
from mvf_lightning.utils.atomic import atomic_path

T = TypeVar("T")
R = TypeVar("R")

REPORT_DIRNAME = "reports"


class PrepareError(MVFError):
    """Bad input to a converter; the message names the file/key/value and what was expected."""


def default_workers() -> int:
    """Worker processes used when ``--workers`` is not given: every core."""
    return max(1, os.cpu_count() or 1)


def ensure_indexes_writable(out_root: Path, splits: Sequence[str], overwrite: bool) -> list[Path]:
    """Return the index paths for ``splits``; refuse (before any work) if one exists already."""
    paths = [index_path(out_root, s) for s in splits]
    if not overwrite:
        existing = [p for p in paths if p.exists()]
        if existing:
            names = ", ".join(str(p) for p in existing)
            raise PrepareError(
                f"index already exists: {names}; pass --overwrite to replace it "
                "(videos already converted are reused either way)"
            )
    return paths


def write_indexes(
    out_root: Path,
    dataset: str,
    split_records: dict[str, list[VideoRecord]],
    overwrite: bool,
) -> dict[str, str]:
    """Save one index per split under ``<out_root>/index/``; returns split -> file written."""
    written = {}
    for split, records in split_records.items():
        idx = VideoIndex(dataset=dataset, split=split, videos=records, root=out_root)
        path = idx.save(index_path(out_root, split), overwrite=overwrite)
        written[split] = str(path)
    return written


def write_json_atomic(path: Path, data: Any) -> Path:
    """Write JSON under a temp name, then rename, so a crash never leaves half a file."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


def report_path(out_root: Path, name: str) -> Path:
    """Where the JSON report of conversion ``name`` goes: ``<out_root>/reports/<name>.json``."""
    return out_root / REPORT_DIRNAME / f"{name}.json"


def write_report(out_root: Path, name: str, report: dict) -> Path:
    """Write a conversion report and print where it is."""
    path = write_json_atomic(report_path(out_root, name), report)
    print(f"report: {path}", file=sys.stderr)
    return path


def relative_to_root(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` in POSIX form (may start with ``..``); indexes store this.

    Videos referenced in place (Kinetics, CARL releases) are not copied or symlinked: the
    index records a relative path, so moving the source and output together keeps working.
    """
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    return Path(rel).as_posix()


def parallel_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int,
    desc: str,
    unit: str = "video",
    chunksize: int = 1,
) -> Iterator[R]:
    """Apply ``fn`` to ``items`` in input order, in ``workers`` processes, with a progress bar.

    ``fn`` must be a module-level function (it is pickled to the workers) and should turn
    expected per-item failures into result values rather than raising. With one worker
    (or one item) everything runs in this process, which keeps tests and debugging simple.
    """
    bar = tqdm(total=len(items), desc=desc, unit=unit, file=sys.stderr, mininterval=0.5)
    try:
        if workers <= 1 or len(items) <= 1:
            for item in items:
                yield fn(item)
                bar.update(1)
            return
        with ProcessPoolExecutor(max_workers=min(workers, len(items))) as pool:
            for result in pool.map(fn, items, chunksize=max(1, chunksize)):
                yield result
                bar.update(1)
    finally:
        bar.close()


def count_by(values: Iterable[str]) -> dict[str, int]:
    """How often each value occurs, in first-seen order (for reports)."""
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


# ----------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class Converter:
    """One ``python -m mvf_lightning prepare <name>`` command. A converter module of this
    package defines one as ``CONVERTER``; the command line finds it there (no list to edit).

    Attributes:
        name: the subcommand, e.g. ``penn-action``.
        help: one line for ``prepare --help``.
        add_arguments: adds the converter's own options to its argparse parser (``--out``,
            ``--workers`` and ``--overwrite`` are added for every converter).
        run: converts with the parsed arguments and returns the report (its ``videos``
            entry counts the videos per split).
        description: the longer text of ``prepare <name> --help``.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], dict]
    description: str = ""


def converters() -> dict[str, Converter]:
    """Every ``CONVERTER`` defined by a module of this package, by command name."""
    import importlib
    import pkgutil

    import mvf_lightning.prepare as package

    found: dict[str, Converter] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_") or info.ispkg:
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        converter = vars(module).get("CONVERTER")
        if isinstance(converter, Converter):
            if converter.name in found:
                raise PrepareError(f"two converters are named {converter.name!r}")
            found[converter.name] = converter
    return dict(sorted(found.items()))


def add_trust_argument(parser: argparse.ArgumentParser) -> None:
    """``--trust-pickle`` for converters that read CARL's pickled releases."""
    from mvf_lightning.prepare.safe_pickle import TRUST_HELP

    parser.add_argument("--trust-pickle", action="store_true", help=TRUST_HELP)


def need(args: argparse.Namespace, names: list[str], mode: str) -> None:
    """Refuse (naming them) options a mode of a converter needs but did not get."""
    missing = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) is None]
    if missing:
        raise PrepareError(f"{args.command} {mode} needs {', '.join(missing)}")
