"""FineGym: event clips cut from raw videos the CARL way, and CARL's pickled lists."""

from __future__ import annotations

import json
import shutil

import numpy as np

from mvf_lightning.data.decode import probe_video, read_frames
from mvf_lightning.data.index import VideoIndex, index_path

YID1, YID2, MISSING = "ab_c-D1", "Zy9", "gone4ever"


def _labels(n: int, *spans: tuple[int, int, int]) -> list[int]:
    out = [-1] * n
    for a, b, label in spans:
        out[a : b + 1] = [label] * (b + 1 - a)
    return out


def _args(raw, out, *extra):
    return [
        "finegym",
        "--annotations",
        raw["annotations"],
        "--splits-dir",
        raw["splits"],
        "--videos",
        raw["videos"],
        "--out",
        out,
        "--size",
        "64x36",
        "--fps",
        "25",
        "--workers",
        "1",
        *extra,
    ]


def test_raw_videos_end_to_end(finegym_raw, sample_videos, run_prepare, tmp_path):
    out = tmp_path / "out"
    code, _, err = run_prepare(*_args(finegym_raw, out))
    assert code == 0, err
    idx = {
        s: VideoIndex.load(index_path(out, s))
        for s in ("gym99_train", "gym99_val", "gym288_train", "gym288_val")
    }
    e1, e2, e3 = f"{YID1}_E_000001_000003", f"{YID2}_E_000000_000002", f"{YID1}_E_000004_000005"
    # listed in event-id order (the split file has e1 first): FineGym's probe trains on the
    # first videos in that order
    assert [v.id for v in idx["gym99_train"]] == [e2, e1] == sorted([e1, e2])
    assert [v.id for v in idx["gym99_val"]] == [e3]  # missing video and unknown element left out
    assert [v.id for v in idx["gym288_train"]] == [e1]
    assert all(v.group == "finegym" and v.fps == 25.0 for i in idx.values() for v in i)

    # event [1.0, 3.0] s -> 50 frames; labels from each segment's LAST stage, int(s*fps)..int(e*fps)
    v = idx["gym99_train"][1]
    assert v.num_frames == 50
    assert v.labels.tolist() == _labels(50, (5, 15, 5), (32, 47, 7))  # (0.2,0.6), (1.3,1.9)
    assert v.extra == {"youtube_id": YID1, "event_id": "E_000001_000003", "event": 4}
    # 29.97 fps source, event [0.5, 2.5] s -> 50 frames at 25 fps; segment (1.0, 1.5)
    v = idx["gym99_train"][0]
    assert v.num_frames == 50 and v.labels.tolist() == _labels(50, (25, 37, 3))
    # event [4.0, 5.2] -> 30 frames; gym99 and gym288 share the clip, with their own labels
    assert idx["gym99_val"][0].labels.tolist() == _labels(30, (0, 10, 1))
    assert idx["gym288_val"][0].labels.tolist() == _labels(30, (0, 10, 200))
    assert idx["gym288_train"][0].labels.tolist() == _labels(50, (32, 47, 100))
    assert idx["gym288_val"][0].path == idx["gym99_val"][0].path == f"videos/{e3}.mp4"

    info = probe_video(out / f"videos/{e1}.mp4")
    assert (info.num_frames, info.height, info.width, round(info.fps)) == (50, 36, 64, 25)
    # the cut starts at 1.0 s: clip frame k is source frame 25 + k (bikes is 25 fps)
    clip = read_frames(out / f"videos/{e1}.mp4", [0, 20, 40]).astype(float)
    src = read_frames(sample_videos["bikes"], np.arange(15, 75), size=(36, 64)).astype(float)
    for row, k in enumerate([0, 20, 40]):
        dist = np.abs(src - clip[row]).mean(axis=(1, 2, 3))
        assert int(np.argmin(dist)) + 15 == 25 + k

    report = json.loads((out / "reports" / "finegym.json").read_text())
    assert report["missing_videos"] == {MISSING: 1}
    assert [u["element"] for u in report["unknown_elements"]] == [
        f"{YID1}_E_000009_000010_A_0000_0001"
    ]
    assert report["clips"] == {"encoded": 3}

    # restart: refused without --overwrite; with it, finished clips are reused
    code, _, err = run_prepare(*_args(finegym_raw, out))
    assert code != 0 and "gym99_train.json" in err and "--overwrite" in err
    assert run_prepare(*_args(finegym_raw, out, "--overwrite"))[0] == 0
    report = json.loads((out / "reports" / "finegym.json").read_text())
    assert report["clips"] == {"reused": 3}


def test_frame_labels_apply_segments_in_the_given_order():
    from mvf_lightning.prepare.finegym import frame_labels

    # (0.4, 1.0) s then (0.2, 0.6) s at 25 fps: frames 10..25, then 5..15 overwrite the overlap
    labels, outside, truncated = frame_labels(30, [(0.4, 1.0, 1), (0.2, 0.6, 2)], 25.0)
    assert labels.tolist() == _labels(30, (16, 25, 1), (5, 15, 2))
    labels, _, _ = frame_labels(30, [(0.2, 0.6, 2), (0.4, 1.0, 1)], 25.0)
    assert labels.tolist() == _labels(30, (5, 9, 2), (10, 25, 1))
    assert (outside, truncated) == (0, 0)


def test_overlapping_segments_follow_the_annotation_order(finegym_raw, run_prepare, tmp_path):
    """CARL labels an event's segments in the order the annotation lists them, the later one
    winning an overlap: here A_0005 (listed first, 0.4-1.0 s) then A_0001 (0.2-0.6 s) -- neither
    start-time order nor the split file's order (A_0001 first)."""
    ann = json.loads(finegym_raw["annotations"].read_text())
    ann[YID1]["E_000001_000003"]["segments"] = {
        "A_0005_0006": {"stages": 1, "timestamps": [[0.4, 1.0]]},
        "A_0001_0002": {"stages": 1, "timestamps": [[0.2, 0.6]]},
    }
    finegym_raw["annotations"].write_text(json.dumps(ann))
    (finegym_raw["splits"] / "gym99_train_element_v1.0.txt").write_text(
        f"{YID1}_E_000001_000003_A_0001_0002 2\n{YID1}_E_000001_000003_A_0005_0006 1\n"
    )
    out = tmp_path / "out"
    code, _, err = run_prepare(*_args(finegym_raw, out, "--variant", "gym99"))
    assert code == 0, err
    (video,) = VideoIndex.load(index_path(out, "gym99_train"))
    assert video.labels.tolist() == _labels(50, (16, 25, 1), (5, 15, 2))


def test_cut_scales_bicubically_as_ffmpegs_command_line(sample_videos):
    """CARL's cut scaled with ffmpeg's ``scale`` filter, bicubic by default: clip frame k is
    source frame 25 + k (1.0 s into a 25 fps video) through swscale's bicubic scaler."""
    import av

    from mvf_lightning.prepare.cut_clip import iter_clip_frames

    got = list(iter_clip_frames(sample_videos["bikes"], 1.0, 1.4, 25.0, (64, 36)))
    with av.open(str(sample_videos["bikes"])) as c:
        src = [f for _, f in zip(range(35), c.decode(video=0))][25:]

    def scaled(how):
        return [f.to_ndarray(width=64, height=36, format="rgb24", interpolation=how) for f in src]

    assert len(got) == 10
    assert all(np.array_equal(a, b) for a, b in zip(got, scaled("BICUBIC")))
    assert not all(np.array_equal(a, b) for a, b in zip(got, scaled("BILINEAR")))


def test_variant_and_bad_split_line(finegym_raw, run_prepare, tmp_path):
    out = tmp_path / "out"
    assert run_prepare(*_args(finegym_raw, out, "--variant", "gym288"))[0] == 0
    assert sorted(p.name for p in (out / "index").iterdir()) == [
        "gym288_train.json",
        "gym288_val.json",
    ]
    bad = finegym_raw["splits"] / "gym99_val_element.txt"
    bad.write_text("not-an-element 3\n")
    code, _, err = run_prepare(*_args(finegym_raw, tmp_path / "o2", "--variant", "gym99"))
    assert code != 0 and f"{bad}:1" in err and "not-an-element" in err


def test_carl_release(carl_finegym, run_prepare, tmp_path):
    out = tmp_path / "out"
    code, _, err = run_prepare(
        "finegym", "--carl", carl_finegym, "--variant", "gym99", "--out", out
    )
    assert code != 0 and "--trust-pickle" in err
    code, _, err = run_prepare(
        "finegym",
        "--carl",
        carl_finegym,
        "--variant",
        "gym99",
        "--trust-pickle",
        "--out",
        out,
        "--workers",
        "1",
    )
    assert code == 0, err
    train = VideoIndex.load(index_path(out, "gym99_train"))
    assert [v.id for v in train] == ["yt1_E_000001_000003"]
    assert train[0].labels.tolist() == [-1, -1, 5, 5, -1, 7]
    assert train[0].extra == {"event_label": 4} and train[0].group == "finegym"
    assert (train.video_path(train[0])).resolve() == (
        carl_finegym / "processed_videos" / "yt1_E_000001_000003.mp4"
    )
    val = VideoIndex.load(index_path(out, "gym99_val"))
    assert val[0].labels.tolist() == [-1, 1, 1, -1]
    code, _, err = run_prepare(
        "finegym", "--carl", carl_finegym, "--variant", "gym288", "--trust-pickle", "--out", out
    )
    assert code != 0 and "gym288_train_v1.0.pkl" in err


def test_carl_events_are_listed_in_event_id_order(carl_finegym, run_prepare, tmp_path):
    """FineGym's probe trains on the first videos in event-id order: the index keeps that
    order whatever order CARL's pickle has."""
    import pickle

    import torch

    shutil.copy(
        carl_finegym / "processed_videos" / "yt1_E_000001_000003.mp4",
        carl_finegym / "processed_videos" / "yt0_E_000009_000011.mp4",
    )
    names = ["yt1_E_000001_000003", "yt0_E_000009_000011"]  # not sorted
    entries = [
        {
            "id": i,
            "name": name,
            "video_file": f"processed_videos/{name}.mp4",
            "seq_len": 6,
            "frame_label": torch.tensor([-1, -1, 5, 5, -1, 7]),
            "event_label": torch.tensor(4),
        }
        for i, name in enumerate(names)
    ]
    with open(carl_finegym / "gym99_train_v1.0.pkl", "wb") as f:
        pickle.dump(entries, f, protocol=2)
    out = tmp_path / "out"
    code, _, err = run_prepare(
        "finegym", "--carl", carl_finegym, "--variant", "gym99", "--trust-pickle", "--out", out,
        "--workers", "1",
    )
    assert code == 0, err
    train = VideoIndex.load(index_path(out, "gym99_train"))
    assert [v.id for v in train] == ["yt0_E_000009_000011", "yt1_E_000001_000003"]
