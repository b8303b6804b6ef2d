"""``python -m mvf_lightning evaluate``: the four protocol metrics for an embedding export.

Reads an export written by :func:`mvf_lightning.evaluation.export.write_embeddings`,
computes per set (e.g. each Penn Action action) phase classification at each train
fraction, phase progression, Kendall's tau and retrieval AP@5/10/15, then the mean
over sets; prints a table and optionally writes JSON. Imports no Lightning.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mvf_lightning.evaluation.export import EmbeddingExportError, EmbeddingRecord, read_embeddings
from mvf_lightning.evaluation.metrics import (
    kendalls_tau,
    phase_classification,
    phase_progression,
    retrieval_ap_at,
)

RESULT_FORMAT = "mvf_lightning.metrics"
AP_KS = (5, 10, 15)


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of the ``evaluate`` subcommand."""
    p = argparse.ArgumentParser(
        prog="python -m mvf_lightning evaluate",
        description="Frame-level metrics (classification, progression, Kendall's tau, "
        "retrieval AP) of an embedding export, per set and averaged over sets.",
    )
    p.add_argument("--embeddings", required=True, type=Path, help="export directory")
    p.add_argument(
        "--stride", type=int, default=2, help="frame stride for tau and retrieval (default 2)"
    )
    p.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=[0.1, 0.5, 1.0],
        help="train-video fractions for phase classification (default 0.1 0.5 1.0)",
    )
    p.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    p.add_argument(
        "--device",
        default="auto",
        help="torch device for the metrics: auto (CUDA if available), cpu, cuda, cuda:1 ...",
    )
    return p


def _labelled(records: list[EmbeddingRecord], device: torch.device):
    """Embeddings and labels of the records that have labels, as tensors on ``device``."""
    embs, labels = [], []
    for r in records:
        if r.labels is not None:
            embs.append(torch.from_numpy(r.embeddings).to(device))
            labels.append(torch.from_numpy(r.labels).to(device))
    return embs, labels


def _fmt_fraction(f: float) -> str:
    return f"{f:g}"


def metric_names(fractions: list[float]) -> list[str]:
    """Result keys in table order."""
    names = [f"classification@{_fmt_fraction(f)}" for f in fractions]
    names += ["progression", "kendalls_tau"] + [f"ap@{k}" for k in AP_KS]
    return names


def evaluate_set(
    splits: dict[str, list[EmbeddingRecord]],
    stride: int,
    fractions: list[float],
    device: torch.device,
) -> dict[str, float]:
    """All metrics of one set; ``nan`` where a split or its labels are missing."""
    out = {name: math.nan for name in metric_names(fractions)}
    tx, ty = _labelled(splits.get("train", []), device)
    vx, vy = _labelled(splits.get("val", []), device)
    # Kendall's tau uses every val video; frames with label < 0 are dropped where known.
    tau_embs = []
    for r in splits.get("val", []):
        e = torch.from_numpy(r.embeddings).to(device)
        if r.labels is not None:
            e = e[torch.from_numpy(r.labels).to(device) >= 0]
        tau_embs.append(e)
    if tau_embs:
        out["kendalls_tau"] = kendalls_tau(tau_embs, stride=stride)
    if vx:
        for k, v in retrieval_ap_at(vx, vy, AP_KS, stride=stride).items():
            out[f"ap@{k}"] = v
    if tx and vx:
        has_train = any(bool((y >= 0).any()) for y in ty)
        max_label = max(int(y.max()) if y.numel() else -1 for y in ty + vy)
        for f in fractions:
            n = max(1, int(f * len(tx)))
            if any(bool((y >= 0).any()) for y in ty[:n]):
                out[f"classification@{_fmt_fraction(f)}"] = phase_classification(
                    tx, ty, vx, vy, fraction=f
                )
        if has_train and max_label + 1 >= 2:
            out["progression"] = phase_progression(tx, ty, vx, vy, num_classes=max_label + 1)
    return out


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def format_table(results: dict[str, dict[str, float]], names: list[str]) -> str:
    """A plain-text table: one row per set plus the mean; values as fractions."""
    width = max([len("set")] + [len(s) for s in results]) + 2
    cols = [max(len(n), 8) + 2 for n in names]
    lines = ["set".ljust(width) + "".join(n.rjust(c) for n, c in zip(names, cols))]
    lines.append("-" * len(lines[0]))
    for set_name, row in results.items():
        if set_name == "mean":
            lines.append("-" * len(lines[0]))
        cells = ["nan" if math.isnan(row[n]) else f"{row[n]:.4f}" for n in names]
        lines.append(set_name.ljust(width) + "".join(v.rjust(c) for v, c in zip(cells, cols)))
    return "\n".join(lines)


def _json_value(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


def main(argv: list[str] | None = None) -> int:
    """Run ``evaluate``; returns the exit status (0 ok, 1 unreadable export or bad values)."""
    args = build_parser().parse_args(argv)
    if args.stride < 1:
        print(f"error: --stride must be >= 1, got {args.stride}", file=sys.stderr)
        return 1
    bad = [f for f in args.fractions if not 0.0 < f <= 1.0]
    if bad:
        print(f"error: --fractions must lie in (0, 1], got {bad}", file=sys.stderr)
        return 1
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    try:
        sets = read_embeddings(args.embeddings)
    except EmbeddingExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

    names = metric_names(args.fractions)
    start = time.perf_counter()
    results: dict[str, dict[str, float]] = {}
    for set_name in sorted(sets):
        try:
            results[set_name] = evaluate_set(sets[set_name], args.stride, args.fractions, device)
        except ValueError as e:
            print(f"error: set {set_name!r}: {e}", file=sys.stderr)
            return 1
    mean = {n: _mean([r[n] for r in results.values()]) for n in names}
    seconds = time.perf_counter() - start
    table = dict(results)
    table["mean"] = mean
    print(format_table(table, names))
    print(
        f"{len(results)} sets, stride {args.stride}, device {device}, {seconds:.1f} s "
        "(classification and AP are fractions in [0, 1])"
    )
    if args.output is not None:
        payload = {
            "format": RESULT_FORMAT,
            "version": 1,
            "embeddings": str(args.embeddings),
            "stride": args.stride,
            "fractions": list(args.fractions),
            "sets": {s: {n: _json_value(v) for n, v in r.items()} for s, r in results.items()},
            "mean": {n: _json_value(v) for n, v in mean.items()},
            "num_sets": len(results),
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
