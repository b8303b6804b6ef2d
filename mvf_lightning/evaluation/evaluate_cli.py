"""``python -m mvf_lightning evaluate``: the protocol's metrics for an embedding export.

Reads an export written by :func:`mvf_lightning.evaluation.export.write_embeddings` and
scores it with the protocol the export records (the one training used: stride, probe,
fractions, phase counts, train order), so no flag is needed; ``--stride``, ``--fractions``
and ``--probe`` override it explicitly. Prints the same table as the training callback
and optionally writes the same results JSON. Imports no Lightning.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from mvf_lightning.evaluation.export import (
    EmbeddingExportError,
    read_embeddings,
    read_export_info,
)
from mvf_lightning.evaluation.protocol import (
    PROBES,
    EvalProtocol,
    format_table,
    results_payload,
    score_sets,
    write_results,
)


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of the ``evaluate`` subcommand."""
    p = argparse.ArgumentParser(
        prog="python -m mvf_lightning evaluate",
        description="Frame-level metrics (classification, progression, Kendall's tau, "
        "retrieval AP) of an embedding export, per set and averaged over sets, with the "
        "evaluation protocol recorded in the export.",
    )
    p.add_argument("--embeddings", required=True, type=Path, help="export directory")
    p.add_argument(
        "--stride", type=int, default=None,
        help="override the recorded frame stride for tau and retrieval",
    )
    p.add_argument(
        "--fractions", type=float, nargs="+", default=None,
        help="override the recorded train-video fractions for phase classification",
    )
    p.add_argument(
        "--probe", choices=PROBES, default=None,
        help="override the recorded classification probe (logreg: logistic regression; "
        "sgd: FineGym's SGD linear probe)",
    )
    p.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    p.add_argument(
        "--device",
        default="auto",
        help="torch device for the metrics: auto (CUDA if available), cpu, cuda, cuda:1 ...",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``evaluate``; returns the exit status (0 ok, 1 unreadable export or bad values)."""
    args = build_parser().parse_args(argv)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    try:
        info = read_export_info(args.embeddings)
        sets = read_embeddings(args.embeddings)
    except EmbeddingExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    protocol = info["protocol"]
    if protocol is None:
        protocol = EvalProtocol()
        print(f"note: {args.embeddings} records no evaluation protocol (an older export); "
              f"using the defaults: stride {protocol.stride}, probe {protocol.probe}, "
              f"fractions {list(protocol.fractions)}")
    try:
        protocol = protocol.replace(
            stride=args.stride,
            fractions=None if args.fractions is None else tuple(args.fractions),
            probe=args.probe,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    videos = [rec for by_split in sets.values() for recs in by_split.values() for rec in recs]
    videos += info["broken_videos"]
    start = time.perf_counter()
    try:
        results = score_sets(videos, protocol, device)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    dataset = info["dataset"] or "eval"
    print(format_table(results.table(), f"evaluate metrics ({dataset})", results.broken))
    print(
        f"{len(results.sets)} sets, stride {protocol.stride}, probe {protocol.probe}, device "
        f"{device}, {seconds:.1f} s (classification and AP are fractions in [0, 1])"
    )
    if args.output is not None:
        payload = results_payload(
            results, protocol, stage="evaluate", dataset=dataset,
            embeddings=str(args.embeddings),
        )
        write_results(args.output, payload)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
