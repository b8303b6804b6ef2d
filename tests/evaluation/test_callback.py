"""AlignmentEvaluation and ``evaluate --embeddings`` report the same names and values, with
the DataModule's protocol recorded in the export; broken videos never stop an evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mvf_lightning.data import FineGymDataModule, PennActionDataModule, PouringDataModule
from mvf_lightning.data.index import VideoIndex, VideoRecord, index_path
from mvf_lightning.evaluation import EvalProtocol, SetSpec, read_export_info
from mvf_lightning.evaluation.callback import AlignmentEvaluation
from mvf_lightning.evaluation.evaluate_cli import main as evaluate_main
from mvf_lightning.evaluation.metrics import SGDProbeSettings
from mvf_lightning.evaluation.prediction_writer import EmbeddingExport


def outputs(set_name: str, num_train: int, num_val: int, seed: int = 0, classes: int = 3):
    """What the module's eval step returns for a set's videos (numbered in index order)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, 8))
    out = []
    for split, count in (("train", num_train), ("val", num_val)):
        for i in range(count):
            n = int(rng.integers(20, 40))
            y = np.minimum(np.arange(n) * classes // n, classes - 1)
            x = centres[y] + 0.7 * rng.normal(size=(n, 8)) + np.arange(n)[:, None] / n
            y[:2] = -1
            emb = torch.nn.functional.normalize(torch.tensor(x, dtype=torch.float32), dim=1)
            out.append({"embeddings": emb, "labels": torch.tensor(y), "video_id": f"{i:04d}",
                        "set_name": set_name, "split": split, "group": set_name,
                        "frame_indices": torch.arange(n)})
    return out


class StubData:
    """The evaluation side of a DataModule (mvf_lightning.data.contract.EvaluationData)."""

    def __init__(self, protocol: EvalProtocol, name: str) -> None:
        self.eval_protocol, self.eval_name = protocol, name

    def eval_sets(self):
        return {}

    def eval_fingerprint(self) -> str:
        return "stub"

    def eval_frames(self, set_name, video_id):
        return None


def stub_trainer(protocol: EvalProtocol, name: str) -> SimpleNamespace:
    return SimpleNamespace(world_size=1, global_rank=0, is_global_zero=True,
                           sanity_checking=False, datamodule=StubData(protocol, name))


def evaluated(callback: AlignmentEvaluation, trainer, items: list[dict]) -> dict:
    """One validation loop's hooks: start, a batch end per item, then the scores."""
    callback.on_validation_epoch_start(trainer, SimpleNamespace(device=torch.device("cpu")))
    for i, item in enumerate(items):
        callback.on_validation_batch_end(trainer, None, item, None, i)
    return callback.evaluate(trainer, "val")


def callback_vs_evaluate(tmp_path: Path, protocol: EvalProtocol, name: str, items: list[dict]):
    trainer = stub_trainer(protocol, name)
    from_callback = evaluated(AlignmentEvaluation(), trainer, items)

    writer = EmbeddingExport(output_dir=str(tmp_path / "export"))
    for i, item in enumerate(items):
        writer.write_on_batch_end(trainer, None, item, [i], None, i, 0)
    writer.on_predict_epoch_end(trainer, None)
    result = tmp_path / "metrics.json"
    assert evaluate_main(["--embeddings", str(writer.written), "--output", str(result),
                          "--device", "cpu"]) == 0  # no --stride, --fractions or --probe
    return from_callback, json.loads(result.read_text())


def test_callback_and_evaluate_agree_exactly(tmp_path):
    items = outputs("golf", 5, 4) + outputs("tennis", 5, 4, seed=1)
    protocol = EvalProtocol(sets=(SetSpec("golf", 3, tuple(f"{i:04d}" for i in range(5))),
                                  SetSpec("tennis", 3, tuple(f"{i:04d}" for i in range(5)))))
    from_callback, from_evaluate = callback_vs_evaluate(tmp_path, protocol, "penn", items)
    assert list(from_callback) == ["golf", "tennis", "mean"]
    for set_name in ("golf", "tennis"):
        assert from_evaluate["sets"][set_name] == from_callback[set_name]  # names and values
    assert from_evaluate["mean"] == from_callback["mean"]
    assert list(from_callback["mean"]) == [
        "phase_classification_logreg@1.0", "phase_progression", "kendalls_tau",
        "retrieval_ap@5", "retrieval_ap@10", "retrieval_ap@15"]


def test_finegym_style_export_is_scored_with_its_own_stride_and_probe(tmp_path, capsys):
    items = outputs("gym99", 12, 4, classes=4)
    protocol = EvalProtocol(stride=5, probe="sgd", fractions=(0.1, 0.5, 1.0),
                            sgd=SGDProbeSettings(epochs=4),
                            sets=(SetSpec("gym99", 4, tuple(f"{i:04d}" for i in range(12))),))
    from_callback, from_evaluate = callback_vs_evaluate(tmp_path, protocol, "gym99", items)
    assert from_evaluate["protocol"]["stride"] == 5 and from_evaluate["protocol"]["probe"] == "sgd"
    assert from_evaluate["dataset"] == "gym99"
    names = ["phase_classification_sgd@0.1", "phase_classification_sgd@0.5",
             "phase_classification_sgd@1.0"]
    assert list(from_evaluate["sets"]["gym99"])[:3] == names
    assert from_evaluate["sets"]["gym99"] == from_callback["gym99"]
    # stride 5, not evaluate's old default of 2: an explicit override changes tau
    assert evaluate_main(["--embeddings", str(tmp_path / "export"), "--stride", "2",
                          "--output", str(tmp_path / "s2.json")]) == 0
    stride2 = json.loads((tmp_path / "s2.json").read_text())
    assert stride2["sets"]["gym99"]["kendalls_tau"] != from_evaluate["sets"]["gym99"][
        "kendalls_tau"]


def test_broken_video_is_listed_not_scored(tmp_path):
    items = outputs("golf", 4, 3)
    broken = {"video_id": "0009", "set_name": "golf", "split": "val", "group": "golf",
              "broken": True, "error": "cannot decode video v/0009.mp4: moov atom not found"}
    protocol = EvalProtocol()
    trainer = stub_trainer(protocol, "penn")
    clean = evaluated(AlignmentEvaluation(), trainer, items)
    callback = AlignmentEvaluation()
    with pytest.warns(UserWarning, match="golf/val/0009 failed to decode"):
        with_broken = evaluated(callback, trainer, [*items, broken, broken])  # warned once
    assert with_broken == clean
    assert [v.video_id for v in callback.broken] == ["0009"]

    writer = EmbeddingExport(output_dir=str(tmp_path / "export"))
    for i, item in enumerate([*items, broken]):
        writer.write_on_batch_end(trainer, None, item, [i], None, i, 0)
    with pytest.warns(UserWarning, match="1 video.s. failed to decode and were not exported"):
        writer.on_predict_epoch_end(trainer, None)
    info = read_export_info(writer.written)
    assert [(b.video_id, b.error) for b in info["broken_videos"]] == [("0009", broken["error"])]


def write_index(root: Path, split: str, ids: list[str], classes: int) -> None:
    records = [VideoRecord.from_labels(i, f"videos/{i}.mp4", [0] * 5 + [classes - 1] * 5,
                                       num_frames=10, fps=25.0, group="g") for i in ids]
    VideoIndex("x", split, records, root).save(index_path(root, split), overwrite=True)


def test_datamodules_supply_their_protocol(tmp_path):
    write_index(tmp_path, "gym99_train", ["e2", "e1", "e3"], 99)
    write_index(tmp_path, "gym99_val", ["e4"], 99)
    gym = FineGymDataModule(root=str(tmp_path)).eval_protocol
    assert (gym.stride, gym.probe, gym.fractions) == (5, "sgd", (0.1, 0.5, 1.0))
    assert gym.sets == (SetSpec("gym99", 99, ("e2", "e1", "e3")),)  # index order
    write_index(tmp_path, "train", ["a"], 3)
    write_index(tmp_path, "val", ["b"], 3)
    pouring = PouringDataModule(root=str(tmp_path)).eval_protocol
    assert (pouring.stride, pouring.probe, pouring.fractions) == (5, "logreg", (0.1, 0.5, 1.0))
    penn = PennActionDataModule(root=str(tmp_path)).eval_protocol
    assert (penn.stride, penn.probe, penn.fractions) == (2, "logreg", (1.0,))
    assert AlignmentEvaluation(stride=3).protocol_for(
        stub_trainer(penn, "penn")).stride == 3  # explicit override


def test_fingerprint_follows_evaluation_settings_only(tmp_path):
    write_index(tmp_path, "train", ["a"], 3)
    write_index(tmp_path, "val", ["b"], 3)
    base = PennActionDataModule(root=str(tmp_path)).eval_fingerprint()
    assert PennActionDataModule(root=str(tmp_path), batch_size=7).eval_fingerprint() == base
    assert PennActionDataModule(root=str(tmp_path), crop_size=112).eval_fingerprint() != base
    write_index(tmp_path, "val", ["b", "c"], 3)
    assert PennActionDataModule(root=str(tmp_path)).eval_fingerprint() != base
