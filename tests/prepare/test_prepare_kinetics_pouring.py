"""Kinetics-400 (clips referenced in place, bad clips reported) and CARL's Pouring pickles."""

from __future__ import annotations

import json

from mvf_lightning.data.index import VideoIndex, index_path


def test_kinetics400_end_to_end(kinetics_root, run_prepare, tmp_path):
    out = tmp_path / "k400"
    args = ["kinetics400", "--source", kinetics_root, "--out", out, "--workers", "2"]
    code, _, err = run_prepare(*args)
    assert code == 0, err
    train = VideoIndex.load(index_path(out, "train"))
    val = VideoIndex.load(index_path(out, "val"))
    assert train.dataset == "kinetics400"
    assert [v.id for v in train] == ["vidA_000010_000020", "vid_B_000000_000010"]
    assert [v.num_frames for v in train] == [12, 9] and [v.num_frames for v in val] == [7]
    assert [v.group for v in train] == ["abseiling", "bowling"]
    assert all(v.label_runs is None and v.fps == 25.0 for v in [*train, *val])
    # referenced in place: a relative path from the output root to the source clip
    assert train[0].path == "../kinetics400/train/vidA_000010_000020.mp4"
    assert train.video_path(train[0]).resolve() == (
        kinetics_root / "train" / "vidA_000010_000020.mp4"
    )
    report = json.loads((out / "reports" / "kinetics400.json").read_text())
    skipped = {s["id"]: s["reason"] for s in report["skipped"]["train"]}
    assert skipped["missingD_000030_000040"] == "missing"
    assert skipped["corruptC_000005_000015"].startswith("undecodable")
    assert report["videos"] == {"train": 2, "val": 1}

    # restart: the probe cache answers for every clip that exists
    code, _, err = run_prepare(*args, "--overwrite")
    assert code == 0, err
    report = json.loads((out / "reports" / "kinetics400.json").read_text())
    assert report["probe_cache_hits"] == {"train": 3, "val": 1}
    assert [v.id for v in VideoIndex.load(index_path(out, "train"))] == [
        "vidA_000010_000020",
        "vid_B_000000_000010",
    ]


def test_kinetics400_bad_csv(kinetics_root, run_prepare, tmp_path):
    csv = kinetics_root / "annotations" / "val.csv"
    csv.write_text("label,youtube_id\nx,y\n")
    code, _, err = run_prepare("kinetics400", "--source", kinetics_root, "--out", tmp_path / "o")
    assert code != 0 and str(csv) in err and "time_start" in err
    code, _, err = run_prepare(
        "kinetics400", "--source", kinetics_root, "--out", tmp_path / "o", "--splits", "test"
    )
    assert code != 0 and "test.csv" in err


def test_pouring_carl(carl_pouring, run_prepare, tmp_path):
    code, _, err = run_prepare("pouring", "--carl", carl_pouring, "--out", carl_pouring)
    assert code != 0 and "--trust-pickle" in err
    code, _, err = run_prepare(
        "pouring", "--carl", carl_pouring, "--trust-pickle", "--out", carl_pouring, "--workers", "1"
    )
    assert code == 0, err
    for split, n in (("train", 5), ("val", 4), ("test", 3)):
        idx = VideoIndex.load(index_path(carl_pouring, split))
        assert [v.id for v in idx] == [f"pour_{split}_0"]
        assert idx[0].path == f"videos/pour_{split}_0.mp4" and idx[0].group == "pouring"
        assert idx[0].labels.tolist() == [min(i, 4) for i in range(n)]
