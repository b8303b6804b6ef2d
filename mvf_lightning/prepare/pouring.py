"""Pouring (TCC) -> index, from CARL's pickled release (``train.pkl``, ``val.pkl``, ``test.pkl``).

Each pickle is a list of dicts like Penn Action's (``name``, ``video_file``,
``frame_label``, ``seq_len``); a ``(videos, ...)`` tuple is accepted too. Videos stay in
place (see :mod:`.carl`); ids are the entries' names, every video's group is ``pouring``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mvf_lightning.prepare.carl import (
    CarlItem,
    carl_pickles,
    convert_items,
    entries_of,
    make_item,
    require,
)
from mvf_lightning.prepare.common import (
    Converter,
    add_trust_argument,
    ensure_indexes_writable,
    report_path,
    write_indexes,
    write_report,
)
from mvf_lightning.prepare.safe_pickle import load_trusted_pickle

DATASET = "pouring"
GROUP = "pouring"
SPLITS = ("train", "val", "test")


def convert_carl(
    carl_root: Path, out_root: Path, trust_pickle: bool, workers: int, overwrite: bool
) -> dict:
    """Convert CARL's Pouring pickles; returns the report (also written to disk)."""
    files = carl_pickles(carl_root, {s: f"{s}.pkl" for s in SPLITS}, "Pouring")
    ensure_indexes_writable(out_root, SPLITS, overwrite)
    split_items: dict[str, list[CarlItem]] = {}
    for split, pkl in files.items():
        entries = entries_of(load_trusted_pickle(pkl, trust_pickle), str(pkl))
        split_items[split] = [
            make_item(
                e,
                f"{pkl}: entry {i}",
                carl_root,
                str(require(e, "name", f"{pkl}: entry {i}")),
                GROUP,
            )
            for i, e in enumerate(entries)
        ]
    records, part = convert_items(
        split_items,
        out_root,
        workers,
        report_path(out_root, "pouring_carl_probe_cache").with_suffix(".jsonl"),
    )
    report = {"dataset": DATASET, "source": str(carl_root), **part}
    report["indexes"] = write_indexes(out_root, DATASET, records, overwrite)
    write_report(out_root, "pouring_carl", report)
    return report


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--carl", type=Path, required=True,
                   help="folder with train.pkl, val.pkl, test.pkl")
    add_trust_argument(p)


CONVERTER = Converter(
    name="pouring",
    help="Pouring from CARL's train/val/test.pkl",
    add_arguments=_add_arguments,
    run=lambda args: convert_carl(args.carl, args.out, args.trust_pickle, args.workers,
                                  args.overwrite),
)
