"""Training augmentation alone: ours against its previous structure and the reference's.

One training batch (one video, two views of T frames, uint8 with channel-last memory as the
loader delivers it) through three implementations of the same augmentation, interleaved
round by round in one process:

- **ours**: ``TrainAugmentation`` (per-view colour jitter of our own, uint8 -> float in
  cache-sized chunks, one bilinear sampling grid per view);
- **previous**: the structure before (Kornia's ``ColorJitter``, one op order per batch; the
  whole batch converted to float at full resolution; one sampling grid per frame);
- **reference structure**: torchvision's transforms view by view in a Python loop, as the
  reference's workers do (the other two run once for the whole batch).

Usage::

    uv run python benchmarks/bench_augment.py              # Penn- and FineGym-sized frames
    options: --frames 32 --crop 112 --rounds 15 --threads N --device cpu|cuda
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_header  # noqa: E402
from _reference_pipeline import reference_view_transform  # noqa: E402

from mvf_lightning.data.augment import (  # noqa: E402
    IMAGENET_MEAN,
    IMAGENET_STD,
    TrainAugmentation,
    random_resized_crop_boxes,
)

SIZES = {"penn": (224, 224), "finegym": (360, 640)}


class PreviousAugmentation(torch.nn.Module):
    """The structure ``TrainAugmentation`` had before (same settings, Kornia's jitter)."""

    def __init__(self, crop_size: int) -> None:
        super().__init__()
        import kornia.augmentation as K

        self.crop_size = crop_size
        self.augment = K.VideoSequential(
            K.RandomHorizontalFlip(p=0.5),
            K.ColorJitter(0.8, 0.8, 0.8, 0.2, p=0.8),
            K.RandomGaussianBlur((9, 5), (0.1, 2.0), p=0.4),
            K.RandomGrayscale(p=0.2),
            data_format="BTCHW",
            same_on_frame=True,
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(3, 1, 1), False)

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, v, t, c, height, width = frames.shape
        clips = frames.contiguous().float().div_(255.0).flatten(0, 1)
        n, size = b * v, self.crop_size
        top, left, h, w = random_resized_crop_boxes(n, height, width, device=clips.device).to(
            torch.float32).unbind(1)
        theta = torch.zeros(n, 2, 3, device=clips.device)
        theta[:, 0, 0], theta[:, 0, 2] = w / width, (2 * left + w) / width - 1
        theta[:, 1, 1], theta[:, 1, 2] = h / height, (2 * top + h) / height - 1
        grid = F.affine_grid(theta.repeat_interleave(t, 0), [n * t, c, size, size], False)
        out = F.grid_sample(clips.reshape(n * t, c, height, width), grid, "bilinear", "border",
                            align_corners=False).reshape(n, t, c, size, size)
        out = self.augment(out).clamp_(0.0, 1.0)
        return ((out - self.mean) / self.std).reshape(b, v, t, c, size, size)


class ReferencePerView:
    """torchvision's transforms, one view at a time (the reference's worker-side loop)."""

    def __init__(self, crop_size: int) -> None:
        self.transform = reference_view_transform(crop_size, IMAGENET_MEAN, IMAGENET_STD)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        b, v = frames.shape[:2]
        views = [self.transform(frames[i, j].contiguous()) for i in range(b) for j in range(v)]
        return torch.stack(views).unflatten(0, (b, v))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--crop", type=int, default=112)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.rounds = 4, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    pipelines = {
        "ours": TrainAugmentation(crop_size=args.crop).to(device),
        "previous (Kornia jitter)": PreviousAugmentation(args.crop).to(device),
        "reference structure (per view)": ReferencePerView(args.crop),
    }
    lines = [machine_header("Training augmentation alone"),
             f"one video, 2 views x {args.frames} frames -> {args.crop} px, device {device}, "
             f"medians of {args.rounds} interleaved rounds\n",
             "| frames | " + " | ".join(f"{k} (ms)" for k in pipelines)
             + " | previous / ours | reference / ours |",
             "| --- |" + " --- |" * (len(pipelines) + 2)]
    torch.manual_seed(0)
    for name, (height, width) in SIZES.items():
        frames = torch.randint(0, 256, (1, 2, args.frames, height, width, 3), dtype=torch.uint8)
        frames = frames.to(device).permute(0, 1, 2, 5, 3, 4)  # channel-last memory
        times: dict[str, list[float]] = {k: [] for k in pipelines}
        for fn in pipelines.values():  # warm-up
            fn(frames)
        for _ in range(args.rounds):
            for key, fn in pipelines.items():
                sync()
                start = time.perf_counter()
                fn(frames)
                sync()
                times[key].append(1000 * (time.perf_counter() - start))
        ms = {k: statistics.median(v) for k, v in times.items()}
        keys = list(pipelines)
        lines.append(f"| {name}-like {height}x{width} | " + " | ".join(f"{ms[k]:.1f}" for k in keys)
                     + f" | {ms[keys[1]] / ms[keys[0]]:.2f}x | {ms[keys[2]] / ms[keys[0]]:.2f}x |")
        print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
