"""Runs the README's "Use the metrics in your own project" example on this process's share of
a fixed set of videos, as one rank of ``--world`` (gloo on 127.0.0.1), and writes what
``compute()`` returned as JSON. ``python -m tests.evaluation.metrics_example --rank R
--world W --port P --out FILE`` (``--world 1``: no process group)."""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ExampleVideo:
    id: str
    embeddings: torch.Tensor
    labels: torch.Tensor
    is_train: bool


def videos(count_train: int = 6, count_val: int = 5, classes: int = 4) -> list[ExampleVideo]:
    """Videos whose embeddings follow their phases, with noise (fixed seed)."""
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(classes, 6))
    out = []
    for split, count in (("t", count_train), ("v", count_val)):
        for i in range(count):
            n = int(rng.integers(16, 30))
            y = np.minimum(np.arange(n) * classes // n, classes - 1)
            x = centres[y] + 0.8 * rng.normal(size=(n, 6)) + np.arange(n)[:, None] / n
            y[:2] = -1
            out.append(ExampleVideo(f"{split}{i}", torch.tensor(x, dtype=torch.float32),
                                    torch.tensor(y), split == "t"))
    return out


def readme_example() -> str:
    """The Python block of the README's section "Use the metrics in your own project"."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Use the metrics in your own project", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S)[1]


def shard(all_videos: list, rank: int, world: int) -> list:
    """What a DistributedSampler gives this rank: every world-th video, the last shard padded
    with the first videos again."""
    total = -(-len(all_videos) // world) * world
    padded = all_videos + all_videos[: total - len(all_videos)]
    return padded[rank::world]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rank", type=int, default=0)
    parser.add_argument("--world", type=int, default=1)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.world > 1:
        torch.distributed.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{args.port}", rank=args.rank,
            world_size=args.world,
        )
    namespace = {"my_videos": shard(videos(), args.rank, args.world), "print": _capture}
    exec(readme_example(), namespace)  # noqa: S102 - the README's own code, run as written
    args.out.write_text(json.dumps(_CAPTURED[-1]))
    if args.world > 1:
        torch.distributed.destroy_process_group()


_CAPTURED: list = []


def _capture(value) -> None:
    _CAPTURED.append(value)


if __name__ == "__main__":
    main()
