"""DataLoader workers leave SIGTERM to the main process, except when the main process itself
stops them: a worker that ignored its parent's SIGTERM held that process in Python's exit
(``join`` of its workers) forever, after an error or a SIGTERM inside a validation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from mvf_lightning.data.datasets import worker_leaves_signals_to_main

pytestmark = [pytest.mark.faults,
              pytest.mark.skipif(not hasattr(signal, "sigwaitinfo"), reason="needs sigwaitinfo")]


class _Pids(Dataset):
    def __len__(self) -> int:
        return 1000

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor(os.getpid())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie has ended: it only waits to be reaped
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_worker_ignores_sigterm_from_others_and_obeys_its_parent():
    loader = DataLoader(_Pids(), batch_size=1, num_workers=1, prefetch_factor=1,
                        worker_init_fn=worker_leaves_signals_to_main,
                        multiprocessing_context="fork")
    iterator = iter(loader)
    worker = int(next(iterator))
    try:
        # Slurm, or `kill` of the whole process group: another process sends it.
        subprocess.run(["kill", "-TERM", str(worker)], check=True)
        time.sleep(0.5)
        assert _alive(worker), "a worker died on a SIGTERM meant for the main process"
        assert int(next(iterator)) == worker  # and still serves batches
        os.kill(worker, signal.SIGTERM)  # its parent: torch's shutdown, Python's exit
        assert _wait_gone(worker, 5.0), "the worker ignored its parent's SIGTERM"
    finally:
        del iterator
    # The main process keeps its own SIGTERM handling.
    assert signal.getsignal(signal.SIGTERM) is not worker_leaves_signals_to_main


def test_the_requeue_signal_is_ignored_by_workers():
    class _Handlers(Dataset):
        def __len__(self) -> int:
            return 1

        def __getitem__(self, index: int) -> torch.Tensor:
            return torch.tensor(signal.getsignal(signal.SIGUSR1) == signal.SIG_IGN)

    previous = signal.signal(signal.SIGUSR1, lambda *a: None)  # as Lightning's handler would be
    try:
        loader = DataLoader(_Handlers(), num_workers=1,
                            worker_init_fn=worker_leaves_signals_to_main,
                            multiprocessing_context="fork")
        assert next(iter(loader)).tolist() == [True]
        assert signal.getsignal(signal.SIGUSR1) != signal.SIG_IGN  # the main process keeps its own
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_a_process_that_exits_with_workers_waiting_for_work_ends_at_once(tmp_path):
    """What a fit that failed (or was stopped) outside its training loop left behind: an
    iterator whose workers wait for indices. Python's exit terminates them and waits."""
    script = tmp_path / "leave_workers.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(os.getcwd())!r})
        import torch
        from torch.utils.data import DataLoader
        from mvf_lightning.data.datasets import worker_leaves_signals_to_main
        loader = DataLoader(list(range(100)), batch_size=1, num_workers=2,
                            worker_init_fn=worker_leaves_signals_to_main)
        KEEP = iter(loader)
        next(KEEP)
        sys.exit(3)
    """))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert time.monotonic() - start < 60
