"""A tiny procedural video dataset with known phases, generated on first use.

Each video shows a coloured disc on a textured background going through four phases:
0 move right, 1 grow, 2 change colour, 3 move down. Lengths (40-90 frames), phase
durations (hence speed), start position, colours and texture vary per video; every frame
also gets nuisance unrelated to the phase (a distractor square on a random walk, lighting
flicker, camera shake), so an untrained model aligns the videos poorly. Videos are
real mp4 files plus ``index/train.json`` and ``index/val.json`` in the project's index
format (group ``"demo"``, per-frame phase labels), so the demo exercises the same code
paths as a real dataset. Generation takes a second or two.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..errors import ConfigError, ExistingFileError
from .index import INDEX_DIRNAME, VideoIndex, VideoRecord, index_path
from .video_writer import write_video

__all__ = [
    "DEMO_NUM_PHASES",
    "default_demo_root",
    "ensure_demo_dataset",
    "is_demo_dataset",
    "render_demo_video",
]

DEMO_VERSION = 2
DEMO_NUM_PHASES = 4
DEMO_FPS = 25.0
DEMO_ENV = "MVF_LIGHTNING_DEMO_ROOT"
_MANIFEST = "demo.json"


def default_demo_root() -> Path:
    """``$MVF_LIGHTNING_DEMO_ROOT`` if set, else ``~/.cache/mvf_lightning/demo``."""
    env = os.environ.get(DEMO_ENV)
    return Path(env) if env else Path.home() / ".cache" / "mvf_lightning" / "demo"


def render_demo_video(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """One demo video: frames uint8 ``[L, size, size, 3]`` and phase labels int64 ``[L]``."""
    length = int(rng.integers(40, 91))
    weights = rng.uniform(0.6, 1.4, DEMO_NUM_PHASES)
    bounds = np.round(np.cumsum(weights) / weights.sum() * length).astype(np.int64)
    labels = np.searchsorted(bounds, np.arange(length), side="right").astype(np.int64)
    starts = np.concatenate([[0], bounds[:-1]])
    # progress in [0, 1] within the current phase, eased so speed varies within a phase
    span = np.maximum(bounds - starts, 1)[labels]
    progress = (np.arange(length) - starts[labels] + 1) / span
    gamma = rng.uniform(0.6, 1.6)
    progress = progress**gamma
    done = labels[:, None] > np.arange(DEMO_NUM_PHASES)[None, :]  # phase k finished
    cur = labels[:, None] == np.arange(DEMO_NUM_PHASES)[None, :]
    amount = done + cur * progress[:, None]  # [L, 4]: how far each phase has gone

    s = float(size)
    r0 = rng.uniform(0.07, 0.10) * s
    r1 = rng.uniform(0.15, 0.20) * s
    x0 = rng.uniform(0.15, 0.30) * s
    x1 = rng.uniform(0.65, 0.80) * s
    y0 = rng.uniform(0.15, 0.35) * s
    y1 = rng.uniform(0.65, 0.80) * s
    c0 = rng.uniform(0.6, 1.0, 3) * rng.permutation([1.0, 0.2, 0.2]) * 255
    c1 = rng.uniform(0.6, 1.0, 3) * rng.permutation([0.2, 1.0, 0.2]) * 255
    cx = x0 + (x1 - x0) * amount[:, 0]
    radius = r0 + (r1 - r0) * amount[:, 1]
    colour = c0 + (c1 - c0) * amount[:, 2:3]
    cy = y0 + (y1 - y0) * amount[:, 3]

    # low-frequency background texture (upsampled noise) plus a little per-frame noise
    coarse = rng.uniform(40, 110, (size // 8, size // 8, 3))
    background = np.kron(coarse, np.ones((8, 8, 1)))
    grid = np.arange(size) + 0.5
    dist2 = (grid[None, None, :] - cx[:, None, None]) ** 2 + (
        grid[None, :, None] - cy[:, None, None]
    ) ** 2
    inside = (dist2 <= radius[:, None, None] ** 2)[..., None]  # [L, H, W, 1]
    frames = np.where(inside, colour[:, None, None, :], background[None])

    # Nuisance that changes every frame and says nothing about the phase, so that raw image
    # features align videos poorly and learning has something to show: a distractor square on
    # a random walk, lighting flicker and camera shake.
    side = max(int(0.22 * s), 2)
    walk = np.cumsum(rng.normal(0.0, 0.12 * s, (length, 2)), axis=0) + rng.uniform(0, s, 2)
    walk = np.abs(np.mod(walk, 2 * (s - side)) - (s - side)).astype(np.int64)  # reflect
    square = rng.uniform(0, 255, (length, 3))
    rows = np.arange(size)[None, :, None]
    cols = np.arange(size)[None, None, :]
    in_square = (
        (rows >= walk[:, 0, None, None]) & (rows < walk[:, 0, None, None] + side)
        & (cols >= walk[:, 1, None, None]) & (cols < walk[:, 1, None, None] + side)
    )[..., None]
    frames = np.where(in_square, square[:, None, None, :], frames)
    frames = frames * rng.uniform(0.55, 1.45, (length, 1, 1, 1))
    shake = rng.integers(-3, 4, (length, 2))
    frames = np.stack([np.roll(f, tuple(d), axis=(0, 1)) for f, d in zip(frames, shake)])
    frames = frames + rng.normal(0.0, 4.0, frames.shape)
    return np.clip(frames, 0, 255).astype(np.uint8), labels


def is_demo_dataset(root: str | os.PathLike) -> bool:
    """Whether ``root`` holds a complete demo dataset of the current version."""
    root = Path(root)
    try:
        manifest = json.loads((root / _MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return (
        manifest.get("version") == DEMO_VERSION
        and index_path(root, "train").is_file()
        and index_path(root, "val").is_file()
    )


def _generate(root: Path, num_train: int, num_val: int, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for split, count in (("train", num_train), ("val", num_val)):
        records = []
        for k in range(count):
            vid = f"{split}_{k:03d}"
            frames, labels = render_demo_video(rng, size)
            rel = f"videos/{vid}.mp4"
            write_video(root / rel, frames, DEMO_FPS, codec="mpeg4")
            records.append(VideoRecord.from_labels(vid, rel, labels, fps=DEMO_FPS, group="demo"))
        VideoIndex("demo", split, records, root).save(index_path(root, split))
    params = {"num_train": num_train, "num_val": num_val, "size": size, "seed": seed}
    manifest = {"version": DEMO_VERSION, "num_phases": DEMO_NUM_PHASES, **params}
    (root / _MANIFEST).write_text(json.dumps(manifest))


def ensure_demo_dataset(
    root: str | os.PathLike | None = None,
    num_train: int = 24,
    num_val: int = 12,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Generate the demo dataset under ``root`` unless it is already there; return ``root``.

    Safe to call from several processes at once: each builds in its own temporary folder
    next to ``root`` and renames it into place; the first rename wins, the others discard
    their copy. ``root`` may exist if empty; a non-empty foreign folder is refused.
    """
    root = Path(root) if root is not None else default_demo_root()
    if is_demo_dataset(root):
        return root
    if size % 8 or size < 16:
        raise ConfigError(f"demo size must be a multiple of 8 and >= 16, got {size}")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ExistingFileError(
            f"{root} exists and is not a complete demo dataset (no {_MANIFEST} of version "
            f"{DEMO_VERSION} and index/train.json, index/val.json); delete it or pick another root"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        (tmp / INDEX_DIRNAME).mkdir()
        _generate(tmp, num_train, num_val, size, seed)
        try:
            os.rename(tmp, root)  # atomic; replaces an empty folder, fails on a full one
        except OSError:
            if not is_demo_dataset(root):  # not a lost race: a real problem
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root
