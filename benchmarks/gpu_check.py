"""GPU readiness check for the Penn Action config, one Markdown table (run by gpu_check.sh).

Measures, with random weights and generated videos (no network, no dataset):
training step time under bf16 and fp16 autocast against the frozen backbone's forward for the
same frames; GPU utilisation and step time over ``--steps`` steps fed by the real data loader
(decord workers, Kornia augmentation on the GPU); peak GPU memory; evaluation throughput
(whole-video embedding, frames/s); and whether ``torch.compile`` of the embedder helps.

Without a CUDA device every GPU figure is reported as "not measured"; ``--device cpu
--tiny`` runs the same code on small sizes, which is how the test suite checks the output.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_header  # noqa: E402

from mvf_lightning.data.augment import TrainAugmentation  # noqa: E402
from mvf_lightning.data.datasets import TrainClipDataset, collate_train  # noqa: E402
from mvf_lightning.data.demo import ensure_demo_dataset  # noqa: E402
from mvf_lightning.data.index import VideoIndex, index_path  # noqa: E402
from mvf_lightning.data.sampling import TimeAugmentSampler  # noqa: E402
from mvf_lightning.losses import sequence_contrastive_loss  # noqa: E402
from mvf_lightning.models.backbone import BackboneConfig  # noqa: E402
from mvf_lightning.models.mvformer import EmbedderConfig, MVFormer  # noqa: E402

NOT_MEASURED = "not measured"
ROWS = (
    "train step, bf16 autocast (s)",
    "train step, fp16 autocast + scaler (s)",
    "backbone-only forward, bf16 (s)",
    "train step / backbone-only (bf16)",
    "train step with real data loader (s, median)",
    "GPU utilisation over loader steps (%)",
    "peak GPU memory (GiB)",
    "evaluation throughput (frames/s)",
    "torch.compile(embedder) step (s)",
    "torch.compile speed-up",
)


class _UtilisationSampler:
    """Mean GPU utilisation from ``nvidia-smi`` sampled every 100 ms while active."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._proc = None

    def __enter__(self) -> _UtilisationSampler:
        if shutil.which("nvidia-smi"):
            self._proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                 "-lms", "100", "-i", "0"],
                stdout=subprocess.PIPE, text=True,
            )
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        return self

    def _read(self) -> None:
        for line in self._proc.stdout:
            with contextlib.suppress(ValueError):
                self.samples.append(float(line.strip()))

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait()

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.samples) if self.samples else None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _train_step(model, opt, scaler, frames, batch, dtype, device):
    b, v, t = frames.shape[:3]
    masks = batch["masks"]
    with torch.autocast(device.type, dtype=dtype):
        out = model(frames.flatten(0, 1), masks.flatten(0, 1))
        z = model.project(out["embeddings"]).view(b, v, t, -1)
    loss = sequence_contrastive_loss(z, batch["steps"], batch["seq_lens"], masks)
    opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    else:
        loss.backward()
        opt.step()
    return loss


def measure(args) -> dict[str, str]:
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    results = dict.fromkeys(ROWS, NOT_MEASURED)
    torch.manual_seed(0)
    model = MVFormer(
        BackboneConfig(name=args.backbone, pretrained="none", blocks=args.blocks,
                       img_size=args.img, chunk_size=args.chunk),
        EmbedderConfig(num_frames=args.frames),
    ).to(device)
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 1e-4)
    b, t = args.batch, args.frames
    frames = torch.randn(b, 2, t, 3, args.img, args.img, device=device)
    steps = torch.arange(t, device=device).expand(b, 2, t).contiguous()
    batch = {
        "masks": torch.ones(b, 2, t, dtype=torch.bool, device=device),
        "steps": steps,
        "seq_lens": torch.full((b, 2), t, device=device),
    }
    low = torch.bfloat16 if (cuda or args.device == "cpu") else torch.float16
    bf16 = _median_time(
        lambda: _train_step(model, opt, None, frames, batch, low, device), args.repeats, device
    )
    results[ROWS[0]] = f"{bf16:.4f}"
    if cuda:
        scaler = torch.amp.GradScaler("cuda")
        fp16 = _median_time(
            lambda: _train_step(model, opt, scaler, frames, batch, torch.float16, device),
            args.repeats, device,
        )
        results[ROWS[1]] = f"{fp16:.4f}"

    def backbone_only():
        with torch.no_grad(), torch.autocast(device.type, dtype=low):
            model.backbone(frames.flatten(0, 2))

    bb = _median_time(backbone_only, args.repeats, device)
    results[ROWS[2]] = f"{bb:.4f}"
    results[ROWS[3]] = f"{bf16 / bb:.2f}x"

    # The real loader: decord workers -> uint8 batches -> Kornia on the device -> step.
    root = ensure_demo_dataset(Path(args.workdir) / f"videos{args.img}", num_train=8,
                               num_val=2, size=args.img)
    index = VideoIndex.load(index_path(root, "train"))
    loader = torch.utils.data.DataLoader(
        TrainClipDataset(index, TimeAugmentSampler(t), seed=0), batch_size=b, shuffle=True,
        num_workers=args.workers, collate_fn=collate_train, pin_memory=cuda,
        persistent_workers=args.workers > 0, drop_last=True,
    )
    augment = TrainAugmentation(crop_size=args.img, mean=model.backbone.mean,
                                std=model.backbone.std).to(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    loader_times: list[float] = []
    with _UtilisationSampler() as util:
        done = 0
        while done < args.steps:
            for raw in loader:
                start = time.perf_counter()
                raw = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
                       for k, v in raw.items()}
                x = augment(raw["frames"])
                _train_step(model, opt, None, x, raw, low, device)
                _sync(device)
                loader_times.append(time.perf_counter() - start)
                done += 1
                if done >= args.steps:
                    break
    results[ROWS[4]] = f"{statistics.median(loader_times):.4f}"
    if cuda and util.mean is not None:
        results[ROWS[5]] = f"{util.mean:.0f}"
    if cuda:
        results[ROWS[6]] = f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f}"

    model.eval()
    video = torch.randn(args.eval_frames, 3, args.img, args.img, device=device)

    def evaluate():
        with torch.no_grad(), torch.autocast(device.type, dtype=low):
            model(video.unsqueeze(0))

    ev = _median_time(evaluate, max(1, args.repeats // 2), device)
    results[ROWS[7]] = f"{args.eval_frames / ev:.0f}"
    model.train()

    if args.compile:
        try:
            model.embedder = torch.compile(model.embedder)
            compiled = _median_time(
                lambda: _train_step(model, opt, None, frames, batch, low, device),
                args.repeats, device,
            )
            results[ROWS[8]] = f"{compiled:.4f}"
            results[ROWS[9]] = f"{bf16 / compiled:.2f}x"
        except Exception as e:  # report, do not hide: compile support varies by platform
            results[ROWS[8]] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:80]}"
    return results


def render(results: dict[str, str], args) -> str:
    head = machine_header("GPU check: Penn Action config")
    setting = (f"backbone {args.backbone} at {args.img} px (random weights), blocks "
               f"{args.blocks}, T = {args.frames}, batch {args.batch} video(s) x 2 views, "
               f"device {args.device}")
    lines = [head, setting, "", "| measurement | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in results.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "none")
    parser.add_argument("--backbone", default="vit_base_patch8_224.dino")
    parser.add_argument("--blocks", type=int, nargs="+", default=[3, 7, 11])
    parser.add_argument("--img", type=int, default=224)
    parser.add_argument("--frames", type=int, default=80)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=40)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--eval-frames", type=int, default=1000)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--tiny", action="store_true", help="small sizes (CPU format check)")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "mvf_gpu_check"))
    parser.add_argument("--out", type=Path, default=Path("gpu_check.md"))
    args = parser.parse_args(argv)
    if args.tiny:
        args.backbone, args.img, args.frames, args.blocks = "vit_tiny_patch16_224", 32, 4, [1]
        args.steps, args.repeats, args.workers, args.eval_frames = 2, 1, 0, 16
        args.compile = False
    if args.device == "none":
        results = dict.fromkeys(ROWS, f"{NOT_MEASURED} (no CUDA device)")
    else:
        results = measure(args)
    text = render(results, args)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
