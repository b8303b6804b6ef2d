"""``results RUNS_DIR --plot DIR``: one PNG per metric over the epochs (a line per run) and a
bar chart of the final values, from CSV logs, W&B offline folders and evaluation JSONs, the
runs labelled with the settings that differ between them; and pictures that stay readable
(legends beside the data, tick labels apart) for a dozen runs with long labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from mvf_lightning.tracking.results import collect_runs, main, mark_differences, plot_labels
from mvf_lightning.visualization import run_plots
from mvf_lightning.visualization.run_plots import (
    FINAL_VALUES_FILE,
    RunCurves,
    curves_figure,
    final_values_figure,
    metric_file_name,
)
from tests.experiments.helpers import wandb_record as _record
from tests.experiments.helpers import write_wandb_log

TAU = "val/demo/mean/kendalls_tau"


def _close(curve, expected) -> bool:
    return len(curve) == len(expected) and all(
        x == ex and y == pytest.approx(ey) for (x, y), (ex, ey) in zip(curve, expected))
AP = "val/demo/mean/retrieval_ap@5"


def _config(lr: float, tokens: int) -> dict:
    return {"trainer": {"max_epochs": 4, "default_root_dir": "somewhere"},
            "model": {"optimizer": {"lr": lr}, "embedder": {"num_tokens": tokens},
                      "loss": {"class_path": "mvf_lightning.losses.SCL"}}}


def _csv_run(folder: Path, lr: float, tokens: int, shift: float) -> None:
    """Four epochs, two training losses logged per epoch, validation after epochs 2 and 4
    (0-based 1 and 3), as Lightning's CSVLogger writes them."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(_config(lr, tokens), sort_keys=False))
    lines = [f"epoch,step,train/loss,{TAU},{AP}"]
    for epoch in range(4):
        for k in range(2):
            lines.append(f"{epoch},{2 * epoch + k},{2.0 - 0.2 * epoch - 0.1 * k + shift},,")
        if epoch % 2 == 1:
            lines.append(f"{epoch},{2 * epoch + 1},,{0.5 + 0.1 * epoch + shift},{0.3 + shift}")
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    """Two CSV runs (lr 1e-3 and 2e-3, 3 tokens), a W&B offline run (lr 1e-3, 5 tokens) that
    logged per-set values only, and a folder of evaluation JSONs (lr 1e-3, 3 tokens, TCC)."""
    runs = tmp_path / "runs"
    _csv_run(runs / "a" / "version_0", lr=0.001, tokens=3, shift=0.0)
    _csv_run(runs / "b" / "version_0", lr=0.002, tokens=3, shift=0.05)
    folder = runs / "wandb" / "offline-run-20260101_000000-wb1"
    folder.mkdir(parents=True)
    history = [
        {"train/loss": 1.9, "epoch": 0, "trainer/global_step": 1},
        {"train/loss": 1.7, "epoch": 0, "trainer/global_step": 2},
        {"val/demo/x/kendalls_tau": 0.6, "val/demo/y/kendalls_tau": 0.8, "epoch": 1},
        {"train/loss": 1.5, "epoch": 2, "trainer/global_step": 5},
        {"val/demo/x/kendalls_tau": 0.7, "val/demo/y/kendalls_tau": 0.9, "epoch": 3},
    ]
    write_wandb_log(folder / "run-wb1.wandb", [
        _record(run_id="wb1", name="wandb-run"),
        _record(config={"cli": _config(0.001, 5)}),
        *(_record(history=row) for row in history),
        _record(exit_code=0),
    ])
    evaluated = runs / "evaluated"
    (evaluated / "evaluation").mkdir(parents=True)
    config = _config(0.001, 3)
    config["model"]["loss"]["class_path"] = "mvf_lightning.losses.TCC"
    (evaluated / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for epoch, tau in ((1, 0.4), (3, 0.75)):
        (evaluated / "evaluation" / f"val_epoch{epoch:04d}.json").write_text(json.dumps({
            "stage": "val", "epoch": epoch, "dataset": "demo",
            "sets": {"demo": {"kendalls_tau": tau}}, "mean": {"kendalls_tau": tau},
        }))
    return runs


def _check_png(path: Path, min_size: tuple[int, int] = (600, 300)) -> np.ndarray:
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= min_size[0] and image.height >= min_size[1], image.size
        assert image.width <= 4000 and image.height <= 4000, image.size
        pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # drawn, not blank
    return pixels


def test_plot_writes_one_png_per_metric_and_the_bar_chart(runs_dir, tmp_path, capsys):
    out = tmp_path / "plots"
    assert main([str(runs_dir), "--plot", str(out)]) == 0
    expected = {metric_file_name(m) for m in ("train/loss", TAU, AP)} | {FINAL_VALUES_FILE}
    assert {p.name for p in out.iterdir()} == expected
    for path in out.iterdir():
        _check_png(path)
    assert f"the final values of 4 runs: {out}/" in capsys.readouterr().err


def test_plot_curves_are_per_epoch_and_labelled_with_the_differing_settings(
    runs_dir, tmp_path, monkeypatch
):
    seen = {}
    real = run_plots.plot_runs

    def spy(runs, metrics, out_dir, legend_title="run"):
        seen.update(runs={r.label: r for r in runs}, metrics=list(metrics), title=legend_title)
        return real(runs, metrics, out_dir, legend_title)

    monkeypatch.setattr(run_plots, "plot_runs", spy)
    assert main([str(runs_dir), "--plot", str(tmp_path / "plots")]) == 0
    assert seen["metrics"] == ["train/loss", TAU, AP]  # the table's columns, in its order
    assert seen["title"] == "run (settings that differ)"
    runs = seen["runs"]
    assert set(runs) == {"lr=0.001 num_tokens=3 loss=SCL", "lr=0.002 num_tokens=3 loss=SCL",
                         "lr=0.001 num_tokens=5 loss=SCL", "lr=0.001 num_tokens=3 loss=TCC"}
    csv_a = runs["lr=0.001 num_tokens=3 loss=SCL"]
    # training loss: the mean of the epoch's two logged values, x = epochs trained
    assert _close(csv_a.curves["train/loss"], [(1, 1.95), (2, 1.75), (3, 1.55), (4, 1.35)])
    assert _close(csv_a.curves[TAU], [(2, 0.6), (4, 0.8)])
    assert csv_a.final == pytest.approx({"train/loss": 1.3, TAU: 0.8, AP: 0.3})
    assert "train/loss" in csv_a.averaged and TAU not in csv_a.averaged
    wandb = runs["lr=0.001 num_tokens=5 loss=SCL"]
    assert _close(wandb.curves["train/loss"], [(1, 1.8), (3, 1.5)])
    assert _close(wandb.curves[TAU], [(2, 0.7), (4, 0.8)])  # mean of the two sets
    assert wandb.curves[AP] == []
    evaluated = runs["lr=0.001 num_tokens=3 loss=TCC"]
    assert _close(evaluated.curves[TAU], [(2, 0.4), (4, 0.75)])


def test_all_metrics_draws_per_set_values_too(runs_dir, tmp_path):
    out = tmp_path / "plots"
    assert main([str(runs_dir), "--plot", str(out), "--all-metrics"]) == 0
    names = {p.name for p in out.iterdir()}
    assert metric_file_name("val/demo/x/kendalls_tau") in names
    assert metric_file_name("val/demo/demo/kendalls_tau") in names


def test_labels_fall_back_to_names_and_stay_apart(tmp_path):
    runs = tmp_path / "runs"
    _csv_run(runs / "a" / "version_0", lr=0.001, tokens=3, shift=0.0)
    _csv_run(runs / "b" / "version_0", lr=0.001, tokens=3, shift=0.1)
    found = collect_runs([runs])
    mark_differences(found)
    assert plot_labels(found) == ["a/version_0", "b/version_0"]
    found[0].differs = found[1].differs = "lr=0.1"
    assert plot_labels(found) == ["a/version_0: lr=0.1", "b/version_0: lr=0.1"]


def test_no_metrics_no_pictures(tmp_path, capsys):
    (tmp_path / "runs" / "empty").mkdir(parents=True)
    assert main([str(tmp_path / "runs"), "--plot", str(tmp_path / "plots")]) == 0
    assert "no metrics to draw" in capsys.readouterr().err


# ----------------------------------------------------------------------- readable pictures
def _many_runs(n: int = 12) -> list[RunCurves]:
    out = []
    for i in range(n):
        label = (f"blocks=[{i},{i + 4},11] num_tokens={3 + i % 3} loss={'TCC' if i % 2 else 'SCL'}"
                 f" lr={0.0001 * (i + 1):.4g}")
        curve = [(e, 1.0 - 0.05 * e + 0.01 * i) for e in range(1, 13)]
        out.append(RunCurves(label=label, curves={"train/loss": curve, TAU: curve[3::4]},
                             final={"train/loss": curve[-1][1], TAU: curve[-1][1]}))
    return out


def _boxes(fig, artists):
    renderer = fig.canvas.get_renderer()
    return [a.get_window_extent(renderer) for a in artists]


def test_legend_sits_beside_the_data_and_fits_in_the_picture():
    runs = _many_runs()
    fig = curves_figure(runs, "train/loss", legend_title="run")
    fig.canvas.draw()
    (ax,) = fig.axes
    (legend,) = fig.legends
    (legend_box, ax_box) = _boxes(fig, [legend, ax])
    assert not legend_box.overlaps(ax_box)
    assert legend_box.y0 >= 0 and legend_box.y1 <= fig.bbox.height  # no run cut off
    assert legend_box.x1 <= fig.bbox.width
    texts = [t.get_text() for t in legend.get_texts()]
    assert all("blocks=" in t and "lr=" in t for t in texts) and len(texts) == len(runs)


def test_tick_labels_never_overlap():
    runs = _many_runs()
    for fig in (curves_figure(runs, "train/loss"), final_values_figure(runs, ["train/loss", TAU])):
        fig.canvas.draw()
        for ax in fig.axes:
            for axis in (ax.xaxis, ax.yaxis):
                labels = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
                boxes = _boxes(fig, labels)
                for i, a in enumerate(boxes):
                    for b in boxes[i + 1:]:
                        assert not a.overlaps(b), [t.get_text() for t in labels]
    bars = final_values_figure(runs, ["train/loss", TAU])
    bars.canvas.draw()
    names = [t.get_text() for t in bars.axes[0].get_yticklabels()]
    assert [n.replace("\n", " ") for n in names] == [r.label for r in runs]


def test_an_unreadable_older_evaluation_is_left_out_of_the_plot_not_the_table(runs_dir):
    (runs_dir / "evaluated" / "evaluation" / "val_epoch0000.json").write_text("{cut short")
    (run,) = [r for r in collect_runs([runs_dir]) if r.name == "evaluated"]
    assert not run.status.startswith("unreadable")
    assert _close(run.series(TAU), [(2, 0.4), (4, 0.75)])


def test_an_evaluation_before_any_training_step_sits_at_zero_epochs(runs_dir):
    """``validate`` of the untrained model writes epoch 0 at global step 0: nothing trained."""
    (runs_dir / "evaluated" / "evaluation" / "val_epoch0000.json").write_text(json.dumps({
        "stage": "val", "epoch": 0, "global_step": 0, "dataset": "demo",
        "sets": {"demo": {"kendalls_tau": 0.2}}, "mean": {"kendalls_tau": 0.2}}))
    (run,) = [r for r in collect_runs([runs_dir]) if r.name == "evaluated"]
    assert _close(run.series(TAU), [(0, 0.2), (2, 0.4), (4, 0.75)])
