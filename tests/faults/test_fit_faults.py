"""Fits that stop early, resume, or start wrong: nothing lost, exit codes that tell the truth.

Subprocess runs of ``python -m mvf_lightning fit`` on the demo config shrunk to 2 epochs x 3
steps (see :func:`tests.faults.helpers.resume_config`).
"""

from __future__ import annotations

import socket
import time
from types import SimpleNamespace

import pytest
import torch

from tests.cli_helpers import cli_env, run_cli
from tests.faults.helpers import resume_config, step_losses

pytestmark = [pytest.mark.faults, pytest.mark.integration]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: one fit of 6 steps, never interrupted."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    demo_root = tmp / "demo"
    run_cli(tmp, "fit", *resume_config(tmp, demo_root))
    losses = step_losses(tmp / "logs")
    assert sorted(losses) == [1, 2, 3, 4, 5, 6], losses
    return SimpleNamespace(tmp=tmp, demo_root=demo_root, losses=losses)


def _resumed(tmp_path, reference, ckpt) -> dict[int, float]:
    run_cli(tmp_path, "fit", *resume_config(tmp_path, reference.demo_root), "--ckpt_path", ckpt)
    return step_losses(tmp_path / "logs")


def test_resume_from_end_of_epoch_repeats_the_run(tmp_path, uninterrupted):
    ckpt = uninterrupted.tmp / "ckpt" / "epochs" / "epoch=0-step=3.ckpt"
    losses = _resumed(tmp_path, uninterrupted, str(ckpt))
    assert sorted(losses) == [4, 5, 6]
    for step in (4, 5, 6):
        assert losses[step] == pytest.approx(uninterrupted.losses[step], rel=1e-5, abs=1e-6)


def test_resume_from_mid_epoch_skips_what_was_seen_and_repeats_the_run(tmp_path, uninterrupted):
    ckpt = uninterrupted.tmp / "ckpt" / "steps" / "epoch=1-step=4.ckpt"  # 1 of 3 batches done
    losses = _resumed(tmp_path, uninterrupted, str(ckpt))
    assert sorted(losses) == [5, 6]
    for step in (5, 6):
        assert losses[step] == pytest.approx(uninterrupted.losses[step], rel=1e-5, abs=1e-6)


def test_sigterm_saves_a_checkpoint_exits_143_and_resumes_exactly(tmp_path, uninterrupted):
    args = resume_config(tmp_path, uninterrupted.demo_root, sigterm_at=4)
    proc = run_cli(tmp_path, "fit", *args, expect=143)
    ckpt = tmp_path / "ckpt" / "steps" / "interrupted.ckpt"
    assert ckpt.is_file()
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert (state["epoch"], state["global_step"]) == (1, 4)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("stopped by SIGTERM at epoch 1, step 4; checkpoint saved to ")
    assert f"--ckpt_path {ckpt}" in last
    before = step_losses(tmp_path / "logs")
    assert sorted(before) == [1, 2, 3, 4]
    # resume with the command it printed
    resume = last.split("resume with: ", 1)[1].split()
    assert resume[:3] == ["python", "-m", "mvf_lightning"]
    run_cli(tmp_path, *[a for a in resume[3:] if "SigtermAtStep" not in a])
    after = step_losses(tmp_path / "logs")
    assert sorted(after) == [1, 2, 3, 4, 5, 6]
    for step in (5, 6):
        assert after[step] == pytest.approx(uninterrupted.losses[step], rel=1e-5, abs=1e-6)


def test_ckpt_path_refuses_a_model_override_it_would_drop(tmp_path, uninterrupted):
    ckpt = uninterrupted.tmp / "ckpt" / "epochs" / "epoch=0-step=3.ckpt"  # 2 tokens
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
    assert not list((tmp_path / "logs").glob("**/version_*"))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_wandb_key_without_a_reachable_server_logs_offline_quickly(tmp_path, uninterrupted):
    import subprocess
    import sys

    args = resume_config(tmp_path, uninterrupted.demo_root)
    env = cli_env(tmp_path)
    env.pop("WANDB_MODE", None)
    env.update(WANDB_API_KEY="x" * 40, WANDB_BASE_URL=f"http://127.0.0.1:{_closed_port()}")
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mvf_lightning", "fit", *args,
         "--trainer.logger=lightning.pytorch.loggers.WandbLogger",
         f"--trainer.logger.save_dir={tmp_path / 'runs'}", "--trainer.max_epochs=1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if "W&B server unreachable" in line]
    assert len(warnings) == 1 and "wandb sync" in warnings[0], proc.stderr[-2000:]
    assert list((tmp_path / "runs" / "wandb").glob("offline-run-*"))
    assert time.monotonic() - start < 300


def test_kill_term_from_outside_with_workers_saves_and_exits_143(tmp_path, uninterrupted):
    """``kill -TERM`` to the fit's whole process group (as Slurm does), DataLoader workers on."""
    import os
    import signal
    import subprocess
    import sys

    args = resume_config(tmp_path, uninterrupted.demo_root) + [
        "--data.init_args.num_workers=2", "--trainer.max_epochs=50",
        "--trainer.limit_train_batches=10",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mvf_lightning", "fit", *args], cwd=tmp_path,
        env=cli_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 400
    while not list((tmp_path / "ckpt" / "steps").glob("*step=2.ckpt")):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("no checkpoint after 400 s")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the fit did not stop within 300 s of SIGTERM")
    assert proc.returncode == 143, err[-3000:]
    ckpt = tmp_path / "ckpt" / "steps" / "interrupted.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["global_step"] >= 2
    last = err.strip().splitlines()[-1]
    where = f"stopped by SIGTERM at epoch {state['epoch']}, step {state['global_step']};"
    assert last.startswith(where) and f"--ckpt_path {ckpt}" in last, last
