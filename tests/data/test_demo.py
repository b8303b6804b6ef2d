"""demo.py: generated once, idempotent, safe under parallel generation, known phases."""

from __future__ import annotations

import json
import multiprocessing as mp

import numpy as np
import pytest

from mvf_lightning.data.decode import probe_video
from mvf_lightning.data.demo import (
    DEMO_NUM_PHASES,
    default_demo_root,
    ensure_demo_dataset,
    is_demo_dataset,
    render_demo_video,
)
from mvf_lightning.data.index import load_split


def test_render_has_four_ordered_phases():
    for seed in range(10):
        frames, labels = render_demo_video(np.random.default_rng(seed), size=32)
        assert frames.dtype == np.uint8 and frames.shape == (len(labels), 32, 32, 3)
        assert 40 <= len(labels) <= 90
        assert sorted(set(labels.tolist())) == list(range(DEMO_NUM_PHASES))
        assert (np.diff(labels) >= 0).all()


def test_generate_small_and_idempotent(tmp_path):
    root = ensure_demo_dataset(tmp_path / "demo", num_train=3, num_val=2, size=32)
    assert is_demo_dataset(root)
    train, val = load_split(root, "train"), load_split(root, "val")
    assert (len(train), len(val)) == (3, 2)
    for video in train:
        assert video.group == "demo"
        assert video.labels is not None and len(video.labels) == video.num_frames
        assert probe_video(train.video_path(video)).num_frames == video.num_frames
    stamp = (root / "index" / "train.json").stat().st_mtime_ns
    ensure_demo_dataset(root, num_train=3, num_val=2, size=32)
    assert (root / "index" / "train.json").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no temp folders left
    assert json.loads((root / "demo.json").read_text())["num_train"] == 3


def test_parallel_generation(tmp_path):
    root = str(tmp_path / "demo")
    # The library function itself goes to the workers: it pickles by reference.
    with mp.get_context("spawn").Pool(2) as pool:
        made = pool.starmap(ensure_demo_dataset, [(root, 2, 1, 16)] * 2)
    assert [str(p) for p in made] == [root, root]
    assert is_demo_dataset(root)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


def test_refuses_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a complete demo dataset"):
        ensure_demo_dataset(tmp_path)


def test_default_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MVF_LIGHTNING_DEMO_ROOT", str(tmp_path / "d"))
    assert default_demo_root() == tmp_path / "d"
    monkeypatch.delenv("MVF_LIGHTNING_DEMO_ROOT")
    assert default_demo_root().parts[-3:] == (".cache", "mvf_lightning", "demo")
