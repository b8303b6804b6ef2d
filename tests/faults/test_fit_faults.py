"""Fits that stop early, resume, or start wrong: nothing lost, exit codes that tell the truth.

Subprocess runs of ``python -m mvf_lightning fit`` on the demo config shrunk to 2 epochs x 4
steps with DataLoader workers and a validation after each epoch (see
:func:`tests.faults.helpers.resume_config`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import pytest
import torch

from tests.cli_helpers import cli_env, run_cli
from tests.faults.helpers import logged, resume_config, sigterm_at, step_losses

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: one fit of 8 steps and 2 validations, never interrupted."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    demo_root = tmp / "demo"
    run_cli(tmp, "fit", *resume_config(tmp, demo_root))
    values = logged(tmp / "logs")
    assert sorted(step_losses(tmp / "logs")) == list(range(1, 9)), values
    assert {("tau", 0), ("tau", 1)} <= set(values)
    return SimpleNamespace(tmp=tmp, demo_root=demo_root, logged=values)


def _same_as_uninterrupted(values: dict, reference, keys: list) -> None:
    assert sorted(values, key=str) == sorted(keys, key=str), values
    for key in keys:
        assert values[key] == pytest.approx(reference.logged[key], rel=1e-5, abs=1e-6), key


def _steps(first: int) -> list[int]:
    return list(range(first, 9))


@pytest.mark.parametrize(
    ("ckpt", "first_step", "validations"),
    [
        ("epochs/epoch=0-step=4.ckpt", 5, [1]),  # the epoch's end, after its validation
        ("steps/epoch=0-step=4.ckpt", 5, [0, 1]),  # the epoch's last batch: validation redone
        ("val/epoch=0-step=4-val.ckpt", 5, [1]),  # after the validation (a monitored best)
        ("steps/epoch=1-step=6.ckpt", 7, [1]),  # mid-epoch
    ],
)
def test_resume_from_any_checkpoint_repeats_the_uninterrupted_run(
    tmp_path, uninterrupted, ckpt, first_step, validations
):
    path = uninterrupted.tmp / "ckpt" / ckpt
    run_cli(tmp_path, "fit", *resume_config(tmp_path, uninterrupted.demo_root),
            "--ckpt_path", str(path))
    expected = _steps(first_step) + [("tau", e) for e in validations]
    _same_as_uninterrupted(logged(tmp_path / "logs"), uninterrupted, expected)
    # Resumed again from one of its own checkpoints: still the same run, nothing retrained.
    if ckpt == "steps/epoch=0-step=4.ckpt":
        again = tmp_path / "again"
        again.mkdir()
        run_cli(again, "fit", *resume_config(again, uninterrupted.demo_root),
                "--ckpt_path", str(tmp_path / "ckpt" / "steps" / "epoch=1-step=6.ckpt"))
        _same_as_uninterrupted(logged(again / "logs"), uninterrupted, _steps(7) + [("tau", 1)])
        final = torch.load(again / "ckpt" / "epochs" / "last.ckpt", weights_only=True)
        assert (final["epoch"], final["global_step"]) == (1, 8)


def test_resume_auto_after_a_kill_continues_from_the_last_batch_checkpoint(
    tmp_path, uninterrupted
):
    """``kill -9`` right after the epoch's last-batch checkpoint (before its validation):
    ``--resume auto`` continues from it, redoes the validation and repeats the run."""
    kill = {"class_path": "tests.faults.helpers.KillAtValidationStart"}
    args = [*resume_config(tmp_path, uninterrupted.demo_root, callback=kill), "--run_name", "r1"]
    run_cli(tmp_path, "fit", *args, expect=-signal.SIGKILL)
    newest = tmp_path / "ckpt" / "steps" / "epoch=0-step=4.ckpt"
    assert newest.is_file() and not (tmp_path / "ckpt" / "val").exists()
    args = [*resume_config(tmp_path, uninterrupted.demo_root), "--run_name", "r1",
            "--resume", "auto"]
    proc = run_cli(tmp_path, "fit", *args)
    assert f"Restoring states from the checkpoint path at {newest}" in proc.stderr + proc.stdout
    resumed = sorted((tmp_path / "runs" / "r1").glob("*/version_*"))[-1]
    _same_as_uninterrupted(logged(resumed), uninterrupted, _steps(5) + [("tau", 0), ("tau", 1)])


def test_sigterm_mid_epoch_saves_a_checkpoint_exits_143_and_resumes_exactly(
    tmp_path, uninterrupted
):
    args = resume_config(tmp_path, uninterrupted.demo_root, callback=sigterm_at(2))
    proc = run_cli(tmp_path, "fit", *args, expect=143)
    ckpt = tmp_path / "ckpt" / "steps" / "interrupted.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert (state["epoch"], state["global_step"]) == (0, 2)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("stopped by SIGTERM at epoch 0, step 2; checkpoint saved to ")
    assert f"--ckpt_path {ckpt}" in last
    assert sorted(step_losses(tmp_path / "logs")) == [1, 2]
    # resume with the command it printed
    resume = last.split("resume with: ", 1)[1].split()
    assert resume[:3] == ["python", "-m", "mvf_lightning"]
    shutil.rmtree(tmp_path / "logs")
    resume_config(tmp_path, uninterrupted.demo_root)  # the same config, without the signal
    run_cli(tmp_path, *resume[3:])
    keys = _steps(3) + [("tau", 0), ("tau", 1)]
    _same_as_uninterrupted(logged(tmp_path / "logs"), uninterrupted, keys)


def _start(tmp_path, args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mvf_lightning", "fit", *args], cwd=tmp_path,
        env=cli_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"still running {timeout:.0f} s later:\n{err[-3000:]}")


def _wait_for(path, proc: subprocess.Popen, timeout: float = 400) -> float:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"no {path.name} after {timeout:.0f} s")
        time.sleep(0.1)
    return time.monotonic()


def test_sigterm_inside_a_validation_with_workers_exits_143_and_continuing_redoes_it(
    tmp_path, uninterrupted
):
    """The main process saves at once; its DataLoader workers (training's and validation's)
    must not hold it in its exit. Continuing with the printed command redoes the validation
    from its first video: its table, its JSON and the checkpoint monitor are all there."""
    stop = {"class_path": "tests.faults.helpers.SigtermInValidation",
            "init_args": {"epoch": 0, "batch": 1}}
    proc = _start(tmp_path, resume_config(tmp_path, uninterrupted.demo_root, callback=stop))
    ckpt = tmp_path / "ckpt" / "steps" / "interrupted.ckpt"
    saved = _wait_for(ckpt, proc)
    _, err = _finish(proc, timeout=90)
    assert proc.returncode == 143, err[-3000:]
    assert time.monotonic() - saved < 90
    last = err.strip().splitlines()[-1]
    assert last.startswith("stopped by SIGTERM at epoch 0, step 4;"), last
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    progress = state["loops"]["fit_loop"]["epoch_loop.val_loop.batch_progress"]
    assert progress["current"]["completed"] >= 1 and not progress["is_last_batch"]

    resume = last.split("resume with: ", 1)[1].split()
    first = sorted((tmp_path / "logs" / "fit").glob("version_*"))
    resume_config(tmp_path, uninterrupted.demo_root)  # the same config, without the signal
    proc = run_cli(tmp_path, *resume[3:])
    assert "could not find the monitored key" not in proc.stderr
    assert "val metrics (demo) after epoch 2" in proc.stdout  # the table at the end
    (continued,) = set(sorted((tmp_path / "logs" / "fit").glob("version_*"))) - set(first)
    assert (continued / "evaluation" / "val_epoch0000.json").is_file()
    keys = _steps(5) + [("tau", 0), ("tau", 1)]
    _same_as_uninterrupted(logged(continued), uninterrupted, keys)
    assert list((tmp_path / "ckpt" / "val").glob("epoch=0-step=4-val.ckpt"))


def test_a_failure_with_workers_alive_ends_with_one_line_and_exit_1(tmp_path, uninterrupted):
    fail = {"class_path": "tests.faults.helpers.FailInValidation"}
    proc = _start(tmp_path, resume_config(tmp_path, uninterrupted.demo_root, callback=fail))
    _, err = _finish(proc, timeout=400)
    assert proc.returncode == 1, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: fit failed with RuntimeError: a failure inside the validation")


def test_ckpt_path_refuses_a_model_override_it_would_drop(tmp_path, uninterrupted):
    ckpt = uninterrupted.tmp / "ckpt" / "epochs" / "epoch=0-step=4.ckpt"  # 2 tokens
    args = resume_config(tmp_path, uninterrupted.demo_root)
    proc = run_cli(
        tmp_path, "fit", *args, "--model.embedder.num_tokens=6", "--ckpt_path", str(ckpt),
        expect=1,
    )
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-2000:]
    assert "model.embedder.num_tokens=6 (checkpoint: 2)" in lines[0]
    assert f"--model.init_from={ckpt}" in lines[0]
    assert not (tmp_path / "logs").exists()


def test_max_epochs_below_the_checkpoint_is_one_line_and_leaves_no_log_dir(
    tmp_path, uninterrupted
):
    ckpt = uninterrupted.tmp / "ckpt" / "epochs" / "last.ckpt"  # epoch 1 done
    args = resume_config(tmp_path, uninterrupted.demo_root)
    proc = run_cli(
        tmp_path, "fit", *args, "--trainer.max_epochs=1", "--ckpt_path", str(ckpt), expect=1
    )
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "trainer.max_epochs=1" in last and str(ckpt) in last
    assert "already trained 2 epoch(s)" in last
    assert not list((tmp_path / "logs").glob("**/version_*")), list((tmp_path / "logs").rglob("*"))


def test_fit_with_missing_data_leaves_no_empty_version_folder(tmp_path):
    args = resume_config(tmp_path, tmp_path / "demo")
    missing = tmp_path / "no_such_dataset"
    proc = run_cli(
        tmp_path, "fit", *args,
        "--data=mvf_lightning.data.VideoDataModule", f"--data.root={missing}",
        "--data.num_frames=6", "--data.crop_size=32", "--data.num_workers=0", expect=1,
    )
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(missing) in last, proc.stderr[-2000:]
    assert not last.endswith("`"), last
    assert not list((tmp_path / "logs").glob("**/version_*"))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _NotFound(BaseHTTPRequestHandler):
    """A server on 127.0.0.1 that answers every request with HTTP 404."""

    def _answer(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_HEAD = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("server", ["closed port", "HTTP 404"])
def test_wandb_key_without_a_working_server_logs_offline_quickly(
    tmp_path, uninterrupted, server
):
    if server == "HTTP 404":
        httpd = HTTPServer(("127.0.0.1", 0), _NotFound)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{httpd.server_port}"
    else:
        httpd, url = None, f"http://127.0.0.1:{_closed_port()}"
    args = resume_config(tmp_path, uninterrupted.demo_root)
    env = cli_env(tmp_path)
    env.pop("WANDB_MODE", None)
    env.update(WANDB_API_KEY="x" * 40, WANDB_BASE_URL=url)
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "mvf_lightning", "fit", *args,
             "--trainer.logger=lightning.pytorch.loggers.WandbLogger",
             f"--trainer.logger.save_dir={tmp_path / 'runs'}", "--trainer.max_epochs=1"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400,
        )
    finally:
        if httpd is not None:
            httpd.shutdown()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "W&B server unreachable" in line]
    assert len(warnings) == 1 and "wandb sync" in warnings[0], proc.stderr[-2000:]
    if server == "HTTP 404":
        assert "HTTP 404" in warnings[0]
    assert list((tmp_path / "runs" / "wandb").glob("offline-run-*"))
    assert time.monotonic() - start < 300


def test_kill_term_from_outside_with_workers_saves_and_exits_143(tmp_path, uninterrupted):
    """``kill -TERM`` to the fit's whole process group (as Slurm does), DataLoader workers on."""
    args = resume_config(tmp_path, uninterrupted.demo_root) + [
        "--trainer.max_epochs=50", "--trainer.limit_train_batches=10",
    ]
    proc = _start(tmp_path, args)
    _wait_for(tmp_path / "ckpt" / "steps" / "epoch=0-step=2.ckpt", proc)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = _finish(proc, timeout=90)
    assert proc.returncode == 143, err[-3000:]
    ckpt = tmp_path / "ckpt" / "steps" / "interrupted.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["global_step"] >= 2
    last = err.strip().splitlines()[-1]
    where = f"stopped by SIGTERM at epoch {state['epoch']}, step {state['global_step']};"
    assert last.startswith(where) and f"--ckpt_path {ckpt}" in last, last
