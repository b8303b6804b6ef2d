"""Embedding export round trip, its safety checks, and the ``evaluate`` command on an export."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mvf_lightning.evaluation import (
    EmbeddingExportError,
    VideoEmbedding,
    read_embeddings,
    write_embeddings,
)
from mvf_lightning.evaluation.evaluate_cli import main


def make_records(rng: np.random.Generator, sets=("golf", "tennis"), dim=8, per_split=3):
    """Small phase-structured videos: 3 phases, embeddings drifting with the phase."""
    recs = []
    for s in sets:
        centers = rng.normal(size=(3, dim))
        for split in ("train", "val"):
            for i in range(per_split):
                n = int(rng.integers(12, 20))
                y = np.minimum(np.arange(n) * 3 // n, 2)
                x = centers[y] + 0.3 * rng.normal(size=(n, dim))
                y[0] = -1  # one unlabelled frame per video
                recs.append(
                    VideoEmbedding(
                        video_id=f"{s}/{split}-{i}",
                        set_name=s,
                        split=split,
                        embeddings=x.astype(np.float32),
                        labels=y,
                        frame_indices=np.arange(n) * 2,
                        group=s,
                    )
                )
    return recs


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    recs = make_records(rng)
    recs.append(
        VideoEmbedding("unlabelled", "golf", "val", torch.zeros(4, 8, dtype=torch.float64))
    )
    out = write_embeddings(tmp_path / "emb", recs)
    index = json.loads((out / "index.json").read_text())
    assert index["format"] == "mvf_lightning.embeddings" and index["version"] == 1
    assert index["embedding_dim"] == 8
    assert index["videos"][0]["file"] == "golf_train-0.npy"  # "/" sanitised
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp dirs left

    sets = read_embeddings(out)
    assert sorted(sets) == ["golf", "tennis"]
    assert [r.video_id for r in sets["golf"]["train"]] == [f"golf/train-{i}" for i in range(3)]
    got = sets["golf"]["val"][-1]
    assert got.labels is None and got.embeddings.dtype == np.float32 and got.num_frames == 4
    first = sets["tennis"]["val"][0]
    orig = next(r for r in recs if r.video_id == "tennis/val-0")
    np.testing.assert_array_equal(first.embeddings, orig.embeddings)
    np.testing.assert_array_equal(first.labels, orig.labels)
    np.testing.assert_array_equal(first.frame_indices, orig.frame_indices)
    assert first.labels.dtype == np.int64 and first.group == "tennis" and first.split == "val"


def test_no_overwrite_unless_asked(tmp_path):
    rng = np.random.default_rng(1)
    out = write_embeddings(tmp_path / "emb", make_records(rng, sets=("a",)))
    with pytest.raises(FileExistsError, match="overwrite"):
        write_embeddings(out, make_records(rng, sets=("b",)))
    assert list(read_embeddings(out)) == ["a"]
    write_embeddings(out, make_records(rng, sets=("b",)), overwrite=True)
    assert list(read_embeddings(out)) == ["b"]
    # a non-empty directory that is not an export is never replaced
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not an embedding export"):
        write_embeddings(other, make_records(rng), overwrite=True)
    assert (other / "notes.txt").read_text() == "keep"


def test_failed_write_leaves_nothing(tmp_path):
    rng = np.random.default_rng(2)
    recs = make_records(rng, sets=("a",))
    recs[2].labels = recs[2].labels[:-1]
    with pytest.raises(ValueError, match=r"record 2 .*labels must be 1-D with \d+ entries"):
        write_embeddings(tmp_path / "emb", recs)
    assert list(tmp_path.iterdir()) == []
    recs = make_records(rng, sets=("a",))
    recs[1].embeddings = np.zeros((recs[1].num_frames, 3), np.float32)
    with pytest.raises(ValueError, match="embedding dim 3, expected 8"):
        write_embeddings(tmp_path / "emb", recs)
    recs = make_records(rng, sets=("a",))
    recs[1].split = "test"
    with pytest.raises(ValueError, match="split"):
        write_embeddings(tmp_path / "emb", recs)
    recs = make_records(rng, sets=("a",))
    recs.append(recs[0])
    with pytest.raises(ValueError, match="duplicate"):
        write_embeddings(tmp_path / "emb", recs)
    assert list(tmp_path.iterdir()) == []


def test_colliding_ids_get_distinct_files(tmp_path):
    x = np.zeros((2, 3), np.float32)
    recs = [
        VideoEmbedding("a/b", "s", "val", x, labels=np.zeros(2, np.int64)),
        VideoEmbedding("a_b", "s", "val", x + 1),
        VideoEmbedding("a_b.labels", "s", "val", x + 2),
    ]
    out = write_embeddings(tmp_path / "e", recs)
    files = [v["file"] for v in json.loads((out / "index.json").read_text())["videos"]]
    assert len(set(files)) == 3
    got = read_embeddings(out)["s"]["val"]
    assert [float(r.embeddings[0, 0]) for r in got] == [0.0, 1.0, 2.0]


def test_read_errors_name_the_file(tmp_path):
    rng = np.random.default_rng(3)
    out = write_embeddings(tmp_path / "emb", make_records(rng, sets=("a",)))
    with pytest.raises(EmbeddingExportError, match="index.json: not found"):
        read_embeddings(tmp_path)
    index = json.loads((out / "index.json").read_text())
    # wrong shape of one embedding file
    name = index["videos"][1]["file"]
    np.save(out / name, np.zeros((3, 8), np.float32))
    with pytest.raises(EmbeddingExportError, match=rf"{name}: expected float32 \[\d+, 8\]"):
        read_embeddings(out)
    # path escaping the export directory
    index["videos"][1]["file"] = "../evil.npy"
    (out / "index.json").write_text(json.dumps(index))
    with pytest.raises(EmbeddingExportError, match="invalid file name"):
        read_embeddings(out)
    # pickled object arrays are refused
    index["videos"][1]["file"] = "obj.npy"
    np.save(out / "obj.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    (out / "index.json").write_text(json.dumps(index))
    with pytest.raises(EmbeddingExportError, match="obj.npy: cannot read"):
        read_embeddings(out)
    (out / "index.json").write_text(json.dumps({**index, "version": 99}))
    with pytest.raises(EmbeddingExportError, match="unsupported version 99"):
        read_embeddings(out)


def test_evaluate_main(tmp_path, capsys):
    rng = np.random.default_rng(4)
    out = write_embeddings(tmp_path / "emb", make_records(rng, per_split=4))
    result = tmp_path / "m" / "metrics.json"
    rc = main(
        ["--embeddings", str(out), "--stride", "1", "--fractions", "0.5", "1.0",
         "--output", str(result), "--device", "cpu"]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "phase_classification_logreg@0.5" in printed and "mean" in printed
    assert "golf" in printed
    data = json.loads(result.read_text())
    assert data["format"] == "mvf_lightning.evaluation_results" and len(data["sets"]) == 2
    keys = {"phase_classification_logreg@0.5", "phase_classification_logreg@1.0",
            "phase_progression", "kendalls_tau", "retrieval_ap@5", "retrieval_ap@10",
            "retrieval_ap@15"}
    assert set(data["mean"]) == keys
    for name in ("golf", "tennis"):
        row = data["sets"][name]
        assert row["phase_classification_logreg@1.0"] > 0.9  # well-separated phases
        assert 0.0 <= row["retrieval_ap@5"] <= 1.0 and -1.0 <= row["kendalls_tau"] <= 1.0
        assert row["phase_progression"] is not None
    mean_tau = np.mean([data["sets"][s]["kendalls_tau"] for s in ("golf", "tennis")])
    assert math.isclose(data["mean"]["kendalls_tau"], mean_tau, rel_tol=1e-12)


def test_evaluate_main_bad_input(tmp_path, capsys):
    assert main(["--embeddings", str(tmp_path / "missing")]) == 1
    assert "not found" in capsys.readouterr().err
    assert main(["--embeddings", str(tmp_path), "--fractions", "1.5"]) == 1
