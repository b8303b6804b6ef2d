"""``align`` end to end on a real clip and a time-warped copy of it: the mapping is
recovered, the JSON, PNG and mp4 are readable and agree, and bad input is refused."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from mvf_lightning.align.command import run_align
from mvf_lightning.cli.commands import main

PHASE_LEN = 30
pytestmark = pytest.mark.integration  # a real clip embedded four times: ~1 minute


def query_phases(n: int) -> np.ndarray:
    return np.minimum(np.arange(n) // PHASE_LEN, 3).astype(np.int64)


@pytest.fixture(scope="module")
def aligned(clip, warped, tiny_ckpt, tmp_path_factory):
    """One DTW run with phases (all outputs) and one nearest-neighbour run (JSON only)."""
    path, warp = warped
    tmp = tmp_path_factory.mktemp("align")
    from mvf_lightning.data.decode import probe_video

    n = probe_video(clip).num_frames
    np.save(tmp / "q.npy", query_phases(n))
    np.save(tmp / "o.npy", query_phases(n)[warp])
    cache = tmp / "cache"
    dtw = run_align(str(clip), [str(path)], str(tmp / "dtw"), ckpt=str(tiny_ckpt),
                    phases=str(tmp / "q.npy"), other_phases=[str(tmp / "o.npy")],
                    phase_names=["a", "b", "c", "d"], cache_dir=str(cache), quiet=True)
    nn = run_align(str(clip), [str(path)], str(tmp / "nn"), ckpt=str(tiny_ckpt), method="nn",
                   cache_dir=str(cache), video=False, quiet=True)
    return {"tmp": tmp, "dtw": dtw, "nn": nn, "warp": warp, "clip": clip, "path": path,
            "cache": cache}


def mapping_error(record: dict, warp: np.ndarray) -> np.ndarray:
    """Per query frame: how many query frames away the matched frame's content is."""
    matched = np.array(record["videos"][0]["matched_frame"])
    return np.abs(warp[matched] - np.arange(len(matched)))


def test_dtw_recovers_the_time_warp(aligned, capsys):
    dtw_err = mapping_error(aligned["dtw"], aligned["warp"])
    nn_err = mapping_error(aligned["nn"], aligned["warp"])
    with capsys.disabled():
        print(f"\nalign on carphone + time-warped copy: mean frame error dtw {dtw_err.mean():.2f}"
              f" (max {dtw_err.max()}), nn {nn_err.mean():.2f} (max {nn_err.max()})")
    assert dtw_err.mean() <= 2.0
    assert np.all(np.diff(aligned["dtw"]["videos"][0]["matched_frame"]) >= 0)  # monotonic
    # the query's phases carried to the copy agree with the copy's true phases
    video = aligned["dtw"]["videos"][0]
    assert video["phase_accuracy"] >= 0.9
    transferred = np.load(aligned["tmp"] / "dtw" / video["phases_file"])
    assert transferred.shape == (len(aligned["warp"]),)
    truth = query_phases(aligned["dtw"]["query"]["num_frames"])[aligned["warp"]]
    assert (transferred == truth).mean() == pytest.approx(video["phase_accuracy"])


def test_json_and_png_agree(aligned):
    from PIL import Image

    out = aligned["tmp"] / "dtw"
    record = json.loads((out / "alignment.json").read_text())
    assert record["format"] == "mvf_lightning.alignment" and record["method"] == "dtw"
    q, v = record["query"], record["videos"][0]
    assert q["sha256"] == hashlib.sha256(aligned["clip"].read_bytes()).hexdigest()
    assert v["sha256"] == hashlib.sha256(aligned["path"].read_bytes()).hexdigest()
    assert record["inputs"]["model"]["checkpoint"]["size"] > 0
    assert len(v["matched_frame"]) == len(v["distance"]) == q["num_frames"]
    assert min(v["matched_frame"]) >= 0 and max(v["matched_frame"]) < v["num_frames"]
    assert v["mean_distance"] == pytest.approx(np.mean(v["distance"]), abs=1e-5)
    assert v["dtw_cost"] >= sum(v["distance"]) - 1e-3  # the path visits every query frame
    image = Image.open(out / "similarity.png")
    assert image.size == (640, 560)  # one matrix per other video
    assert record["files"] == {"similarity": "similarity.png", "video": "aligned.mp4"}


def test_video_shows_query_and_aligned_frames_side_by_side(aligned):
    import decord

    from mvf_lightning.data.decode import read_frames
    from mvf_lightning.visualization import AlignmentCanvas, Track

    reader = decord.VideoReader(str(aligned["tmp"] / "dtw" / "aligned.mp4"))
    q = aligned["dtw"]["query"]
    assert len(reader) == q["num_frames"]
    assert reader.get_avg_fps() == pytest.approx(q["fps"], rel=1e-3)
    frame = reader[60].asnumpy()
    assert frame.shape[0] >= 224
    canvas = AlignmentCanvas([Track("q", 120, (144, 176)), Track("o", 150, (144, 176))])
    assert frame.shape[:2] == (canvas.height, canvas.width)
    (top, x, h, w), (top2, x2, _, _) = canvas._boxes
    matched = aligned["dtw"]["videos"][0]["matched_frame"]
    for t in (10, 60, 110):
        shown = reader[t].asnumpy().astype(float)
        left, right = shown[top:top + h, x:x + w], shown[top2:top2 + h, x2:x2 + w]
        own = read_frames(aligned["clip"], [t, (t + 40) % 120], size=(h, w)).astype(float)
        other = read_frames(aligned["path"], [matched[t]], size=(h, w)).astype(float)
        # each panel shows its own video's frame, not another one
        assert np.abs(left - own[0]).mean() < np.abs(left - own[1]).mean()
        assert np.abs(right - other[0]).mean() < 12


def test_same_video_again_reuses_the_feature_cache(aligned, tiny_ckpt, capsys):
    assert list(aligned["cache"].rglob("*.safetensors"))
    run_align(str(aligned["clip"]), [str(aligned["path"])], str(aligned["tmp"] / "again"),
              ckpt=str(tiny_ckpt), cache_dir=str(aligned["cache"]), video=False)
    err = capsys.readouterr().err
    assert err.count("(cached backbone features)") == 2


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    rc = main(["align", *args])
    return rc, capsys.readouterr().err.strip()


def test_refusals_name_the_file_and_reason(aligned, tiny_ckpt, tmp_path, capsys):
    clip, other = str(aligned["clip"]), str(aligned["path"])
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    rc, err = run_cli(["--ckpt", str(tiny_ckpt), clip, str(broken), "--out",
                       str(tmp_path / "a")], capsys)
    assert rc == 1 and str(broken) in err and len(err.splitlines()) == 1
    # a checkpoint of another architecture: a plain state dict, then other tensor shapes
    foreign = tmp_path / "resnet.ckpt"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}}, foreign)
    rc, err = run_cli(["--ckpt", str(foreign), clip, other, "--out", str(tmp_path / "b")],
                      capsys)
    assert rc == 1 and "another architecture" in err and str(foreign) in err
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    key = next(k for k in ckpt["state_dict"] if k.endswith("weight"))
    ckpt["state_dict"][key] = torch.zeros(3, 3)
    reshaped = tmp_path / "reshaped.ckpt"
    torch.save(ckpt, reshaped)
    rc, err = run_cli(["--ckpt", str(reshaped), clip, other, "--out", str(tmp_path / "c")],
                      capsys)
    assert rc == 1 and "different architecture" in err and len(err.splitlines()) == 1
    # an output folder holding another alignment (other method): refused unless --overwrite
    out = str(aligned["tmp"] / "nn")
    rc, err = run_cli(["--ckpt", str(tiny_ckpt), clip, other, "--out", out, "--no-cache",
                       "--quiet", "--no-video"], capsys)
    assert rc == 1 and "another alignment" in err and out in err
    assert json.loads((aligned["tmp"] / "nn" / "alignment.json").read_text())["method"] == "nn"
    rc, _ = run_cli(["--ckpt", str(tiny_ckpt), clip, other, "--out", out, "--no-cache",
                     "--quiet", "--no-video", "--overwrite"], capsys)
    assert rc == 0
    assert json.loads((aligned["tmp"] / "nn" / "alignment.json").read_text())["method"] == "dtw"
    rc, _ = run_cli(["--ckpt", str(tiny_ckpt), clip, other, "--out", out, "--no-cache",
                     "--quiet", "--no-video"], capsys)
    assert rc == 0  # the same alignment again is simply redone
    rc, err = run_cli(["--ckpt", str(tiny_ckpt), clip, other, "--out", str(tmp_path / "d"),
                       "--phases", str(aligned["tmp"] / "o.npy")], capsys)
    assert rc == 1 and "o.npy" in err and "120" in err  # labels for the wrong length
    # a folder without an alignment but with a file of one of its names: the user's, kept
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "similarity.png").write_bytes(b"my own picture")
    rc, err = run_cli(["--ckpt", str(tiny_ckpt), clip, other, "--out", str(mine)], capsys)
    assert rc == 1 and "similarity.png" in err and "--overwrite" in err
    assert len(err.splitlines()) == 1
    assert (mine / "similarity.png").read_bytes() == b"my own picture"


def test_model_from_a_config(aligned, tiny_ckpt, tmp_path, capsys):
    """--config builds the model and preprocessing from a training config; a checkpoint given
    too must fit that architecture."""
    import yaml

    hp = torch.load(tiny_ckpt, weights_only=True)["hyper_parameters"]
    config = {"model": {"backbone": hp["backbone"], "embedder": hp["embedder"]},
              "data": {"class_path": "mvf_lightning.data.DemoDataModule",
                       "init_args": {"root": str(tmp_path), "crop_size": 32,
                                     "mean": [0.5] * 3, "std": [0.5] * 3}}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    clip, other = str(aligned["clip"]), str(aligned["path"])
    record = run_align(clip, [other], str(tmp_path / "cfg"), config=str(path),
                       ckpt=str(tiny_ckpt), cache_dir=str(aligned["cache"]), video=False,
                       quiet=True)
    assert record["preprocessing"]["crop_size"] == 32
    assert record["videos"][0]["matched_frame"] == aligned["dtw"]["videos"][0]["matched_frame"]
    config["model"]["embedder"]["embedding_dim"] = 8  # another architecture
    path.write_text(yaml.safe_dump(config))
    rc, err = run_cli(["--config", str(path), "--ckpt", str(tiny_ckpt), clip, other, "--out",
                       str(tmp_path / "bad"), "--quiet"], capsys)
    assert rc == 1 and "different architecture" in err and str(tiny_ckpt) in err
