"""Time FineGym's SGD classification probe on a FineGym-sized synthetic set.

About 3,000 train and 1,000 val videos of 200 frames, 256-d L2-normalised embeddings, 99
classes (FineGym99's size); the probe at f = 0.1, 0.5, 1.0 with the reference's settings
(100 epochs, batches of 10 videos), on the CPU unless ``--device`` says otherwise.

    uv run python benchmarks/bench_finegym_probe.py [--epochs 100] [--device cpu]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

import numpy as np
import torch

from mvf_lightning.evaluation.metrics import SGDProbeSettings, phase_classification_sgd
from mvf_lightning.evaluation.metrics.sgd_probe import probe_train_videos


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def synthetic(num_videos: int, frames: int, dim: int, classes: int, seed: int):
    """Videos whose frames lie near per-class centres (the same centres for every ``seed``),
    each video four consecutive classes in ordered segments."""
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(12345))
    g = torch.Generator().manual_seed(seed)
    embs, labels = [], []
    for _ in range(num_videos):
        start = int(torch.randint(0, classes, (1,), generator=g))
        y = (start + torch.arange(frames) * 4 // frames) % classes
        x = centres[y] + 5.0 * torch.randn(frames, dim, generator=g)
        embs.append(torch.nn.functional.normalize(x, dim=1))
        labels.append(y)
    return embs, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--val", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--classes", type=int, default=99)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.5, 1.0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    tx, ty = synthetic(args.train, args.frames, args.dim, args.classes, seed=0)
    vx, vy = synthetic(args.val, args.frames, args.dim, args.classes, seed=1)
    tx, ty = [x.to(device) for x in tx], [y.to(device) for y in ty]
    vx, vy = [x.to(device) for x in vx], [y.to(device) for y in vy]
    settings = SGDProbeSettings(epochs=args.epochs)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"date     {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}")
    print(f"machine  {cpu_name()}, {os.cpu_count()} cores, torch threads {args.threads}, "
          f"device {device}, load average {load:.1f}")
    print(f"versions python {platform.python_version()}, torch {torch.__version__}, "
          f"numpy {np.__version__}")
    print(f"set      {args.train} train + {args.val} val videos x {args.frames} frames, "
          f"{args.dim}-d, {args.classes} classes, {args.epochs} epochs\n")
    print(f"{'fraction':>8} {'videos':>7} {'frames':>8} {'steps':>6} {'seconds':>8} "
          f"{'ms/step':>8} {'accuracy':>9}")
    total = 0.0
    for f in args.fractions:
        n = probe_train_videos(args.train, f, settings)
        steps = (n // settings.batch_videos) * settings.epochs
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        acc = phase_classification_sgd(tx, ty, vx, vy, f, num_classes=args.classes,
                                       settings=settings)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        total += seconds
        print(f"{f:>8g} {n:>7} {n * args.frames:>8} {steps:>6} {seconds:>8.1f} "
              f"{1000 * seconds / max(steps, 1):>8.2f} {acc:>9.4f}", flush=True)
    print(f"\nall fractions: {total:.1f} s")


if __name__ == "__main__":
    main()
