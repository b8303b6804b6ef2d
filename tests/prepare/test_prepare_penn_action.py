"""Penn Action: public release (JPEG frames + .mat + .npy phase labels) and CARL's pickles."""

from __future__ import annotations

import json
import os

import numpy as np
import scipy.io

from mvf_lightning.data.decode import probe_video, read_frames
from mvf_lightning.data.index import VideoIndex, index_path


def _frame_means(path) -> np.ndarray:
    info = probe_video(path)
    return read_frames(path, np.arange(info.num_frames)).reshape(info.num_frames, -1).mean(1)


def test_public_release_end_to_end(penn_public, run_prepare, tmp_path):
    out = tmp_path / "out"
    # a .mat that disagrees with the label folder: reported, the label folder wins
    mat = penn_public["source"] / "labels" / "0001.mat"
    fields = {k: v for k, v in scipy.io.loadmat(str(mat)).items() if not k.startswith("__")}
    scipy.io.savemat(str(mat), {**fields, "action": "bowl", "nframes": 9})
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
    )
    assert code == 0, err

    train = VideoIndex.load(index_path(out, "train"))
    val = VideoIndex.load(index_path(out, "val"))
    assert train.dataset == "penn_action" and train.split == "train"
    assert [v.id for v in train] == ["0001", "0100"]  # jump_rope is not a benchmark action
    assert [v.id for v in val] == ["0002"]  # 0300 has labels but no frames
    assert [v.group for v in train] == ["baseball_pitch", "squat"]
    assert all(v.fps == 30.0 and v.path == f"videos/{v.id}.mp4" for v in [*train, *val])

    v1, v100 = train.videos
    assert v1.num_frames == 8 and v1.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    # 12 labels for 10 frames: labels resampled with floor(j * 12 / 10)
    assert val[0].num_frames == 10
    assert val[0].labels.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    # 12 frames for 9 labels: frames resampled with floor(j * 12 / 9), labels kept
    assert v100.num_frames == 9 and v100.labels.tolist() == [0, 0, 1, 1, 1, 2, 2, 3, 3]
    kept = [0, 1, 2, 4, 5, 6, 8, 9, 10]
    np.testing.assert_allclose(_frame_means(out / v100.path), [20 + 15 * i for i in kept], atol=3)

    # Stored at 224 x 224 by default, as CARL and the reference did (paper configs expect it).
    info = probe_video(out / v1.path)
    assert (info.num_frames, info.height, info.width) == (8, 224, 224)
    info = probe_video(out / v100.path)
    assert (info.num_frames, info.height, info.width) == (9, 224, 224)
    # --size 0 keeps the source size (a 63x47 source loses its last column/row: H.264)
    native = tmp_path / "native"
    code, _, err = run_prepare("penn-action", "--source", penn_public["source"], "--labels",
                               penn_public["labels"], "--out", native, "--workers", "1",
                               "--size", "0")
    assert code == 0, err
    sizes = [probe_video(native / v.path) for v in VideoIndex.load(index_path(native, "train"))]
    assert [(i.height, i.width) for i in sizes] == [(48, 64), (46, 62)]

    report = json.loads((out / "reports" / "penn_action.json").read_text())
    assert report["excluded_actions"] == {"jump_rope": 1}
    assert [m["id"] for m in report["missing_frames"]] == ["0300"]
    assert report["labels_resampled"] == 1 and report["frames_resampled"] == 1
    assert report["videos"] == {"train": 2, "val": 1}
    assert report["work"] == {"encoded": 3}
    assert report["action_mismatch"] == [
        {"id": "0001", "mat": "bowl", "label_folder": "baseball_pitch"}
    ]
    assert report["nframes_mismatch"] == [{"id": "0001", "mat_nframes": 9, "jpg_files": 8}]


def test_overwrite_refusal_and_restart(penn_public, run_prepare, tmp_path):
    out = tmp_path / "out"
    args = [
        "penn-action",
        "--source",
        penn_public["source"],
        "--labels",
        penn_public["labels"],
        "--out",
        out,
        "--size",
        "32",
        "--workers",
        "2",
    ]
    assert run_prepare(*args)[0] == 0
    info = probe_video(out / "videos" / "0001.mp4")
    assert (info.height, info.width) == (32, 32)  # --size: square, aspect ignored

    before = index_path(out, "train").read_bytes()
    code, _, err = run_prepare(*args)
    assert code != 0
    assert str(index_path(out, "train")) in err and "--overwrite" in err
    assert index_path(out, "train").read_bytes() == before

    # An interrupted run: no index yet, one video not written. Finished videos are reused.
    os.remove(index_path(out, "train"))
    os.remove(index_path(out, "val"))
    os.remove(out / "videos" / "0100.mp4")
    mtime = os.stat(out / "videos" / "0001.mp4").st_mtime_ns
    assert run_prepare(*args)[0] == 0
    report = json.loads((out / "reports" / "penn_action.json").read_text())
    assert report["work"] == {"reused": 2, "encoded": 1}
    assert os.stat(out / "videos" / "0001.mp4").st_mtime_ns == mtime
    assert [v.id for v in VideoIndex.load(index_path(out, "train"))] == ["0001", "0100"]

    # --overwrite replaces the index; a different --size re-encodes (outputs do not match)
    code, _, err = run_prepare(*args[:-4], "--workers", "1", "--overwrite")
    assert code == 0, err
    report = json.loads((out / "reports" / "penn_action.json").read_text())
    assert report["work"] == {"encoded": 3}


def test_missing_inputs_are_clear_errors(run_prepare, tmp_path):
    code, _, err = run_prepare(
        "penn-action", "--source", tmp_path / "nope", "--labels", tmp_path, "--out", tmp_path / "o"
    )
    assert code != 0 and str(tmp_path / "nope" / "frames") in err
    code, _, err = run_prepare("penn-action", "--out", tmp_path / "o")
    assert code != 0 and "--source" in err and "--labels" in err


def test_carl_release(carl_penn, run_prepare, tmp_path):
    code, _, err = run_prepare("penn-action", "--carl", carl_penn, "--out", tmp_path / "o")
    assert code != 0 and "--trust-pickle" in err and "arbitrary code" in err
    assert not (tmp_path / "o" / "index").exists()

    # output root == CARL root: the mp4 files are referenced where they are
    code, _, err = run_prepare(
        "penn-action", "--carl", carl_penn, "--trust-pickle", "--out", carl_penn, "--workers", "1"
    )
    assert code == 0, err
    assert "warning" in err and "pickle" in err
    train = VideoIndex.load(index_path(carl_penn, "train"))
    assert [v.id for v in train] == ["0001", "0100"]
    assert [v.group for v in train] == ["baseball_pitch", "squat"]
    assert [v.path for v in train] == ["videos/0001_baseball_pitch.mp4", "videos/0100_squat.mp4"]
    assert train[0].labels.tolist() == [0, 0, 1, 2, 3, 3]
    assert train[1].num_frames == 5
    assert train[1].labels.tolist() == [0, 1, 3, 3, 3]  # 10 labels -> 5 frames, floor(j*10/5)
    val = VideoIndex.load(index_path(carl_penn, "val"))
    assert [v.id for v in val] == ["0002"] and val[0].labels.tolist() == [0, 1, 2, 3]
    report = json.loads((carl_penn / "reports" / "penn_action_carl.json").read_text())
    assert report["labels_resampled"] == 1
    assert [(s["id"], s["reason"]) for s in report["skipped"]] == [("0150", "missing")]

    # another output root: paths relative to it, pointing into the CARL folder
    other = tmp_path / "elsewhere" / "penn"
    assert run_prepare("penn-action", "--carl", carl_penn, "--trust-pickle", "--out", other)[0] == 0
    idx = VideoIndex.load(index_path(other, "train"))
    assert idx[0].path.startswith("../")
    assert idx.video_path(idx[0]).resolve() == (carl_penn / "videos/0001_baseball_pitch.mp4")
