"""The README's demo command end to end, run once for the whole file: it trains on CPU, learns,
ends with where its files are and what to run next, and its checkpoint aligns a real clip."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
TABLE_ROW = re.compile(r"^mean\s+(.*)$", re.MULTILINE)


def run_cli(args: list[str], tmp_path: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    """The command as a user runs it, timed (``.elapsed``). Not ``tests.cli_helpers.run_cli``:
    that one pins ``OMP_NUM_THREADS=1``, and the demo's thresholds were measured with torch's
    default threads."""
    env = {
        **{k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"},
        "MVF_LIGHTNING_DEMO_ROOT": str(tmp_path / "demo_data"),
        "WANDB_MODE": "offline",
        "PYTHONUNBUFFERED": "1",
    }
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mvf_lightning", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout,
    )
    proc.elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def metrics_table(stdout: str) -> dict[str, float]:
    """The last printed metrics table's mean row, by column name."""
    header = [line for line in stdout.splitlines() if line.startswith("set ")][-1].split()[1:]
    values = TABLE_ROW.findall(stdout)[-1].split()
    return dict(zip(header, map(float, values)))


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> SimpleNamespace:
    """The untrained model's validation, then the demo's fit, as the README runs them."""
    tmp = tmp_path_factory.mktemp("demo")
    config = str(ROOT / "configs" / "demo.yaml")
    untrained = run_cli(["validate", "--config", config, "--trainer.logger=false"], tmp)
    fit = run_cli(["fit", "--config", config], tmp)
    return SimpleNamespace(tmp=tmp, fit=fit, untrained=metrics_table(untrained.stdout))


@pytest.mark.integration
def test_demo_trains_and_beats_the_untrained_model(demo):
    untrained, trained = demo.untrained, metrics_table(demo.fit.stdout)
    print(f"demo fit took {demo.fit.elapsed:.0f} s; untrained {untrained}; trained {trained}")

    assert set(trained) >= {"kendalls_tau", "phase_classification_logreg@1.0", "phase_progression",
                            "retrieval_ap@5"}
    # Learning shows in phase classification and retrieval. Kendall's tau and phase
    # progression cannot show it here: an untrained MV-Former's embeddings are dominated by
    # the sine-cosine positions, which are spread over the same range for every video, so its
    # nearest neighbours are monotonic in time (tau ~1 by construction, 0.997 on the demo) and
    # a linear read-out of time is already good (progression 0.916). Seeds 0, 1 and 2 of this
    # code (--seed_everything) gained +0.008, +0.018, +0.019 in classification and +0.016,
    # +0.042, +0.067 in AP@5, and moved progression by +0.021, +0.023, -0.035; the thresholds
    # sit below the smallest gain (the test trains seed 0, the config's).
    assert (trained["phase_classification_logreg@1.0"]
            > untrained["phase_classification_logreg@1.0"] + 0.005)
    assert trained["retrieval_ap@5"] > untrained["retrieval_ap@5"] + 0.01
    assert trained["phase_progression"] > untrained["phase_progression"] - 0.05
    assert 0.5 < trained["kendalls_tau"] <= 1.0

    ckpt = torch.load(last_checkpoint(demo.tmp), weights_only=True)
    assert not [k for k in ckpt["state_dict"] if k.startswith("model.backbone.")]
    assert ckpt["mvf_lightning"]["backbone"]["pretrained"] == "package:efficientnet_lite0"


def last_checkpoint(tmp: Path) -> Path:
    (last,) = [p for p in (tmp / "runs" / "demo").rglob("*.ckpt") if p.name == "last.ckpt"]
    return last


@pytest.mark.integration
def test_demo_checkpoint_aligns_a_time_warped_clip(demo, clip, warped):
    """The README's align claim: the demo checkpoint recovers a known time warp (first half at
    half speed, second at double speed) of a real clip with DTW; nearest neighbour beside it."""
    warped_path, warp = warped
    errors = {}
    for method in ("dtw", "nn"):
        out_dir = demo.tmp / f"align_{method}"
        run_cli(["align", "--ckpt", str(last_checkpoint(demo.tmp)), str(clip), str(warped_path),
                 "--out", str(out_dir), "--method", method, "--no-video", "--quiet",
                 "--cache-dir", str(demo.tmp / "features")], demo.tmp)  # nn reuses dtw's
        record = json.loads((out_dir / "alignment.json").read_text())
        assert record["positions"] == "fixed"
        matched = np.array(record["videos"][0]["matched_frame"])
        errors[method] = float(np.abs(warp[matched] - np.arange(len(matched))).mean())
    # The straight diagonal (what spread positions give) misses the warp by 18.1 frames.
    n = len(matched)
    diagonal = np.round(np.arange(n) * (len(warp) - 1) / max(n - 1, 1)).astype(int)
    diagonal_error = float(np.abs(warp[diagonal] - np.arange(n)).mean())
    print(f"align, demo checkpoint, carphone + time-warped copy: mean frame error "
          f"dtw {errors['dtw']:.2f}, nn {errors['nn']:.2f}, diagonal {diagonal_error:.2f}")
    # Trainings of the demo differ in how well DTW follows the warp: 11.6, 3.11 and 1.48 for
    # seeds 0, 1 and 2 of the current code (nearest neighbour 25.3, 15.0, 24.6), 1.94 to 4.79
    # with earlier versions. The claim checked is that DTW follows the warp: better than the
    # diagonal by a third of its error, and better than matching each frame on its own.
    assert errors["dtw"] <= diagonal_error * 2 / 3, (errors, diagonal_error)
    assert errors["dtw"] < errors["nn"], errors


@pytest.mark.integration
def test_demo_ends_with_where_the_run_is_and_what_to_run_next(demo):
    tmp, out = demo.tmp, demo.fit.stdout
    lines = out.rstrip("\n").splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("fit finished: "))
    summary = lines[start:]
    assert len(summary) == 10, "\n".join(summary)  # nothing printed after it
    rows = {line.split()[0]: line.split()[1] for line in summary[1:6]}
    assert set(rows) == {"checkpoint", "last", "metrics", "table", "pictures"}
    for name, path in rows.items():
        assert (tmp / path).exists(), (name, path)
        assert not Path(path).is_absolute(), path  # inside the working folder: relative
    assert any((tmp / rows["pictures"]).rglob("*.png"))
    assert summary[6] == "next:"
    validate, align, results = summary[7:]
    assert "validate --config" in validate and f"--ckpt_path {rows['checkpoint']}" in validate
    assert f"align --ckpt {rows['checkpoint']} " in align
    videos = shlex.split(align)[shlex.split(align).index("--ckpt") + 2:][:2]
    assert all(Path(v).suffix == ".mp4" and (tmp / v).is_file() for v in videos), videos
    assert results.endswith("results runs/demo --plot runs/demo/plots")
    run_printed(tmp, results)
    assert any((tmp / "runs" / "demo" / "plots").glob("*.png"))
    checked = run_printed(tmp, validate + " --print_config")
    assert "ckpt_path" in checked.stdout


def run_printed(tmp: Path, line: str) -> subprocess.CompletedProcess:
    """A printed next command, run as printed (with this interpreter) in the fit's folder."""
    words = shlex.split(line)
    assert words[words.index("-m") + 1] == "mvf_lightning", line
    return run_cli(words[words.index("-m") + 2 :], tmp, timeout=600)


# What a newcomer cannot act on, by the text that gives it away.
WARNINGS = {
    "litlogger tip": "litlogger",
    "pytree deprecation": "LeafSpec",
    "timm unexpected keys": "Unexpected keys",  # the packaged backbone loads exactly
}


@pytest.mark.integration
@pytest.mark.parametrize("warning", sorted(WARNINGS))
def test_demo_output_holds_no_warning_a_newcomer_cannot_act_on(demo, warning):
    text = demo.fit.stdout + demo.fit.stderr
    assert WARNINGS[warning] not in text
