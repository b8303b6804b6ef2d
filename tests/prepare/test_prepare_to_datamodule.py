"""From a converter's output to the DataModule a user trains with.

Every converter path (Penn Action public + CARL, FineGym raw gym99/gym288 + CARL,
Kinetics-400 with Penn Action evaluation, Pouring CARL) is run on its tiny fixture, then the
matching DataModule is built on the output root and checked the way training and evaluation
use it: training batches (layout, dtypes, steps/masks/seq_lens against the index, frames
against the decoded video, GPU augmentation), ``eval_sets()`` and every item of
``val_dataloader()`` (labels, ids, roles, frames) against the written index.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mvf_lightning.data.datamodules import VideoDataModule
from mvf_lightning.data.dataset_datamodules import (
    FineGymDataModule,
    Kinetics400DataModule,
    PennActionDataModule,
    PouringDataModule,
)
from mvf_lightning.data.decode import read_frames
from mvf_lightning.data.index import VideoIndex, index_path

T = 8  # frames per view
CROP = 32
BATCH = 2
SMALL = {"num_frames": T, "batch_size": BATCH, "num_workers": 0, "crop_size": CROP}


def _level(i: int) -> int:
    """Grey level of source frame ``i`` in the fixtures' generated videos (conftest)."""
    return 20 + 15 * i


def _load(root: Path, split: str) -> VideoIndex:
    return VideoIndex.load(index_path(root, split))


# --------------------------------------------------------------------------- shared checks


def _check_frames_match_video(
    frames: torch.Tensor,
    index: VideoIndex,
    record,
    indices: np.ndarray,
    decode_size: list[int] | None,
    levels: dict[str, list[int]] | None,
) -> None:
    """uint8 ``[n, 3, H, W]`` frames are the video's frames ``indices`` (and grey levels)."""
    size = None if decode_size is None else tuple(decode_size)
    expected = read_frames(index.video_path(record), indices, size=size)  # [n, H, W, 3]
    got = frames.movedim(-3, -1).numpy().astype(np.float32)
    assert got.shape == expected.shape
    assert np.abs(got - expected.astype(np.float32)).mean() < 1.0
    if levels is not None and record.id in levels:
        want = np.asarray(levels[record.id], dtype=np.float64)[indices]
        np.testing.assert_allclose(got.reshape(len(indices), -1).mean(1), want, atol=3)


def check_training(
    dm: VideoDataModule,
    train_index: VideoIndex,
    *,
    decode_size: list[int] | None = None,
    hw: tuple[int, int] | None = None,
    levels: dict[str, list[int]] | None = None,
) -> list[str]:
    """One epoch of ``train_dataloader()``; returns the ids of the videos it delivered."""
    dm.setup("fit")
    seen: list[int] = []
    batches = list(dm.train_dataloader())
    assert batches
    for n, batch in enumerate(batches):
        frames, steps, masks, seq_lens = (
            batch["frames"],
            batch["steps"],
            batch["masks"],
            batch["seq_lens"],
        )
        b = frames.shape[0]
        if n == 0:
            assert b == min(BATCH, len(train_index))
        assert frames.dtype == torch.uint8 and frames.ndim == 6
        assert tuple(frames.shape[1:4]) == (2, T, 3)
        if hw is not None:
            assert tuple(frames.shape[-2:]) == hw
        assert steps.dtype == torch.int64 and tuple(steps.shape) == (b, 2, T)
        assert masks.dtype == torch.bool and tuple(masks.shape) == (b, 2, T)
        assert seq_lens.dtype == torch.int64 and tuple(seq_lens.shape) == (b, 2)
        assert batch["index"].shape == (b,) and batch["broken"] == []
        for k, i in enumerate(batch["index"].tolist()):
            record = train_index[i]
            length = record.num_frames
            assert seq_lens[k].tolist() == [length, length]
            assert int(steps[k].min()) >= 0 and int(steps[k].max()) <= length - 1
            # a view holds at most min(L, T) real frames; padding is masked
            assert (masks[k].sum(-1) <= min(length, T)).all()
            idx = steps[k].reshape(-1).numpy()
            _check_frames_match_video(
                frames[k].reshape(-1, *frames.shape[-3:]),
                train_index,
                record,
                idx,
                decode_size,
                levels,
            )
            seen.append(i)

        out = dm.on_after_batch_transfer(batch, 0)  # no trainer: 6-dim frames = training
        assert "broken" not in out
        assert out["frames"].dtype == torch.float32
        assert tuple(out["frames"].shape) == (b, 2, T, 3, CROP, CROP)
        assert torch.isfinite(out["frames"]).all()
        assert out["steps"] is steps and out["masks"] is masks
    assert sorted(seen) == list(range(len(train_index)))  # an epoch visits every video once
    return [train_index[i].id for i in seen]


def check_evaluation(
    dm: VideoDataModule,
    expected_sets: dict[str, tuple[list[str], list[str]]],
    eval_root: Path,
    splits: tuple[str, str],
    *,
    stride: int = 1,
    decode_size: list[int] | None = None,
    levels: dict[str, list[int]] | None = None,
) -> list[dict]:
    """``eval_sets()`` and every item of ``val_dataloader()`` against the index files."""
    indexes = {role: _load(eval_root, split) for role, split in zip(("train", "val"), splits)}
    records = {role: {v.id: v for v in idx} for role, idx in indexes.items()}

    sets = dm.eval_sets()
    assert {name: (list(s.train_ids), list(s.val_ids)) for name, s in sets.items()} == {
        name: (list(tr), list(va)) for name, (tr, va) in expected_sets.items()
    }
    for s in sets.values():
        labelled = [
            int(records[role][vid].labels.max())
            for role, ids in (("train", s.train_ids), ("val", s.val_ids))
            for vid in ids
            if records[role][vid].labels is not None
        ]
        assert s.num_classes == max(labelled) + 1

    loader = dm.val_dataloader()
    items = list(loader)
    got = []
    for item in items:
        role, vid, name = item["split"], item["video_id"], item["set_name"]
        assert role in ("train", "val")
        assert vid in (sets[name].train_ids if role == "train" else sets[name].val_ids)
        record = records[role][vid]
        assert item["group"] == record.group
        want = record.labels[::stride]
        labels, frames = item["labels"], item["frames"]
        assert labels.dtype == torch.int64 and labels.tolist() == want.tolist()
        assert item["frame_indices"].tolist() == list(range(0, record.num_frames, stride))
        assert frames.dtype == torch.uint8 and frames.ndim == 4
        assert frames.shape[0] == len(want) and frames.shape[1] == 3
        _check_frames_match_video(
            frames, indexes[role], record, item["frame_indices"].numpy(), decode_size, levels
        )
        out = dm.on_after_batch_transfer(dict(item), 0)  # 4-dim frames: evaluation transform
        assert out["frames"].dtype == torch.float32
        assert tuple(out["frames"].shape) == (len(want), 3, CROP, CROP)
        got.append((name, role, vid))
    want_items = [
        (name, role, vid)
        for name, (tr, va) in expected_sets.items()
        for role, ids in (("train", tr), ("val", va))
        for vid in ids
    ]
    assert sorted(got) == sorted(want_items)  # every video of every set, exactly once
    return items


# --------------------------------------------------------------------------- Penn Action

#: stored frame j of each converted public-release video -> grey level of its source frame
PENN_LEVELS = {
    "0001": [_level(i) for i in range(8)],
    "0002": [_level(i) for i in range(10)],
    # 12 JPEGs for 9 labels: frames resampled with floor(j * 12 / 9)
    "0100": [_level(j * 12 // 9) for j in range(9)],
}
PENN_SETS = {"baseball_pitch": (["0001"], ["0002"]), "squat": (["0100"], [])}


def _convert_penn_public(penn_public, run_prepare, out: Path) -> Path:
    code, _, err = run_prepare(
        "penn-action",
        "--source",
        penn_public["source"],
        "--labels",
        penn_public["labels"],
        "--out",
        out,
        "--workers",
        "1",
        "--size",
        "0",  # the source sizes (48x64 and 46x62), not the default 224 x 224
    )
    assert code == 0, err
    return out


def test_penn_public_release(penn_public, run_prepare, tmp_path):
    root = _convert_penn_public(penn_public, run_prepare, tmp_path / "penn")
    # stored sizes differ (48x64 and 46x62): decode_size makes two videos batchable
    size = [40, 56]
    dm = PennActionDataModule(root=str(root), decode_size=size, **SMALL)
    ids = check_training(
        dm, _load(root, "train"), decode_size=size, hw=(40, 56), levels=PENN_LEVELS
    )
    assert sorted(ids) == ["0001", "0100"]
    items = check_evaluation(
        dm, PENN_SETS, root, ("train", "val"), decode_size=size, levels=PENN_LEVELS
    )
    assert all(tuple(it["frames"].shape[-2:]) == (40, 56) for it in items)

    # actions= restricts training and evaluation alike
    dm = PennActionDataModule(root=str(root), actions=["baseball_pitch"], **SMALL)
    assert check_training(dm, _load(root, "train").by_group("baseball_pitch")) == ["0001"]
    check_evaluation(dm, {"baseball_pitch": PENN_SETS["baseball_pitch"]}, root, ("train", "val"))


def test_penn_carl_release(carl_penn, run_prepare, tmp_path):
    root = tmp_path / "penn_from_carl"  # paths point back into the CARL folder
    code, _, err = run_prepare(
        "penn-action", "--carl", carl_penn, "--trust-pickle", "--out", root, "--workers", "1"
    )
    assert code == 0, err
    levels = {vid: [_level(i) for i in range(n)] for vid, n in (("0001", 6), ("0100", 5))}
    levels["0002"] = [_level(i) for i in range(4)]
    dm = PennActionDataModule(root=str(root), eval_stride=2, **SMALL)
    assert sorted(check_training(dm, _load(root, "train"), hw=(32, 32), levels=levels)) == [
        "0001",
        "0100",
    ]
    items = check_evaluation(dm, PENN_SETS, root, ("train", "val"), stride=2, levels=levels)
    by_id = {it["video_id"]: it["labels"].tolist() for it in items}
    # 0100's 10 CARL labels were resampled to its 5 frames, then every 2nd frame kept
    assert by_id == {"0001": [0, 1, 3], "0100": [0, 3, 3], "0002": [0, 2]}


# --------------------------------------------------------------------------- FineGym


def test_finegym_raw_gym99_and_gym288(finegym_raw, run_prepare, tmp_path):
    root = tmp_path / "finegym"
    code, _, err = run_prepare(
        "finegym",
        "--annotations",
        finegym_raw["annotations"],
        "--splits-dir",
        finegym_raw["splits"],
        "--videos",
        finegym_raw["videos"],
        "--out",
        root,
        "--size",
        "64x36",  # (decord 0.6 cannot decode widths 16/24/48/72 natively)
        "--workers",
        "1",
    )
    assert code == 0, err
    e1, e2, e3 = "ab_c-D1_E_000001_000003", "Zy9_E_000000_000002", "ab_c-D1_E_000004_000005"
    expected = {"gym99": ([e2, e1], [e3]), "gym288": ([e1], [e3])}  # event-id order
    for variant, (train_ids, val_ids) in expected.items():
        dm = FineGymDataModule(root=str(root), variant=variant, eval_stride=5, **SMALL)
        assert dm.eval_name == variant
        train = _load(root, f"{variant}_train")
        assert sorted(check_training(dm, train, hw=(36, 64))) == sorted(train_ids)
        items = check_evaluation(
            dm,
            {variant: (train_ids, val_ids)},
            root,
            (f"{variant}_train", f"{variant}_val"),
            stride=5,
        )
        assert {it["set_name"] for it in items} == {variant}
        # the same val clip carries each variant's own labels (-1 outside elements)
        val = next(it["labels"] for it in items if it["split"] == "val")
        assert set(val.tolist()) == {-1, 1 if variant == "gym99" else 200}


def test_finegym_carl_release(carl_finegym, run_prepare, tmp_path):
    root = tmp_path / "gym_from_carl"
    code, _, err = run_prepare(
        "finegym",
        "--carl",
        carl_finegym,
        "--variant",
        "gym99",
        "--trust-pickle",
        "--out",
        root,
        "--workers",
        "1",
    )
    assert code == 0, err
    levels = {
        "yt1_E_000001_000003": [_level(i) for i in range(6)],
        "yt2_E_000004_000005": [_level(i) for i in range(4)],
    }
    dm = FineGymDataModule(root=str(root), variant="gym99", **SMALL)
    train = _load(root, "gym99_train")
    assert check_training(dm, train, hw=(32, 32), levels=levels) == ["yt1_E_000001_000003"]
    items = check_evaluation(
        dm,
        {"gym99": (["yt1_E_000001_000003"], ["yt2_E_000004_000005"])},
        root,
        ("gym99_train", "gym99_val"),
        levels=levels,
    )
    assert [it["labels"].tolist() for it in items] == [[-1, -1, 5, 5, -1, 7], [-1, 1, 1, -1]]


# --------------------------------------------------------------------------- Kinetics-400


def test_kinetics400_trains_on_clips_and_evaluates_on_penn(
    kinetics_root, penn_public, run_prepare, tmp_path
):
    k400 = tmp_path / "k400"
    code, _, err = run_prepare(
        "kinetics400", "--source", kinetics_root, "--out", k400, "--workers", "1"
    )
    assert code == 0, err
    penn = _convert_penn_public(penn_public, run_prepare, tmp_path / "penn")

    dm = Kinetics400DataModule(root=str(k400), eval_root=str(penn), eval_stride=3, **SMALL)
    train = _load(k400, "train")
    assert all(v.label_runs is None for v in train)  # unlabeled clips
    ids = check_training(dm, train, hw=(72, 88))  # K400 clips are 72x88, Penn's 48x64
    assert sorted(ids) == ["vidA_000010_000020", "vid_B_000000_000010"]
    items = check_evaluation(dm, PENN_SETS, penn, ("train", "val"), stride=3, levels=PENN_LEVELS)
    assert {it["video_id"] for it in items} == {"0001", "0002", "0100"}
    assert {tuple(it["frames"].shape[-2:]) for it in items} == {(48, 64), (46, 62)}

    # without eval_root: training only, no evaluation sets or loader
    dm = Kinetics400DataModule(root=str(k400), **SMALL)
    assert dm.eval_sets() == {} and dm.val_dataloader() == []
    assert sorted(check_training(dm, train)) == sorted(ids)


# --------------------------------------------------------------------------- Pouring


def test_pouring_carl_release(carl_pouring, run_prepare):
    root = carl_pouring  # converted in place
    code, _, err = run_prepare(
        "pouring", "--carl", root, "--trust-pickle", "--out", root, "--workers", "1"
    )
    assert code == 0, err
    levels = {f"pour_{s}_0": [_level(i) for i in range(n)] for s, n in (("train", 5), ("val", 4))}
    levels["pour_test_0"] = [_level(i) for i in range(3)]
    dm = PouringDataModule(root=str(root), **SMALL)
    assert check_training(dm, _load(root, "train"), hw=(32, 32), levels=levels) == ["pour_train_0"]
    items = check_evaluation(
        dm, {"pouring": (["pour_train_0"], ["pour_val_0"])}, root, ("train", "val"), levels=levels
    )
    assert [it["labels"].tolist() for it in items] == [[0, 1, 2, 3, 4], [0, 1, 2, 3]]

    # the test split in the val role
    dm = PouringDataModule(root=str(root), eval_val_split="test", **SMALL)
    check_evaluation(
        dm, {"pouring": (["pour_train_0"], ["pour_test_0"])}, root, ("train", "test"), levels=levels
    )
