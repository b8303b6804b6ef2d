"""What a fit prints last (where its files are, what to run next), and ``--help``.

The tests here build the lines from stub trainers and files made here; what the real demo
prints at its end, and that the printed commands run, is checked on the demo's own fit in
``tests/test_demo.py``."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

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
@pytest.mark.integration
def test_fit_help_is_lightnings(tmp_path):
    proc = run_cli(tmp_path, "fit", "--help", timeout=300)
    assert "--trainer.max_epochs" in proc.stdout and "--config" in proc.stdout
    assert "fit finished" not in proc.stdout
