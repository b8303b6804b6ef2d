"""Kinetics-400 -> index (unlabeled, for pretraining), clips referenced in place.

Reads ``annotations/<split>.csv`` (header ``label,youtube_id,time_start,time_end,split``)
and looks for ``<split>/<youtube_id>_<time_start:06d>_<time_end:06d>.mp4`` under the same
root. Each clip is probed (frame count, fps, first frame decoded); missing, undecodable
and empty clips are left out and listed with the reason in ``reports/kinetics400.json``.
Probe results are appended to ``reports/kinetics400_probe_cache.jsonl`` as they arrive, so
a restarted run only probes the clips it has not seen.

Ids are the clip file stems; the group is the class label from the csv (unused by
pretraining, handy for inspection); there are no frame labels.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from mvf_lightning.data.index import VideoRecord
from mvf_lightning.prepare.common import (
    Converter,
    PrepareError,
    count_by,
    ensure_indexes_writable,
    parallel_map,
    relative_to_root,
    report_path,
    write_indexes,
    write_report,
)
from mvf_lightning.prepare.media import ProbeCache, probe

DATASET = "kinetics400"
REQUIRED_COLUMNS = ("youtube_id", "time_start", "time_end")


def read_annotations(csv_path: Path) -> list[dict]:
    """Rows of a Kinetics annotation csv with id and clip file name added."""
    if not csv_path.is_file():
        raise PrepareError(f"Kinetics annotation file not found: {csv_path}")
    rows = []
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise PrepareError(
                f"{csv_path}: missing column(s) {missing}; expected the header "
                "label,youtube_id,time_start,time_end,split"
            )
        for lineno, row in enumerate(reader, 2):
            try:
                start = int(float(row["time_start"]))
                end = int(float(row["time_end"]))
            except (TypeError, ValueError):
                raise PrepareError(
                    f"{csv_path}:{lineno}: time_start/time_end must be numbers, got "
                    f"{row['time_start']!r}, {row['time_end']!r}"
                ) from None
            clip_id = f"{row['youtube_id']}_{start:06d}_{end:06d}"
            rows.append({"id": clip_id, "label": (row.get("label") or "").strip()})
    return rows


def _probe_worker(path: str):
    return probe(Path(path))


def convert(source: Path, out_root: Path, splits: list[str], workers: int, overwrite: bool) -> dict:
    """Index the clips of ``splits``; returns the report (also written to disk)."""
    if not source.is_dir():
        raise PrepareError(f"Kinetics root not found: {source}")
    annotations = {s: read_annotations(source / "annotations" / f"{s}.csv") for s in splits}
    ensure_indexes_writable(out_root, splits, overwrite)
    report: dict = {"dataset": DATASET, "source": str(source), "skipped": {}, "videos": {}}
    records: dict[str, list[VideoRecord]] = {}
    cache_file = report_path(out_root, "kinetics400_probe_cache").with_suffix(".jsonl")
    with ProbeCache(cache_file) as cache:
        for split, rows in annotations.items():
            # The same clip listed twice in a csv is indexed once.
            rows = list({r["id"]: r for r in rows}.values())
            paths = [source / split / f"{r['id']}.mp4" for r in rows]
            results: dict[Path, object] = {}
            todo = []
            for p in paths:
                cached = cache.get(p)
                if cached is None:
                    todo.append(p)
                else:
                    results[p] = cached
            report.setdefault("probe_cache_hits", {})[split] = len(results)
            probed = parallel_map(
                _probe_worker,
                [str(p) for p in todo],
                workers,
                f"kinetics400 {split}",
                unit="clip",
                chunksize=16,
            )
            for p, res in zip(todo, probed):
                cache.put(p, res)
                results[p] = res
            out, skipped = [], []
            for row, p in zip(rows, paths):
                info = results[p]
                if isinstance(info, str):
                    skipped.append({"id": row["id"], "path": str(p), "reason": info})
                    continue
                out.append(
                    VideoRecord(
                        id=row["id"],
                        path=relative_to_root(p, out_root),
                        num_frames=info.num_frames,
                        fps=info.fps,
                        group=row["label"],
                    )
                )
            records[split] = out
            report["videos"][split] = len(out)
            report["skipped"][split] = skipped
            report.setdefault("skipped_reasons", {})[split] = count_by(
                s["reason"].split(":")[0] for s in skipped
            )
    report["indexes"] = write_indexes(out_root, DATASET, records, overwrite)
    write_report(out_root, "kinetics400", report)
    return report


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", type=Path, required=True,
                   help="root with annotations/<split>.csv and <split>/<clip>.mp4")
    p.add_argument("--splits", nargs="+", default=["train", "val"])


CONVERTER = Converter(
    name="kinetics400",
    help="Kinetics-400 clips, unlabeled, referenced in place",
    add_arguments=_add_arguments,
    run=lambda args: convert(args.source, args.out, args.splits, args.workers, args.overwrite),
)
