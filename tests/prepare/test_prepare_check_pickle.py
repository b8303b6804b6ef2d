"""``prepare check`` and the restricted unpickler."""

from __future__ import annotations

import io
import json
import os
import pickle

import pytest

from mvf_lightning.data.index import VideoIndex, VideoRecord, index_path
from mvf_lightning.prepare.common import PrepareError
from mvf_lightning.prepare.safe_pickle import RestrictedUnpickler, load_trusted_pickle


def test_check_catches_missing_file_and_frame_count_mismatch(carl_pouring, run_prepare):
    root = carl_pouring
    assert run_prepare("pouring", "--carl", root, "--trust-pickle", "--out", root)[0] == 0
    code, out, err = run_prepare("check", root, "--workers", "1")
    assert code == 0, err
    assert "train: 1 videos, 5 frames, 1 groups, 1 labelled videos, labelled frames 100.0%" in out

    # frame-count mismatch: the index claims 7 frames (labels too) for a 5-frame video
    path = index_path(root, "train")
    idx = VideoIndex.load(path)
    v = idx[0]
    idx.videos[0] = VideoRecord.from_labels(v.id, v.path, [0] * 7, fps=v.fps, group=v.group)
    idx.save(path, overwrite=True)
    os.remove(root / "videos" / "pour_val_0.mp4")

    code, _, err = run_prepare("check", root, "--split", "train", "--workers", "1")
    assert code == 1 and "num_frames=7" in err and "decodes to 5" in err  # probe-based count
    code, out, err = run_prepare("check", root, "--workers", "1", "--full")
    assert code == 1
    assert "pour_val_0.mp4" in err and "missing" in err
    assert "pour_train_0.mp4" in err and "num_frames=7" in err and "decodes to 5" in err
    assert "test: 1 videos" in out  # the healthy split is still summarised

    code, out, err = run_prepare("check", root, "--split", "test", "--workers", "1")
    assert code == 0, err


def test_check_reports_unreadable_index_and_missing_root(tmp_path, run_prepare):
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "train.json").write_text(json.dumps({"format": "other"}))
    code, _, err = run_prepare("check", tmp_path)
    assert code == 1 and "train.json" in err and "not an mvf_lightning index" in err
    code, _, err = run_prepare("check", tmp_path / "nothing")
    assert code != 0 and "nothing" in err


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo owned",))


def test_restricted_unpickler_refuses_code(tmp_path):
    blob = pickle.dumps([{"name": "x", "payload": _Evil()}], protocol=2)
    with pytest.raises(PrepareError, match="refusing to unpickle global posix.system"):
        RestrictedUnpickler(io.BytesIO(blob), "evil.pkl").load()
    path = tmp_path / "x.pkl"
    path.write_bytes(blob)
    with pytest.raises(PrepareError, match="--trust-pickle"):
        load_trusted_pickle(path, trust=False)
