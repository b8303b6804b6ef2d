"""The alignment metrics as torchmetrics classes: each equals the protocol's function, counts a
video once, and gives the same numbers on one process and on two DDP ranks (the README's
example, run as written); they log with ``self.log`` in a LightningModule."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys

import pytest
import torch

from mvf_lightning.evaluation.metrics import (
    kendalls_tau,
    phase_classification,
    phase_progression,
    retrieval_ap_at,
)
from mvf_lightning.metrics import KendallsTau, PhaseClassification, PhaseProgression, RetrievalAP
from tests.cli_helpers import ROOT
from tests.evaluation.metrics_example import videos


def _fed(metric, items):
    for v in items:
        metric.update(v.embeddings, v.labels, video_id=v.id, train=v.is_train)
    return metric


def test_public_import_path_holds_torchmetrics_classes():
    from torchmetrics import Metric

    from mvf_lightning.evaluation import metrics as kernels

    for cls in (KendallsTau, RetrievalAP, PhaseClassification, PhaseProgression):
        assert issubclass(cls, Metric)
        assert getattr(kernels, cls.__name__) is cls


def test_each_class_equals_its_function():
    items = videos()
    train = sorted((v for v in items if v.is_train), key=lambda v: v.id)
    val = sorted((v for v in items if not v.is_train), key=lambda v: v.id)
    labelled = [v.embeddings[v.labels >= 0] for v in val]
    assert float(_fed(KendallsTau(stride=2), items).compute()) == pytest.approx(
        kendalls_tau(labelled, stride=2), abs=1e-12
    )
    ap = retrieval_ap_at([v.embeddings for v in val], [v.labels for v in val], [5, 10], stride=2)
    assert float(_fed(RetrievalAP(k=5, stride=2), items).compute()) == pytest.approx(ap[5])
    both = _fed(RetrievalAP(k=[5, 10], stride=2), items).compute()
    assert {k: float(v) for k, v in both.items()} == pytest.approx(
        {"retrieval_ap@5": ap[5], "retrieval_ap@10": ap[10]}
    )
    args = (
        [v.embeddings for v in train],
        [v.labels for v in train],
        [v.embeddings for v in val],
        [v.labels for v in val],
    )
    for fraction in (0.1, 0.5, 1.0):
        assert float(
            _fed(PhaseClassification(fraction=fraction), items).compute()
        ) == pytest.approx(phase_classification(*args, fraction=fraction), abs=1e-12)
        assert float(
            _fed(PhaseProgression(num_classes=4, fraction=fraction), items).compute()
        ) == pytest.approx(phase_progression(*args, num_classes=4, fraction=fraction), abs=1e-12)


def test_a_video_counts_once_in_any_order_and_train_order_chooses_the_probe_videos():
    items = videos()
    once = float(_fed(PhaseClassification(fraction=0.5), items).compute())
    again = _fed(PhaseClassification(fraction=0.5), [*reversed(items), items[0], items[-1]])
    assert float(again.compute()) == once
    train_ids = [v.id for v in items if v.is_train]
    reordered = _fed(PhaseClassification(fraction=0.5, train_order=train_ids[::-1]), items)
    train = [v for v in items if v.is_train][::-1][:3]  # the first 3 of 6 in that order
    val = [v for v in items if not v.is_train]
    expected = phase_classification(
        [v.embeddings for v in train],
        [v.labels for v in train],
        [v.embeddings for v in val],
        [v.labels for v in val],
    )
    assert float(reordered.compute()) == pytest.approx(expected, abs=1e-12)


def test_undefined_is_nan_and_says_so():
    one = videos(count_train=0, count_val=1)
    tau = _fed(KendallsTau(), one)
    assert math.isnan(float(tau.compute())) and tau.defined is False
    probe = _fed(PhaseClassification(), one)  # no train videos
    assert math.isnan(float(probe.compute())) and probe.defined is False
    with pytest.raises(ValueError, match="embeddings must be"):
        KendallsTau().update(torch.zeros(3), video_id="x")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_example(tmp_path, world: int) -> dict:
    port = _free_port()
    outs = [tmp_path / f"rank{r}_of{world}.json" for r in range(world)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.evaluation.metrics_example",
                "--rank",
                str(r),
                "--world",
                str(world),
                "--port",
                str(port),
                "--out",
                str(outs[r]),
            ],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(world)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    results = [json.loads(out.read_text()) for out in outs]
    assert all(r == results[0] for r in results), results  # every rank the same numbers
    return results[0]


@pytest.mark.slow
def test_the_readme_example_gives_the_same_numbers_on_two_ranks(tmp_path):
    one = _run_example(tmp_path, 1)
    assert set(one) == {"tau", "ap5", "cls", "prog"}
    assert all(math.isfinite(v) for v in one.values())
    two = _run_example(tmp_path, 2)
    assert two == pytest.approx(one, abs=1e-9)


def test_self_log_in_a_lightning_module(tmp_path):
    """``self.log(name, metric)``: Lightning calls compute() at the epoch's end."""
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader

    items = videos()

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(6, 6)
            self.tau = KendallsTau(stride=2)

        def validation_step(self, batch, batch_idx):
            v = items[int(batch)]
            self.tau.update(v.embeddings, v.labels, video_id=v.id, train=v.is_train)
            self.log("val/tau", self.tau, on_epoch=True, batch_size=1)

    trainer = pl.Trainer(
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        accelerator="cpu",
        devices=1,
    )
    (logged,) = trainer.validate(Module(), DataLoader(torch.arange(len(items))), verbose=False)
    direct = float(_fed(KendallsTau(stride=2), items).compute())
    assert logged["val/tau"] == pytest.approx(direct, abs=1e-6)
