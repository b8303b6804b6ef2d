"""Benchmark: our torch metrics vs the scipy / scikit-learn formulation on Penn Action-sized data.

Synthetic, phase-structured, L2-normalised embeddings: 13 sets (actions), ~160 videos
each split into train/val, ~100 frames, 128-d. Three implementations run on the same data
in one process, interleaved set by set: ``ours`` (the torch kernels called directly, the
path before the metric classes), ``classes`` (the ``torchmetrics.Metric`` classes the
evaluation now uses: one ``update`` per video, then ``compute``) and ``ref`` (scipy /
scikit-learn). Prints per-metric times, speed ratios and the metric values (mean over
sets). CPU only unless --device says otherwise.

    .venv/bin/python benchmarks/bench_metrics.py [--quick] [--device cpu]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from scipy.spatial.distance import cdist
from scipy.stats import kendalltau
from sklearn.linear_model import LinearRegression, LogisticRegression
from threadpoolctl import threadpool_limits

from mvf_lightning.evaluation import (
    kendalls_tau,
    phase_classification,
    phase_progression,
    retrieval_ap_at,
)
from mvf_lightning.evaluation.metrics import (
    KendallsTau,
    PhaseClassification,
    PhaseProgression,
    RetrievalAP,
)

KS = (5, 10, 15)


def make_set(rng: np.random.Generator, videos: int, frames: int, dim: int):
    """One action: videos drifting through 3-6 ordered phases, with per-video style and noise."""
    num_classes = int(rng.integers(3, 7))
    centers = rng.normal(size=(num_classes, dim))
    drift = rng.normal(size=dim)
    out = {"train": ([], []), "val": ([], [])}
    for v in range(videos):
        n = int(rng.integers(frames // 2, frames * 3 // 2))
        cuts = np.sort(rng.choice(np.arange(1, n), num_classes - 1, replace=False))
        y = np.searchsorted(cuts, np.arange(n), side="right")
        t = np.arange(n)[:, None] / n
        style = 0.5 * rng.normal(size=dim)
        x = centers[y] + 2.0 * t * drift + style + 3.0 * rng.normal(size=(n, dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        split = "train" if v % 2 == 0 else "val"
        out[split][0].append(x.astype(np.float32))
        out[split][1].append(y.astype(np.int64))
    return out, num_classes


# ----------------------------------------------------------------------------- reference


def ref_tau(embs, stride):
    taus = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, a in enumerate(embs):
            for j, b in enumerate(embs):
                if i != j:
                    nn = cdist(a[::stride], b[::stride], "sqeuclidean").argmin(1)
                    taus.append(kendalltau(np.arange(len(nn)), nn).statistic)
    return float(np.nanmean(taus))


def ref_ap(embs, labels, stride):
    xs = [e[::stride].astype(np.float64) for e in embs]
    ys = [y[::stride] for y in labels]
    per_video = {k: [] for k in KS}
    for i in range(len(xs)):
        cand = np.concatenate([xs[j] for j in range(len(xs)) if j != i])
        cand_y = np.concatenate([ys[j] for j in range(len(xs)) if j != i])
        nn = np.argsort(cdist(xs[i], cand, "sqeuclidean"), axis=1, kind="stable")[:, : max(KS)]
        hit = cand_y[nn] == ys[i][:, None]
        for k in KS:
            per_video[k].append(hit[:, :k].mean(1).mean())
    return {k: float(np.mean(v)) for k, v in per_video.items()}


def ref_classification(tx, ty, vx, vy, fraction):
    n = max(1, int(fraction * len(tx)))
    # float64 like ours; scikit-learn solves float32 input in float32
    clf = LogisticRegression(C=1.0, max_iter=10000)
    clf.fit(np.concatenate(tx[:n]).astype(np.float64), np.concatenate(ty[:n]))
    return float(clf.score(np.concatenate(vx).astype(np.float64), np.concatenate(vy)))


def targets(y, num_classes):
    return np.stack(
        [(np.arange(len(y)) - np.argwhere(y == i)[-1, 0]) / len(y) for i in range(num_classes - 1)],
        1,
    )


def ref_progression(tx, ty, vx, vy, num_classes):
    x = np.concatenate(tx).astype(np.float64)
    xv = np.concatenate(vx).astype(np.float64)
    t = np.concatenate([targets(y, num_classes) for y in ty])
    tv = np.concatenate([targets(y, num_classes) for y in vy])
    scores = [
        LinearRegression().fit(x, t[:, i]).score(xv, tv[:, i]) for i in range(num_classes - 1)
    ]
    return float(np.mean(scores))


# ----------------------------------------------------------------------------- runner


def run(impl: str, sets, stride: int, fractions, device: torch.device):
    """All metrics over all sets with one implementation; per-metric seconds and set means."""
    times: dict[str, float] = {}
    values: dict[str, list[float]] = {}

    def timed(name, fn):
        t0 = time.perf_counter()
        out = fn()
        times[name] = times.get(name, 0.0) + time.perf_counter() - t0
        return out

    for data, c in sets:
        tx, ty = data["train"]
        vx, vy = data["val"]
        if impl == "ours":
            tx, ty, vx, vy = (
                [torch.from_numpy(a).to(device) for a in group] for group in (tx, ty, vx, vy)
            )
            tau = timed("kendalls_tau", lambda: kendalls_tau(vx, stride=stride))  # noqa: B023
            ap = timed("retrieval_ap", lambda: retrieval_ap_at(vx, vy, KS, stride=stride))  # noqa: B023
            cls = {
                f: timed("classification", lambda f=f: phase_classification(tx, ty, vx, vy, f))  # noqa: B023
                for f in fractions
            }
            prog = timed("progression", lambda: phase_progression(tx, ty, vx, vy, c))  # noqa: B023
        elif impl == "classes":
            def fed(metric, tx=tx, ty=ty, vx=vx, vy=vy):
                metric.to(device)
                for i, (x, y) in enumerate(zip(tx, ty)):
                    metric.update(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device),
                                  video_id=f"t{i:04d}", train=True)
                for i, (x, y) in enumerate(zip(vx, vy)):
                    metric.update(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device),
                                  video_id=f"v{i:04d}")
                return metric.compute()

            tau_metric = KendallsTau(stride=stride, frames="all")
            tau = float(timed("kendalls_tau", lambda m=tau_metric: fed(m)))
            ap = timed("retrieval_ap", lambda: fed(RetrievalAP(k=list(KS), stride=stride)))
            ap = {k: float(ap[f"retrieval_ap@{k}"]) for k in KS}
            cls = {
                f: float(timed("classification",
                               lambda f=f: fed(PhaseClassification(fraction=f))))
                for f in fractions
            }
            prog = float(timed("progression", lambda: fed(PhaseProgression(num_classes=c))))  # noqa: B023
        else:
            tau = timed("kendalls_tau", lambda: ref_tau(vx, stride))  # noqa: B023
            ap = timed("retrieval_ap", lambda: ref_ap(vx, vy, stride))  # noqa: B023
            cls = {
                f: timed("classification", lambda f=f: ref_classification(tx, ty, vx, vy, f))  # noqa: B023
                for f in fractions
            }
            prog = timed("progression", lambda: ref_progression(tx, ty, vx, vy, c))  # noqa: B023
        values.setdefault("kendalls_tau", []).append(tau)
        for k in KS:
            values.setdefault(f"ap@{k}", []).append(ap[k])
        for f in fractions:
            values.setdefault(f"classification@{f:g}", []).append(cls[f])
        values.setdefault("progression", []).append(prog)
    return times, {k: float(np.mean(v)) for k, v in values.items()}, values


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="3 sets of 40 videos, ~60 frames")
    p.add_argument("--device", default="cpu")
    p.add_argument("--stride", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for torch and for numpy/scipy BLAS (default 1: on a shared machine "
        "multi-threaded OpenMP waits distort both sides)",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    num_sets, videos, frames, dim = (3, 40, 60, 128) if args.quick else (13, 160, 100, 128)
    rng = np.random.default_rng(args.seed)
    sets = [make_set(rng, videos, frames, dim) for _ in range(num_sets)]
    total_frames = sum(len(x) for d, _ in sets for s in d.values() for x in s[0])
    print(
        f"{num_sets} sets x {videos} videos (train/val halves), ~{frames} frames, {dim}-d, "
        f"{total_frames} frames; stride {args.stride}; torch threads {torch.get_num_threads()}"
    )
    fractions = (0.1, 0.5, 1.0)
    device = torch.device(args.device)
    # warm-up (first-call allocations) on a tiny set, not timed
    run("ours", [make_set(np.random.default_rng(1), 6, 20, dim)], args.stride, fractions, device)
    # Interleaved set by set, so load from other processes hits both sides alike.
    t_ours, t_ref, per_ours, per_ref = {}, {}, {}, {}
    t_cls, per_cls = {}, {}
    for one in sets:
        for impl, times, per in (("ours", t_ours, per_ours), ("classes", t_cls, per_cls),
                                 ("ref", t_ref, per_ref)):
            t, _, vals = run(impl, [one], args.stride, fractions, device)
            for k, v in t.items():
                times[k] = times.get(k, 0.0) + v
            for k, v in vals.items():
                per.setdefault(k, []).extend(v)
    v_ours = {k: float(np.mean(v)) for k, v in per_ours.items()}
    v_ref = {k: float(np.mean(v)) for k, v in per_ref.items()}

    print(f"\n{'metric':<16}{'ours s':>9}{'ref s':>9}{'ratio':>8}")
    for name in t_ours:
        print(f"{name:<16}{t_ours[name]:9.2f}{t_ref[name]:9.2f}{t_ref[name] / t_ours[name]:8.1f}x")
    to, tr = sum(t_ours.values()), sum(t_ref.values())
    print(f"{'total':<16}{to:9.2f}{tr:9.2f}{tr / to:8.1f}x")

    print("\nthe metric classes (torchmetrics, this evaluation's path) vs the kernels called "
          "directly (the path before them), same data:")
    print(f"{'metric':<16}{'classes s':>10}{'kernels s':>10}{'classes / kernels':>19}")
    for name in t_ours:
        ratio = t_cls[name] / t_ours[name]
        print(f"{name:<16}{t_cls[name]:10.2f}{t_ours[name]:10.2f}{ratio:18.2f}x")
    tc = sum(t_cls.values())
    print(f"{'total':<16}{tc:10.2f}{to:10.2f}{tc / to:18.2f}x")
    same = max(abs(a - b) for k in per_ours for a, b in zip(per_ours[k], per_cls[k]))
    print(f"max |classes - kernels| over every metric and set: {same:.2e}")

    print(f"\n{'value (mean over sets)':<24}{'ours':>12}{'ref':>12}{'max |diff| per set':>20}")
    for name in v_ours:
        diff = max(abs(a - b) for a, b in zip(per_ours[name], per_ref[name]))
        print(f"{name:<24}{v_ours[name]:12.6f}{v_ref[name]:12.6f}{diff:20.2e}")


if __name__ == "__main__":
    main()
