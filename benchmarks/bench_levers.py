"""The speed switches of the model, each measured against the default on the same frames.

One model step (forward, SCL, backward, Adam) on fixed augmented frames, and the frozen
backbone's forward alone, for every variant: ``backbone.autocast`` (bf16 / fp16),
``backbone.fused_attn``, ``backbone.chunk_size``, ``backbone.compile``, ``embedder.compile``,
Lightning's whole-step ``bf16-mixed`` precision, and for a CNN backbone
``backbone.channels_last``. Variants run interleaved round by round (default, variant,
default, ...), so load from other processes hits all of them; medians are reported.

Usage::

    uv run python benchmarks/bench_levers.py                # ViT-S/16 at 112 px, T = 32
    uv run python benchmarks/bench_levers.py --quick        # a smoke run
    options: --backbone --img --frames --rounds --cnn --cnn-img --skip-compile --device
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_header  # noqa: E402

from mvf_lightning.losses import sequence_contrastive_loss  # noqa: E402
from mvf_lightning.models.backbone import BackboneConfig  # noqa: E402
from mvf_lightning.models.mvformer import EmbedderConfig, MVFormer  # noqa: E402


@dataclasses.dataclass
class Variant:
    name: str
    switch: str
    backbone: dict = dataclasses.field(default_factory=dict)
    embedder: dict = dataclasses.field(default_factory=dict)
    step_autocast: bool = False
    """Autocast the whole step in bf16 (what ``trainer.precision: bf16-mixed`` does)."""


class Runner:
    """One model of one variant with its optimiser; times a step and a backbone forward."""

    def __init__(self, variant: Variant, base: BackboneConfig, frames: int, device: str):
        torch.manual_seed(0)
        backbone = dataclasses.replace(base, **variant.backbone)
        self.model = MVFormer(backbone, EmbedderConfig(num_frames=frames, **variant.embedder))
        self.model.to(device).train()
        self.variant, self.device = variant, device
        self.opt = torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad])

    def _autocast(self):
        if not self.variant.step_autocast:
            return contextlib.nullcontext()
        return torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16)

    def step(self, frames: torch.Tensor, batch: dict) -> None:
        b, v, t = frames.shape[:3]
        with self._autocast():
            out = self.model(frames.flatten(0, 1), batch["masks"].flatten(0, 1))
            z = self.model.project(out["embeddings"]).view(b, v, t, -1)
            loss = sequence_contrastive_loss(z, batch["steps"], batch["seq_lens"], batch["masks"])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        _sync(self.device)

    @torch.no_grad()
    def backbone_forward(self, frames: torch.Tensor) -> None:
        with self._autocast():
            self.model.backbone(frames.flatten(0, 2))
        _sync(self.device)


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def inputs(frames: int, img: int, device: str) -> tuple[torch.Tensor, dict]:
    """One video, two views of ``frames`` normalised frames, with sorted steps and masks."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, frames, 3, img, img, generator=g).to(device)
    length = int(frames * 1.3) + 1
    steps = torch.stack([torch.randperm(length, generator=g)[:frames].sort().values
                         for _ in range(2)])
    batch = {
        "steps": steps.unsqueeze(0).to(device),
        "seq_lens": torch.full((1, 2), length, device=device),
        "masks": torch.ones(1, 2, frames, dtype=torch.bool, device=device),
    }
    return x, batch


def measure(variants: list[Variant], base: BackboneConfig, args) -> list[str]:
    frames, batch = inputs(args.frames, base.img_size or args.cnn_img, args.device)
    runners = []
    for variant in variants:
        start = time.perf_counter()
        runner = Runner(variant, base, args.frames, args.device)
        runner.step(frames, batch)  # warm-up (and compilation)
        runner.backbone_forward(frames)
        runners.append((runner, time.perf_counter() - start))
    steps: dict[str, list[float]] = {v.name: [] for v in variants}
    forwards: dict[str, list[float]] = {v.name: [] for v in variants}
    for _ in range(args.rounds):
        for runner, _ in runners:
            name = runner.variant.name
            steps[name].append(_timed(lambda r=runner: r.step(frames, batch)))
            forwards[name].append(_timed(lambda r=runner: r.backbone_forward(frames)))
    base_step = statistics.median(steps[variants[0].name])
    rows = [
        "| variant | switch | model step (s) | vs default | backbone forward (s) "
        "| step / backbone forward | first step incl. compile (s) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (_, first), variant in zip(runners, variants):
        s = statistics.median(steps[variant.name])
        f = statistics.median(forwards[variant.name])
        rows.append(
            f"| {variant.name} | `{variant.switch}` | {s:.3f} | {base_step / s:.2f}x | {f:.3f} "
            f"| {s / f:.2f} | {first:.1f} |"
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="vit_small_patch16_224")
    parser.add_argument("--img", type=int, default=112)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cnn", default="efficientnet_lite0")
    parser.add_argument("--cnn-img", type=int, default=224)
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.img, args.frames, args.rounds, args.cnn_img = 32, 4, 1, 64
    half = "fp16" if args.device.startswith("cuda") else "bf16"
    vit_variants = [
        Variant("default (fp32, fused attention, chunks of 40)", "defaults"),
        Variant(f"backbone autocast {half}", f"model.backbone.autocast: {half}",
                backbone={"autocast": half}),
        Variant("whole step bf16 autocast", "trainer.precision: bf16-mixed",
                step_autocast=True),
        Variant("explicit attention in the backbone", "model.backbone.fused_attn: false",
                backbone={"fused_attn": False}),
        Variant("backbone chunks of 16 frames", "model.backbone.chunk_size: 16",
                backbone={"chunk_size": 16}),
        Variant("backbone chunks of 128 frames", "model.backbone.chunk_size: 128",
                backbone={"chunk_size": 128}),
    ]
    if not args.skip_compile:
        vit_variants += [
            Variant("compiled backbone", "model.backbone.compile: true",
                    backbone={"compile": True}),
            Variant("compiled embedder", "model.embedder.compile: true",
                    embedder={"compile": True}),
        ]
    vit = BackboneConfig(name=args.backbone, pretrained="none", img_size=args.img)
    cnn = BackboneConfig(name=args.cnn, pretrained="none")
    cnn_variants = [
        Variant("default (fp32, contiguous)", "defaults"),
        Variant("channels-last", "model.backbone.channels_last: true",
                backbone={"channels_last": True}),
        Variant(f"backbone autocast {half}", f"model.backbone.autocast: {half}",
                backbone={"autocast": half}),
        Variant(f"channels-last + autocast {half}",
                f"channels_last: true, autocast: {half}",
                backbone={"channels_last": True, "autocast": half}),
    ]
    lines = [
        machine_header("Model speed switches"),
        f"one video, 2 views x T = {args.frames}; SCL; Adam; median of {args.rounds} "
        f"interleaved rounds; device {args.device}\n",
        f"### {args.backbone} at {args.img} px (random weights), Penn Action embedder\n",
        *measure(vit_variants, vit, args),
        "",
        f"### {args.cnn} at {args.cnn_img} px (random weights), Penn Action embedder\n",
        *measure(cnn_variants, cnn, argparse.Namespace(**{**vars(args), "img": args.cnn_img})),
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
