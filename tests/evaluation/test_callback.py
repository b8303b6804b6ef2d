"""compute_set_metrics / mean_over_sets / format_table: the callback's protocol bookkeeping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mvf_lightning.evaluation import (
    kendalls_tau,
    phase_classification,
    phase_progression,
    retrieval_ap,
)
from mvf_lightning.evaluation.callback import (
    VideoEmbedding,
    compute_set_metrics,
    format_table,
    mean_over_sets,
)


def video(split: str, vid: str, n: int, seed: int, unlabelled_tail: int = 0) -> VideoEmbedding:
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n)
    labels = np.minimum((t * 3).astype(np.int64), 2)
    emb = np.stack([t, 1 - t, *rng.normal(0, 0.05, (6, n))], axis=1).astype(np.float32)
    if unlabelled_tail:
        labels[-unlabelled_tail:] = -1
        emb[-unlabelled_tail:] = rng.normal(0, 5, (unlabelled_tail, emb.shape[1]))
    return VideoEmbedding("set", split, vid, emb, labels)


@pytest.fixture
def videos() -> list[VideoEmbedding]:
    return [video("train", f"t{i}", 20 + 3 * i, i) for i in range(4)] + [
        video("val", f"v{i}", 18 + 4 * i, 10 + i, unlabelled_tail=5) for i in range(3)
    ]


def test_metrics_follow_the_protocol_functions(videos):
    out = compute_set_metrics(videos, num_classes=3, stride=2, ap_ks=(5,), fractions=(1.0, 0.5))
    train = [v for v in videos if v.split == "train"]
    val = [v for v in videos if v.split == "val"]
    kept = [v.embeddings[v.labels >= 0] for v in val]
    assert out["kendalls_tau"] == pytest.approx(kendalls_tau(kept, stride=2), abs=1e-12)
    assert out["retrieval_ap@5"] == pytest.approx(
        retrieval_ap([v.embeddings for v in val], [v.labels for v in val], 5, stride=2)
    )
    args = ([v.embeddings for v in train], [v.labels for v in train],
            [v.embeddings for v in val], [v.labels for v in val])
    assert out["phase_classification"] == pytest.approx(phase_classification(*args))
    assert out["phase_classification_0.5"] == pytest.approx(
        phase_classification(*args, fraction=0.5)
    )
    assert out["phase_progression"] == pytest.approx(phase_progression(*args, num_classes=3))


def test_unlabelled_frames_do_not_affect_tau(videos):
    base = compute_set_metrics(videos, num_classes=3, metrics=["kendalls_tau"])
    for v in videos:
        v.embeddings[v.labels < 0] = 1e3  # garbage where the label is -1
    again = compute_set_metrics(videos, num_classes=3, metrics=["kendalls_tau"])
    assert base == again


def test_train_order_selects_the_first_videos(videos):
    reverse = [v.video_id for v in videos if v.split == "train"][::-1]
    a = compute_set_metrics(videos, fractions=(0.25,), metrics=["phase_classification"])
    b = compute_set_metrics(videos, fractions=(0.25,), metrics=["phase_classification"],
                            train_order=reverse)
    train = [v for v in videos if v.split == "train"]
    val = [v for v in videos if v.split == "val"]
    expected = phase_classification(
        [train[-1].embeddings], [train[-1].labels],
        [v.embeddings for v in val], [v.labels for v in val],
    )
    assert b["phase_classification_0.25"] == pytest.approx(expected)
    assert "phase_classification_0.25" in a


def test_unlabelled_set_gets_tau_only():
    vids = [video("val", f"v{i}", 20, i) for i in range(3)]
    for v in vids:
        v.labels[:] = -1
    out = compute_set_metrics(vids)
    assert list(out) == ["kendalls_tau"]


def test_mean_ignores_nan_and_table_lists_every_set():
    results = {"a": {"kendalls_tau": 0.5, "x": math.nan}, "b": {"kendalls_tau": 0.7, "x": 1.0}}
    mean = mean_over_sets(results)
    assert mean == {"kendalls_tau": pytest.approx(0.6), "x": 1.0}
    table = format_table({**results, "mean": mean}, "title")
    lines = table.splitlines()
    assert lines[0] == "title" and lines[1].split() == ["set", "kendalls_tau", "x"]
    assert any(line.startswith("mean") and "0.6000" in line for line in lines)
