"""docs/architecture.md's worked examples, followed to the letter in a copy of the package: a
toy dataset (a converter module, a DataModule module, a config) and a toy metric (a module
and one entry in the table), then ``prepare toy`` and ``fit`` end to end. Nothing else of
the package is edited."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.cli_helpers import ROOT, cli_env, tiny_override

pytestmark = [pytest.mark.integration]

CONVERTER = '''
"""Toy clips with four phases (the demo's generator), as a converter."""

from __future__ import annotations

import argparse

from mvf_lightning.data.demo import ensure_demo_dataset
from mvf_lightning.data.index import load_split
from mvf_lightning.prepare.common import Converter, PrepareError


def convert(out, videos: int, overwrite: bool) -> dict:
    if (out / "index").exists() and not overwrite:
        raise PrepareError(f"index already exists: {out / 'index'}")
    ensure_demo_dataset(out, num_train=videos, num_val=videos // 2)
    return {"videos": {s: len(load_split(out, s)) for s in ("train", "val")}}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--videos", type=int, default=8)


CONVERTER = Converter(
    name="toy", help="generated clips with four phases", add_arguments=add_arguments,
    run=lambda args: convert(args.out, args.videos, args.overwrite),
)
'''

DATAMODULE = '''
"""The toy dataset's DataModule."""

from typing import Any, ClassVar

from mvf_lightning.data.datamodules import VideoDataModule


class ToyDataModule(VideoDataModule):
    eval_name = "toy"
    alignment_stride = 1
    protocol_settings: ClassVar[dict[str, Any]] = {"fractions": (0.5, 1.0)}
    prepare_hint = "python -m mvf_lightning prepare toy --out {root}"

    def __init__(self, root: str, **kwargs: Any) -> None:
        super().__init__(root=root, eval_by_group=False, eval_set_name="toy", **kwargs)
'''

METRIC = '''
"""A toy metric: the number of val frames."""

from .base import Video, VideoMetric


class ToyMetric(VideoMetric):
    def score(self, train: list[Video], val: list[Video]) -> float | None:
        return None if not val else float(sum(v.embeddings.shape[0] for v in val))

    @classmethod
    def names(cls, protocol):
        return ["toy_frames"]

    @classmethod
    def for_protocol(cls, protocol, spec):
        return {"toy_frames": cls()}
'''


def _add_table_entry(package: Path) -> None:
    """The one entry in ``METRIC_FAMILIES`` (and its import)."""
    table = package / "evaluation" / "metrics" / "__init__.py"
    text = table.read_text()
    entry = '    "retrieval_ap": RetrievalAP,\n}'
    assert text.count(entry) == 1, "METRIC_FAMILIES no longer ends as the docs say"
    text = text.replace(entry, '    "retrieval_ap": RetrievalAP,\n    "toy_frames": ToyMetric,\n}')
    text = text.replace("from .tau import", "from .toy_metric import ToyMetric\nfrom .tau import")
    table.write_text(text)


def test_a_toy_dataset_and_metric_added_the_documented_way_run_end_to_end(tmp_path):
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copytree(ROOT / "mvf_lightning", copy / "mvf_lightning",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "configs", copy / "configs")
    package = copy / "mvf_lightning"
    (package / "prepare" / "toy.py").write_text(textwrap.dedent(CONVERTER))
    (package / "data" / "toy.py").write_text(textwrap.dedent(DATAMODULE))
    (package / "evaluation" / "metrics" / "toy_metric.py").write_text(textwrap.dedent(METRIC))
    _add_table_entry(package)
    (copy / "configs" / "toy.yaml").write_text(yaml.safe_dump({
        "inherit": "demo.yaml",
        "data": {"class_path": "mvf_lightning.data.toy.ToyDataModule",
                 "init_args": {"root": "data/toy", "num_frames": 8}},
    }))

    env = cli_env(tmp_path)
    env["PYTHONPATH"] = f"{copy}:{ROOT}"  # the copy first; tests' helpers from the checkout

    def run(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "mvf_lightning", *args], cwd=copy, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-4000:]
        return proc

    assert "toy" in run("prepare", "--help").stdout
    out = run("prepare", "toy", "--out", "data/toy", "--videos", "6").stdout
    assert "toy: wrote data/toy/index (train: 6, val: 3 videos)" in out

    tiny = tiny_override(tmp_path, copy / "data" / "toy", tmp_path / "ckpt", tmp_path / "logs")
    config = yaml.safe_load(tiny.read_text())
    config["data"]["init_args"]["num_frames"] = 8
    tiny.write_text(yaml.safe_dump(config))
    fit = run("fit", "--config", "configs/toy.yaml", "--config", str(tiny))
    assert "val metrics (toy)" in fit.stdout and "toy_frames" in fit.stdout
    (result,) = (tmp_path / "logs").glob("*/version_0/evaluation/val_epoch0000.json")
    saved = json.loads(result.read_text())
    assert saved["dataset"] == "toy" and list(saved["sets"]) == ["toy"]
    assert saved["mean"]["toy_frames"] > 0  # every val frame, counted by the toy metric
    assert "phase_classification_logreg@0.5" in saved["mean"]  # the DataModule's protocol
