"""What a fit prints last (where its files are, what to run next), and ``--help``.

The fast tests build the lines from stub trainers and files made here; the integration test
runs the demo (its real packaged EfficientNet-Lite0 backbone, shrunk to one epoch of two
steps) as a subprocess and reads what a newcomer sees."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from mvf_lightning.cli.commands import COMMANDS
from mvf_lightning.cli.run_summary import RunFiles, print_fit_summary, run_files, summary_lines
from mvf_lightning.data.index import VideoIndex, VideoRecord
from tests.cli_helpers import ROOT, cli_env, run_cli

PREFIX = "python -m mvf_lightning"
MONITOR = "val/demo/mean/kendalls_tau"


# ---------------------------------------------------------------------------- stubs
def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")
    return path


def _trainer(tmp: Path, **overrides) -> SimpleNamespace:
    """A finished fit's trainer as the summary reads it: one ModelCheckpoint, one CSVLogger
    folder with a metrics table per validation and media, a DataModule with an index."""
    log_dir = tmp / "runs" / "demo" / "lightning_logs" / "version_0"
    best = _touch(log_dir / "checkpoints" / "epoch=11-step=72.ckpt")
    last = _touch(log_dir / "checkpoints" / "last.ckpt")
    _touch(log_dir / "metrics.csv")
    for epoch in (3, 7, 11):  # not zero-padded: epoch11 sorts before epoch3 as text
        _touch(log_dir / f"metrics_table_val_epoch{epoch}.csv")
    _touch(log_dir / "media" / "val_epoch0011" / "similarity.png")
    data = tmp / "data"
    videos = [VideoRecord(id=f"val_{i}", path=f"videos/val_{i}.mp4", num_frames=10)
              for i in range(3)]
    for video in videos:
        _touch(data / video.path)
    VideoIndex("demo", "val", videos).save(data / "index" / "val.json", overwrite=True)
    trainer = SimpleNamespace(
        is_global_zero=True,
        state=SimpleNamespace(finished=True),
        checkpoint_callbacks=[SimpleNamespace(best_model_path=str(best), monitor=MONITOR,
                                              last_model_path=str(last), best_model_score=0.93)],
        loggers=[SimpleNamespace(log_dir=str(log_dir), save_dir=str(tmp / "runs" / "demo"))],
        default_root_dir=str(tmp / "runs" / "demo"),
        # the DataModule as data.contract.EvaluationIndexes
        datamodule=SimpleNamespace(eval_indexes=lambda: {"val": VideoIndex.load(
            data / "index" / "val.json", root=data)}),
    )
    for key, value in overrides.items():
        setattr(trainer, key, value)
    return trainer


# ---------------------------------------------------------------------------- fast
def test_summary_names_real_paths_and_the_next_commands(tmp_path):
    files = run_files(_trainer(tmp_path))
    args = ["--config", "configs/demo.yaml", "--run_name", "x", "--ckpt_path=old.ckpt",
            "--trainer.max_epochs=3"]
    lines = summary_lines(files, args, cwd=tmp_path, prefix=PREFIX)
    log = "runs/demo/lightning_logs/version_0"
    ckpt = f"{log}/checkpoints/epoch=11-step=72.ckpt"
    assert lines == [
        f"fit finished: {log}",
        f"  checkpoint  {ckpt} (best {MONITOR} = 0.9300)",
        f"  last        {log}/checkpoints/last.ckpt",
        f"  metrics     {log}/metrics.csv",
        f"  table       {log}/metrics_table_val_epoch11.csv",
        f"  pictures    {log}/media/",
        "next:",
        f"  {PREFIX} validate --config configs/demo.yaml --trainer.max_epochs=3 --ckpt_path {ckpt}",
        f"  {PREFIX} align --ckpt {ckpt} data/videos/val_0.mp4 data/videos/val_1.mp4 "
        f"--out {log}/aligned",
        f"  {PREFIX} results runs/demo --plot runs/demo/plots",
    ]


def test_paths_outside_the_working_folder_are_absolute_and_quoted(tmp_path):
    files = run_files(_trainer(tmp_path / "with space"))
    lines = summary_lines(files, [], cwd=tmp_path / "elsewhere", prefix=PREFIX)
    ckpt = tmp_path / "with space" / "runs/demo/lightning_logs/version_0/checkpoints"
    assert lines[1].startswith(f"  checkpoint  {ckpt}/epoch=11-step=72.ckpt")
    assert f"validate --ckpt_path '{ckpt}/epoch=11-step=72.ckpt'" in lines[-3]
    for word in shlex.split(lines[-2])[4:]:  # --ckpt CKPT VIDEO VIDEO --out DIR
        assert word.startswith("-") or Path(word).is_absolute()


def test_placeholders_only_where_no_path_is_known(tmp_path):
    lines = summary_lines(RunFiles(), ["--config", "c.yaml"], cwd=tmp_path, prefix=PREFIX)
    assert lines[0] == "fit finished"
    assert "none saved" in lines[1]
    assert lines[-3:] == [
        f"  {PREFIX} validate --config c.yaml --ckpt_path CHECKPOINT",
        f"  {PREFIX} align --ckpt CHECKPOINT QUERY.mp4 OTHER.mp4 --out aligned",
        f"  {PREFIX} results RUNS_DIR --plot PLOTS_DIR",
    ]


def test_without_a_monitor_the_one_checkpoint_is_named_once(tmp_path):
    trainer = _trainer(tmp_path)
    callback = trainer.checkpoint_callbacks[0]
    callback.monitor, callback.best_model_path = None, callback.last_model_path
    lines = summary_lines(run_files(trainer), [], cwd=tmp_path, prefix=PREFIX)
    assert lines[1] == "  checkpoint  runs/demo/lightning_logs/version_0/checkpoints/last.ckpt"
    assert not any(line.startswith("  last ") for line in lines)


def test_a_named_run_is_collected_from_its_runs_dir(tmp_path):
    files = run_files(_trainer(tmp_path), run_dir=tmp_path / "many_runs" / "penn1")
    lines = summary_lines(files, [], cwd=tmp_path, prefix=PREFIX)
    assert lines[-1] == f"  {PREFIX} results many_runs --plot many_runs/plots"


def test_a_wandb_offline_run_is_named_with_its_sync_command(tmp_path):
    class WandbLogger:  # what the summary recognises W&B's logger by: its class name
        save_dir, version, name = str(tmp_path / "runs"), "abc123", "proj"

    folder = tmp_path / "runs" / "wandb" / "offline-run-20260101_000000-abc123"
    _touch(folder / "files" / "media" / "images" / "x.png")
    trainer = _trainer(tmp_path, loggers=[WandbLogger()])
    lines = summary_lines(run_files(trainer), [], cwd=tmp_path, prefix=PREFIX)
    rel = "runs/wandb/offline-run-20260101_000000-abc123"
    assert lines[0] == f"fit finished: {rel}"
    assert f"  W&B run     {rel} (upload: wandb sync {rel})" in lines
    assert f"  pictures    {rel}/files/media/" in lines


def test_only_global_rank_zero_prints_and_only_a_finished_fit(tmp_path, capsys):
    print_fit_summary(_trainer(tmp_path, is_global_zero=False), [])
    print_fit_summary(_trainer(tmp_path, state=SimpleNamespace(finished=False)), [])
    assert capsys.readouterr().out == ""
    print_fit_summary(_trainer(tmp_path), [])
    assert "fit finished" in capsys.readouterr().out


def _help_in_a_fresh_process() -> tuple[str, list[str]]:
    """``python -m mvf_lightning --help``'s output and the heavy modules it imported."""
    code = (
        "import runpy, sys\n"
        "sys.argv = ['mvf_lightning', '--help']\n"
        "try:\n"
        "    runpy.run_module('mvf_lightning', run_name='__main__', alter_sys=True)\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "heavy = ('torch', 'lightning', 'wandb', 'timm', 'numpy', 'matplotlib', 'jsonargparse')\n"
        "print('IMPORTED', *sorted(m for m in heavy if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=cli_env(ROOT),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out, _, imported = proc.stdout.rpartition("IMPORTED")
    return out, imported.split()


def test_help_lists_every_command_on_one_line_without_importing_torch():
    out, imported = _help_in_a_fresh_process()
    assert imported == []
    assert set(COMMANDS) == {"fit", "validate", "test", "predict", "summary", "prepare",
                             "evaluate", "results", "align"}
    lines = out.splitlines()
    for command in COMMANDS:
        (line,) = [ln for ln in lines if ln.split()[:1] == [command]]
        assert len(line.split()) > 2, line  # the command and what it does
    assert "fit --config configs/demo.yaml" in out


# ---------------------------------------------------------------------------- integration
WARNINGS = {
    "litlogger tip": "litlogger",
    "pytree deprecation": "LeafSpec",
}


@pytest.fixture(scope="module")
def demo_fit(tmp_path_factory):
    """The demo, as a newcomer runs it from a clone, shrunk to one epoch of two steps with its
    validation, pictures and checkpoints (real backbone, real data generation)."""
    tmp = tmp_path_factory.mktemp("demo_summary")
    override = tmp / "short.yaml"
    override.write_text(yaml.safe_dump({
        "trainer": {
            "max_epochs": 1, "limit_train_batches": 2, "check_val_every_n_epoch": 1,
            "num_sanity_val_steps": 0,
            "callbacks": [
                {"class_path": "mvf_lightning.evaluation.callback.AlignmentEvaluation"},
                {"class_path": "mvf_lightning.evaluation.media_callback.EvaluationMedia",
                 "init_args": {"every_n_epochs": 1}},
                {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                 "init_args": {"monitor": MONITOR, "mode": "max", "save_last": True}},
            ],
        },
    }))
    args = ["--config", str(ROOT / "configs" / "demo.yaml"), "--config", str(override)]
    proc = run_cli(tmp, "fit", *args, timeout=900)
    return SimpleNamespace(tmp=tmp, proc=proc, args=args)


def _run_printed(tmp: Path, line: str) -> subprocess.CompletedProcess:
    """A printed next command, run as printed (with this interpreter) in the fit's folder."""
    words = shlex.split(line)
    assert words[words.index("-m") + 1] == "mvf_lightning", line
    return run_cli(tmp, *words[words.index("-m") + 2 :], timeout=600)


@pytest.mark.integration
def test_demo_ends_with_where_the_run_is_and_what_to_run_next(demo_fit):
    tmp, out = demo_fit.tmp, demo_fit.proc.stdout
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
    _run_printed(tmp, results)
    assert any((tmp / "runs" / "demo" / "plots").glob("*.png"))
    checked = _run_printed(tmp, validate + " --print_config")
    assert "ckpt_path" in checked.stdout


@pytest.mark.integration
@pytest.mark.parametrize("warning", sorted(WARNINGS))
def test_demo_output_holds_no_warning_a_newcomer_cannot_act_on(demo_fit, warning):
    text = demo_fit.proc.stdout + demo_fit.proc.stderr
    assert WARNINGS[warning] not in text


@pytest.mark.integration
def test_demo_loads_its_packaged_backbone_without_unexpected_keys(demo_fit):
    text = demo_fit.proc.stdout + demo_fit.proc.stderr
    assert "Unexpected keys" not in text


@pytest.mark.integration
def test_fit_help_is_lightnings(tmp_path):
    proc = run_cli(tmp_path, "fit", "--help", timeout=300)
    assert "--trainer.max_epochs" in proc.stdout and "--config" in proc.stdout
    assert "fit finished" not in proc.stdout
