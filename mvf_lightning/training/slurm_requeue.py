"""Slurm's requeue signal acted on where every rank is at the same point of training.

Lightning (2.6) saves its HPC checkpoint and requeues the job inside the SIGUSR1 handler
itself. A handler runs wherever the main thread happens to be: one rank may be waiting in a
DDP collective (the gradient all-reduce) while another writes the checkpoint and waits in its
barrier, and the job hangs until Slurm kills it (Lightning issue #21406; reproduced here with
DataLoader workers on two ranks). :class:`RequeueAtStepBoundary` lets the handler only record
the signal; after every training batch and at the end of every training epoch (after its
validation and checkpoints), the ranks agree (one all-reduce of a flag) whether any of them
got it, and then all run Lightning's own requeue handler together (HPC checkpoint,
``scontrol requeue``).
"""

from __future__ import annotations

import signal
from typing import Any

from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info

from .lightning_private import cluster_environment, run_slurm_requeue

__all__ = ["RequeueAtStepBoundary"]


class RequeueAtStepBoundary(Callback):
    """Defers Lightning's Slurm requeue (``SLURMEnvironment(auto_requeue=True)``) from the
    signal handler to the next training batch end or training epoch end. Inactive outside
    Slurm or with auto-requeue off.

    A signal during a validation lets that validation finish, be logged and checkpointed; the
    HPC checkpoint is the end of that epoch, so the resumed job does not evaluate it again.
    In the final epoch's end the fit is finishing anyway: it is left to finish, not requeued.
    Registered before Lightning sets its handlers, so Lightning leaves the requeue signal to
    this one (it never replaces a handler that is already set). Costs one all-reduce of a
    flag per training step under Slurm with several ranks.
    """

    def __init__(self) -> None:
        self._signum: int | None = None
        self._previous: Any = None
        self._received = False

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        environment = cluster_environment(trainer)
        if stage != "fit" or not isinstance(environment, SLURMEnvironment):
            return
        if not environment.auto_requeue or environment.requeue_signal is None:  # None: Windows
            return
        self._signum = environment.requeue_signal
        self._previous = signal.getsignal(self._signum)
        self._received = False
        signal.signal(self._signum, self._record)

    def _record(self, signum: int, frame: Any) -> None:
        self._received = True

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        self._requeue_if_signalled(trainer)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._requeue_if_signalled(trainer)

    def _requeue_if_signalled(self, trainer: Any) -> None:
        if self._signum is None:
            return
        if not trainer.strategy.reduce_boolean_decision(self._received, all=False):
            return
        self._received = False
        if trainer.fit_loop.done:
            rank_zero_info("requeue signal in the final epoch's end: the fit finishes, no requeue")
            return
        run_slurm_requeue(trainer, self._signum)
        from .faults import record_status  # faults imports this module

        record_status(trainer, "requeued", exit_code=None,
                      reason="requeued by Slurm; the run continues in the job's next attempt")

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self._signum is None:
            return
        previous = self._previous if self._previous is not None else signal.SIG_DFL
        signal.signal(self._signum, previous)
        self._signum = None
