"""The evaluation protocol: scoring one set and all sets, names, table, JSON, regrouping."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mvf_lightning.evaluation import (
    EvalProtocol,
    SetSpec,
    VideoEmbedding,
    format_table,
    kendalls_tau,
    phase_classification,
    phase_classification_sgd,
    phase_progression,
    results_from_metrics,
    retrieval_ap,
    score_set,
    score_sets,
)
from mvf_lightning.evaluation.metrics import SGDProbeSettings
from mvf_lightning.evaluation.protocol import (
    mean_over_sets,
    results_path,
    results_payload,
    write_results,
)


def video(split: str, vid: str, n: int, seed: int, unlabelled_tail: int = 0,
          set_name: str = "set") -> VideoEmbedding:
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n)
    labels = np.minimum((t * 3).astype(np.int64), 2)
    emb = np.stack([t, 1 - t, *rng.normal(0, 0.05, (6, n))], axis=1).astype(np.float32)
    if unlabelled_tail:
        labels[-unlabelled_tail:] = -1
        emb[-unlabelled_tail:] = rng.normal(0, 5, (unlabelled_tail, emb.shape[1]))
    return VideoEmbedding(video_id=vid, set_name=set_name, split=split, embeddings=emb,
                          labels=labels)


@pytest.fixture
def videos() -> list[VideoEmbedding]:
    return [video("train", f"t{i}", 20 + 3 * i, i) for i in range(4)] + [
        video("val", f"v{i}", 18 + 4 * i, 10 + i, unlabelled_tail=5) for i in range(3)
    ]


def arrays(videos, split):
    chosen = [v for v in videos if v.split == split]
    return [v.embeddings for v in chosen], [v.labels for v in chosen]


def test_metrics_follow_the_protocol_functions(videos):
    protocol = EvalProtocol(stride=2, ap_ks=(5,), fractions=(1.0, 0.5))
    out = score_set(videos, protocol, SetSpec("set", num_classes=3))
    train, val = arrays(videos, "train"), arrays(videos, "val")
    kept = [e[y >= 0] for e, y in zip(*val)]
    assert out["kendalls_tau"] == pytest.approx(kendalls_tau(kept, stride=2), abs=1e-12)
    assert out["retrieval_ap@5"] == pytest.approx(retrieval_ap(*val, 5, stride=2))
    args = (*train, *val)
    assert out["phase_classification_logreg@1.0"] == pytest.approx(phase_classification(*args))
    assert out["phase_classification_logreg@0.5"] == pytest.approx(
        phase_classification(*args, fraction=0.5)
    )
    assert out["phase_progression"] == pytest.approx(phase_progression(*args, num_classes=3))
    assert list(out) == [n for n in protocol.metric_names() if n in out]  # table order


def test_sgd_probe_names_and_values(videos):
    protocol = EvalProtocol(probe="sgd", fractions=(0.1, 1.0), sgd=SGDProbeSettings(epochs=5),
                            metrics=("phase_classification",))
    out = score_set(videos, protocol, SetSpec("set", num_classes=4))
    train, val = arrays(videos, "train"), arrays(videos, "val")
    assert list(out) == ["phase_classification_sgd@0.1", "phase_classification_sgd@1.0"]
    expected = phase_classification_sgd(*train, *val, 1.0, num_classes=4,
                                        settings=SGDProbeSettings(epochs=5))
    assert out["phase_classification_sgd@1.0"] == pytest.approx(expected)


def test_unlabelled_frames_do_not_affect_tau(videos):
    protocol = EvalProtocol(metrics=("kendalls_tau",))
    base = score_set(videos, protocol)
    for v in videos:
        v.embeddings[v.labels < 0] = 1e3  # garbage where the label is -1
    again = score_set(videos, protocol)
    assert base == again


def test_train_order_selects_the_first_videos(videos):
    reverse = tuple(v.video_id for v in videos if v.split == "train")[::-1]
    protocol = EvalProtocol(fractions=(0.25,), metrics=("phase_classification",))
    a = score_set(videos, protocol)
    b = score_set(videos, protocol, SetSpec("set", train_ids=reverse))
    train = [v for v in videos if v.split == "train"]
    expected = phase_classification([train[-1].embeddings], [train[-1].labels],
                                    *arrays(videos, "val"))
    assert b["phase_classification_logreg@0.25"] == pytest.approx(expected)
    assert "phase_classification_logreg@0.25" in a


def test_unlabelled_set_gets_tau_only():
    vids = [video("val", f"v{i}", 20, i) for i in range(3)]
    for v in vids:
        v.labels[:] = -1
    assert list(score_set(vids, EvalProtocol())) == ["kendalls_tau"]


def test_mean_ignores_nan_and_table_lists_every_set():
    results = {"a": {"kendalls_tau": 0.5, "x": math.nan}, "b": {"kendalls_tau": 0.7, "x": 1.0}}
    mean = mean_over_sets(results)
    assert mean == {"kendalls_tau": pytest.approx(0.6), "x": 1.0}
    table = format_table({**results, "mean": mean}, "title")
    lines = table.splitlines()
    assert lines[0] == "title" and lines[1].split() == ["set", "kendalls_tau", "x"]
    assert any(line.startswith("mean") and "0.6000" in line for line in lines)


def test_broken_videos_are_left_out_and_listed(videos):
    broken = VideoEmbedding(video_id="bad", set_name="set", split="val", embeddings=None,
                            error="cannot decode video x.mp4: moov atom not found")
    clean = score_sets(videos, EvalProtocol())
    with_broken = score_sets([*videos, broken], EvalProtocol())
    assert with_broken.sets == clean.sets and with_broken.mean == clean.mean
    assert [v.video_id for v in with_broken.broken] == ["bad"]
    table = format_table(with_broken.table(), "t", with_broken.broken)
    assert "1 broken video(s) left out of every metric:" in table
    assert "set/val/bad: cannot decode video x.mp4: moov atom not found" in table


def test_score_sets_mean_over_sets():
    vids = [video(s, f"{name}{s}{i}", 20 + i, i + 7 * j, set_name=name)
            for j, name in enumerate(("a", "b")) for s in ("train", "val") for i in range(3)]
    res = score_sets(vids, EvalProtocol(stride=1))
    assert list(res.sets) == ["a", "b"]
    for name, value in res.mean.items():
        assert value == pytest.approx((res.sets["a"][name] + res.sets["b"][name]) / 2)
    assert list(res.table()) == ["a", "b", "mean"]


def test_protocol_json_round_trip_and_errors():
    p = EvalProtocol(stride=5, probe="sgd", fractions=(0.1, 0.5, 1.0),
                     sets=(SetSpec("gym99", 99, ("e1", "e2")),))
    again = EvalProtocol.from_json(json.loads(json.dumps(p.to_json())))
    assert again == p
    with pytest.raises(ValueError, match=r"protocol: unknown key\(s\) \['strid'\]"):
        EvalProtocol.from_json({"strid": 2})
    with pytest.raises(ValueError, match="probe must be one of"):
        EvalProtocol(probe="svm")
    with pytest.raises(ValueError, match="fractions must lie in"):
        EvalProtocol(fractions=(1.5,))
    assert p.replace(stride=None, probe="logreg") == EvalProtocol(
        stride=5, probe="logreg", fractions=(0.1, 0.5, 1.0), sets=p.sets)


def test_results_from_metrics_regroups_logged_scalars():
    logged = {
        "val/penn/golf/kendalls_tau": 0.9, "val/penn/golf/retrieval_ap@5": 0.8,
        "val/penn/mean/kendalls_tau": 0.9, "val/penn/broken_videos": 1.0,
        "val/other/golf/kendalls_tau": 0.1, "train/loss": 3.0,
    }
    assert results_from_metrics(logged, "val", "penn") == {
        "golf": {"kendalls_tau": 0.9, "retrieval_ap@5": 0.8}, "mean": {"kendalls_tau": 0.9},
    }


def test_results_json(tmp_path, videos):
    res = score_sets(videos, EvalProtocol())
    payload = results_payload(res, EvalProtocol(), stage="val", dataset="d", epoch=3,
                              global_step=40)
    path = write_results(results_path(tmp_path, "val", 3), payload)
    assert path == tmp_path / "evaluation" / "val_epoch0003.json"
    data = json.loads(path.read_text())
    assert (data["stage"], data["epoch"], data["global_step"], data["dataset"]) == (
        "val", 3, 40, "d")
    assert data["sets"]["set"]["kendalls_tau"] == pytest.approx(res.sets["set"]["kendalls_tau"])
    assert data["mean"] == pytest.approx(res.mean) and data["broken_videos"] == []
    assert EvalProtocol.from_json(data["protocol"]) == EvalProtocol()
