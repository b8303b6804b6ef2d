"""Fixtures for the data tests: tiny generated videos whose frames encode their own index."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mvf_lightning.data.index import VideoIndex, VideoRecord, index_path
from mvf_lightning.data.video_writer import write_video

GRAY_STEP = 4  # frame k of a "counting" video is uniform gray k * GRAY_STEP


def counting_frames(num_frames: int, size: int = 32) -> np.ndarray:
    """uint8 [N, size, size, 3]; frame k is uniform gray ``k * GRAY_STEP`` (k < 64)."""
    values = (np.arange(num_frames) * GRAY_STEP).astype(np.uint8)
    return np.broadcast_to(values[:, None, None, None], (num_frames, size, size, 3)).copy()


def frame_ids(frames: np.ndarray) -> np.ndarray:
    """Recover k from decoded counting frames ``[..., H, W, 3]`` or ``[..., 3, H, W]``."""
    means = np.asarray(frames, dtype=np.float64).reshape(*frames.shape[:-3], -1).mean(-1)
    return np.rint(means / GRAY_STEP).astype(np.int64)


def write_counting_video(path: Path, num_frames: int, size: int = 32) -> Path:
    return write_video(path, counting_frames(num_frames, size), fps=25, codec="mpeg4")


def build_index(
    root: Path,
    split: str,
    videos: list[tuple[str, int, str, list[int] | None]],
    dataset: str = "tiny",
    size: int = 32,
) -> VideoIndex:
    """Write counting videos ``(id, num_frames, group, labels)`` and ``index/<split>.json``."""
    records = []
    for vid, n, group, labels in videos:
        rel = f"videos/{vid}.mp4"
        if not (root / rel).exists():
            write_counting_video(root / rel, n, size)
        records.append(
            VideoRecord.from_labels(vid, rel, labels, num_frames=n, fps=25.0, group=group)
        )
    index = VideoIndex(dataset, split, records, root)
    index.save(index_path(root, split), overwrite=True)
    return index


def phase_labels(n: int, phases: int) -> list[int]:
    return list(np.arange(n) * phases // n)


@pytest.fixture(scope="session")
def counting_video(tmp_path_factory) -> Path:
    """A 40-frame 32x32 counting video."""
    return write_counting_video(tmp_path_factory.mktemp("vid") / "count.mp4", 40)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """Dataset root with train/val indexes: two groups, labels, lengths 20-50 frames."""
    root = tmp_path_factory.mktemp("tiny")
    build_index(
        root,
        "train",
        [
            ("a0", 30, "alpha", phase_labels(30, 3)),
            ("a1", 44, "alpha", phase_labels(44, 3)),
            ("b0", 20, "beta", phase_labels(20, 2)),
            ("b1", 50, "beta", phase_labels(50, 2)),
        ],
    )
    build_index(
        root,
        "val",
        [
            ("a2", 36, "alpha", phase_labels(36, 3)),
            ("b2", 26, "beta", phase_labels(26, 2)),
        ],
    )
    return root


@pytest.fixture(scope="session")
def helpers() -> SimpleNamespace:
    """Helper functions (test modules cannot import conftest under --import-mode=importlib)."""
    return SimpleNamespace(
        counting_frames=counting_frames,
        frame_ids=frame_ids,
        write_counting_video=write_counting_video,
        build_index=build_index,
        phase_labels=phase_labels,
        GRAY_STEP=GRAY_STEP,
    )
