"""``python -m mvf_lightning results``: one row per run from real tiny fits (CSV logger and
W&B offline) and from hand-made folders of failed, running, stopped and evaluated runs."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import pytest
import yaml

from mvf_lightning.tracking.results import collect_runs, main, read_wandb_run
from tests.cli_helpers import ROOT, read_metrics, run_cli, tiny_override
from tests.experiments.helpers import wandb_record as _record
from tests.experiments.helpers import wandb_tiny_override, write_wandb_log

MEAN_TAU = "val/demo/mean/kendalls_tau"


def _results(capsys, *args: str) -> tuple[str, list[dict]]:
    """Run the command in-process; the Markdown it prints and its table's data rows."""
    assert main(list(args)) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))
            for line in lines[2:]]
    return out, rows


# ----------------------------------------------------------------------- real tiny runs
@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Two tiny demo fits into one runs folder: CSV logger (lr 1e-3) and W&B offline (lr 2e-3,
    with a CSV logger outside the folder as an independent record of its metrics)."""
    tmp = tmp_path_factory.mktemp("results")
    demo, runs = tmp / "demo", tmp / "runs"
    demo_config = str(ROOT / "configs" / "demo.yaml")
    csv_override = tiny_override(tmp, demo, tmp / "ckpt_csv", runs / "csv")
    run_cli(tmp, "fit", "--config", demo_config, "--config", str(csv_override),
            "--model.optimizer.lr=0.001")
    override = wandb_tiny_override(tmp, demo, project="res")
    config = yaml.safe_load(override.read_text())
    side = {"class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": str(tmp / "side"), "name": "fit"}}
    config["trainer"]["logger"] = [config["trainer"]["logger"], side]
    override.write_text(yaml.safe_dump(config))
    run_cli(tmp, "fit", "--config", demo_config, "--config", str(override),
            "--model.optimizer.lr=0.002")
    return tmp


@pytest.mark.integration
def test_finished_tiny_runs_give_one_row_each_with_their_final_metrics(finished, capsys):
    tmp = finished
    out_json = tmp / "table.json"
    markdown, rows = _results(capsys, str(tmp / "runs"), "--out", str(out_json))
    assert len(rows) == 2, markdown
    table = {row["run"]: row for row in json.loads(out_json.read_text())}
    csv_row = table["csv/fit/version_0"]
    wandb_dir = next((tmp / "runs" / "wandb").glob("offline-run-*"))
    run_id = read_wandb_run(wandb_dir)["id"]
    wandb_row = table[run_id]

    assert csv_row["status"] == wandb_row["status"] == "finished"
    assert csv_row["epochs"] == wandb_row["epochs"] == "1/1"
    assert csv_row["differs"] == "lr=0.001" and wandb_row["differs"] == "lr=0.002"
    logs = ((csv_row, tmp / "runs" / "csv" / "fit"), (wandb_row, tmp / "side" / "fit"))
    for row, log_dir in logs:
        logged = read_metrics(log_dir)
        for key in (MEAN_TAU, "val/demo/mean/phase_progression", "train/loss"):
            assert row[key] == pytest.approx(logged[key][-1][1], rel=1e-6), key
    by_name = {row["run"]: row for row in rows}
    assert by_name[run_id]["demo kendalls_tau"] == f"{wandb_row[MEAN_TAU]:.4f}"

    out_csv = tmp / "table.csv"
    main([str(tmp / "runs"), "--out", str(out_csv)])
    with open(out_csv, newline="") as f:
        read_back = {r["run"]: r for r in csv.DictReader(f)}
    assert float(read_back[run_id][MEAN_TAU]) == pytest.approx(wandb_row[MEAN_TAU])
    with pytest.raises(FileExistsError, match="--overwrite"):
        main([str(tmp / "runs"), "--out", str(out_csv)])


@pytest.mark.integration
def test_results_is_a_command_of_the_cli(finished):
    proc = run_cli(finished, "results", str(finished / "runs"))
    assert proc.stdout.count("| finished |") == 2


# ----------------------------------------------------------------------- hand-made runs
def _config(lr: float, max_epochs: int = 5) -> dict:
    return {"trainer": {"max_epochs": max_epochs, "logger": {"init_args": {"save_dir": "x"}}},
            "model": {"optimizer": {"lr": lr}, "embedder": {"num_tokens": 3}}}


def _csv_run(folder: Path, lr: float, epochs: int, age_s: float = 0) -> None:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(_config(lr), sort_keys=False))
    with open(folder / "metrics.csv", "w") as f:
        f.write("epoch,step,train/loss\n")
        for epoch in range(epochs):
            f.write(f"{epoch},{epoch * 2 + 1},{1.5 - 0.1 * epoch}\n")
    then = time.time() - age_s
    os.utime(folder / "metrics.csv", (then, then))


@pytest.fixture
def hand_made(tmp_path):
    runs = tmp_path / "runs"
    # a W&B run that crashed in its 3rd epoch, with a config record spanning several blocks
    folder = runs / "wandb" / "offline-run-20260101_000000-bad1"
    folder.mkdir(parents=True)
    write_wandb_log(folder / "run-bad1.wandb", [
        _record(run_id="bad1", name="crashed"),
        _record(config={"cli": _config(0.01), "padding": "x" * 80_000}),
        _record(summary={"val/penn/a/kendalls_tau": 0.5, "val/penn/b/kendalls_tau": 0.7,
                         "epoch": 2, "train/loss": 1.25}),
        _record(exit_code=1),
    ])
    _csv_run(runs / "live" / "version_0", lr=0.02, epochs=2)
    _csv_run(runs / "killed" / "version_0", lr=0.03, epochs=1, age_s=86400)
    # evaluation JSONs written by the evaluation callback: the newest one counts
    evaluated = runs / "evaluated"
    (evaluated / "evaluation").mkdir(parents=True)
    config = yaml.safe_dump(_config(0.04, max_epochs=10), sort_keys=False)
    (evaluated / "config.yaml").write_text(config)
    for epoch, tau in ((4, 0.1), (9, 0.9)):
        (evaluated / "evaluation" / f"val_epoch{epoch:04d}.json").write_text(json.dumps({
            "stage": "val", "epoch": epoch, "global_step": 10 * epoch, "dataset": "penn",
            "sets": {"a": {"kendalls_tau": tau}, "b": {"kendalls_tau": tau - 0.1}},
            "mean": {"kendalls_tau": tau - 0.05}, "broken_videos": [],
        }))
    return runs


def test_evaluation_jsons_of_a_wandb_save_dir_are_no_run(hand_made, capsys):
    """JSONs in a folder that also holds W&B runs mix several runs: not one row."""
    mixed = hand_made / "wandb_save_dir"
    (mixed / "wandb").mkdir(parents=True)
    (mixed / "evaluation").mkdir()
    (mixed / "evaluation" / "val_epoch0000.json").write_text(json.dumps(
        {"stage": "val", "epoch": 0, "dataset": "penn", "sets": {}, "mean": {}}))
    assert "wandb_save_dir" not in {run.name for run in collect_runs([hand_made])}
    assert "belongs to no single run" in capsys.readouterr().err


def test_failed_running_and_stopped_runs_are_marked_not_dropped(hand_made, capsys):
    markdown, rows = _results(capsys, str(hand_made))
    by_name = {row["run"]: row for row in rows}
    assert set(by_name) == {"crashed", "live/version_0", "killed/version_0", "evaluated"}
    assert by_name["crashed"]["status"] == "failed (exit 1)"
    assert by_name["crashed"]["epochs"] == "3/5"
    assert by_name["live/version_0"]["status"] == "running"
    assert by_name["live/version_0"]["epochs"] == "2/5"
    assert by_name["killed/version_0"]["status"] == "stopped"
    assert by_name["evaluated"]["status"] == "finished"
    assert by_name["evaluated"]["epochs"] == "10/10"
    assert by_name["crashed"]["differs"] == "max_epochs=5 lr=0.01"
    assert by_name["evaluated"]["differs"] == "max_epochs=10 lr=0.04"


def test_means_over_actions_and_the_newest_evaluation(hand_made):
    from mvf_lightning.tracking.results import add_set_means

    runs = {run.name: run for run in collect_runs([hand_made])}
    crashed = runs["crashed"]
    add_set_means(crashed)  # only per-action values were logged: their mean
    assert crashed.metrics["val/penn/mean/kendalls_tau"] == pytest.approx(0.6)
    assert crashed.metrics["train/loss"] == 1.25
    evaluated = runs["evaluated"]
    assert evaluated.metrics["val/penn/a/kendalls_tau"] == 0.9
    assert evaluated.metrics["val/penn/mean/kendalls_tau"] == pytest.approx(0.85)


def test_differences_against_a_base_config(hand_made, tmp_path, capsys):
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(_config(0.02), sort_keys=False))
    _, rows = _results(capsys, str(hand_made), "--base", str(base))
    by_name = {row["run"]: row for row in rows}
    assert by_name["live/version_0"]["differs"] == "-"
    assert by_name["killed/version_0"]["differs"] == "lr=0.03"
    assert by_name["evaluated"]["differs"] == "max_epochs=10 lr=0.04"


def test_bad_folders_and_outputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        main([str(tmp_path / "missing")])
    with pytest.raises(ValueError, match=r"\.csv or \.json"):
        main([str(tmp_path), "--out", str(tmp_path / "table.txt")])


# ----------------------------------------------------------------------- what runs record
def _status(folder: Path, status: str, **fields) -> None:
    from mvf_lightning.tracking.run_status import write_status

    write_status(folder, status, **fields)


def test_status_comes_from_what_the_run_recorded(hand_made, capsys):
    """A run stopped by SIGTERM inside its last validation reached max_epochs but is not
    finished; a run whose process is gone is not running, however fresh its files."""
    import subprocess

    _csv_run(hand_made / "sigterm" / "version_0", lr=0.05, epochs=5)  # epochs == max_epochs
    _status(hand_made / "sigterm" / "version_0", "stopped", exit_code=143, reason="SIGTERM")
    _csv_run(hand_made / "error" / "version_0", lr=0.06, epochs=2)
    _status(hand_made / "error" / "version_0", "failed", exit_code=1, reason="ValueError: x")
    _csv_run(hand_made / "gone" / "version_0", lr=0.07, epochs=2)  # written just now
    ended = subprocess.Popen(["true"])  # a process that has ended (and was reaped)
    ended.wait()
    _status(hand_made / "gone" / "version_0", "running")
    record = json.loads((hand_made / "gone" / "version_0" / "status.json").read_text())
    record["pid"] = ended.pid
    (hand_made / "gone" / "version_0" / "status.json").write_text(json.dumps(record))
    _csv_run(hand_made / "requeued" / "version_0", lr=0.08, epochs=1)
    _status(hand_made / "requeued" / "version_0", "requeued", exit_code=143)
    _csv_run(hand_made / "done" / "version_0", lr=0.09, epochs=3)  # stopped early by design
    _status(hand_made / "done" / "version_0", "finished", exit_code=0)
    # `validate --trainer.logger=false` into a fresh folder: an evaluation, not a fit
    (hand_made / "validated" / "evaluation").mkdir(parents=True)
    (hand_made / "validated" / "evaluation" / "val_epoch0000.json").write_text(json.dumps({
        "stage": "val", "epoch": 0, "dataset": "penn", "command": "validate",
        "sets": {"a": {"kendalls_tau": 0.5}}, "mean": {"kendalls_tau": 0.5}}))
    _, rows = _results(capsys, str(hand_made))
    status = {row["run"]: row["status"] for row in rows}
    assert status["sigterm/version_0"] == "stopped (SIGTERM, exit 143)"
    assert status["error/version_0"] == "failed (exit 1)"
    assert status["gone/version_0"] == "stopped (its process is gone)"
    assert status["requeued/version_0"] == "requeued"
    assert status["done/version_0"] == "finished"
    assert status["live/version_0"] == "running"  # no status.json: from its files, as before
    assert status["validated"] == "evaluated"
    assert status["evaluated"] == "finished"  # JSONs of a fit (no command field): as before


def test_one_unreadable_run_never_costs_the_table(hand_made, capsys):
    binary = hand_made / "binary" / "version_0"
    binary.mkdir(parents=True)
    (binary / "metrics.csv").write_bytes(b"\x00\x8f\xff" * 100)
    text = hand_made / "text" / "version_0"
    text.mkdir(parents=True)
    (text / "metrics.csv").write_text("epoch,step,train/loss\n0,1,1.5\n0,3,abc\n1,5,1.2\n")
    torn = hand_made / "torn" / "version_0"
    _csv_run(torn, lr=0.1, epochs=2)
    with open(torn / "metrics.csv", "a") as f:
        f.write("2,5")  # cut short by a kill while being written
    _, rows = _results(capsys, str(hand_made))
    status = {row["run"]: row["status"] for row in rows}
    assert status["binary/version_0"].startswith("unreadable (")
    assert str(binary / "metrics.csv") in status["binary/version_0"]
    assert status["text/version_0"] == (
        f"unreadable ({text / 'metrics.csv'} line 3: train/loss='abc' is not a number)"
    )
    by_name = {row["run"]: row for row in rows}
    assert by_name["torn/version_0"]["epochs"] == "2/5"  # the torn row is left out
    assert {"crashed", "live/version_0", "killed/version_0", "evaluated"} <= set(status)


@pytest.mark.integration
def test_a_wandb_run_that_failed_at_setup_is_failed(tmp_path, capsys):
    """The fit ends before training (a setting refused in a callback's setup): its W&B run
    folder exists, and results lists it as failed, not finished."""
    demo_config = str(ROOT / "configs" / "demo.yaml")
    override = wandb_tiny_override(tmp_path, tmp_path / "demo", project="res")
    proc = run_cli(tmp_path, "fit", "--config", demo_config, "--config", str(override),
                   "--trainer.limit_val_batches=2", expect=1)
    assert "trainer.limit_val_batches=2" in proc.stderr.strip().splitlines()[-1]
    _, rows = _results(capsys, str(tmp_path / "runs"))
    assert [row["status"] for row in rows] == ["failed (exit 1)"]
