"""How a fit ended, written into each of its log folders as ``status.json`` (Lightning-free:
the format; :class:`mvf_lightning.training.faults.RunStatus` writes it during a fit).

``results`` reads it instead of guessing from the metrics: a run stopped by SIGTERM (exit
143), stopped inside a validation, requeued by Slurm, failed with an error, or killed without
warning (its status stays ``running`` and its process is gone) is never listed as finished.

The folders are the loggers' own: a CSV or TensorBoard logger's ``log_dir``
(``<save_dir>/<name>/version_<n>``) and a W&B run's ``<save_dir>/<project>/<run id>`` (where
the resolved ``config.yaml`` goes too). Global rank 0 writes; writes are atomic.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from ..utils.atomic import atomic_path

__all__ = ["STATES", "STATUS_FILE", "read_status", "write_status"]

STATUS_FILE = "status.json"
STATES = ("running", "finished", "failed", "stopped", "requeued")
"""running: the fit is (or was, when its process is gone) training; finished: it returned
normally (exit 0); failed: an error ended it (exit 1); stopped: SIGTERM or Ctrl-C ended it with
a resumable checkpoint (exit 143 / 1); requeued: Slurm requeued the job, which continues the
run in a new attempt."""


def read_status(folder: Path) -> dict[str, Any] | None:
    """``status.json`` of a run folder, or None (absent or unreadable)."""
    try:
        data = json.loads((Path(folder) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("status") in STATES else None


def write_status(folder: Path, status: str, **fields: Any) -> dict[str, Any]:
    """Update ``<folder>/status.json`` to ``status`` with ``fields`` (the first write also
    records when the run started); returns the record written."""
    if status not in STATES:
        raise ValueError(f"unknown run status {status!r}; expected one of {STATES}")
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    record = read_status(folder) or {"started": now}
    record.update(status=status, updated=now, host=socket.gethostname(), pid=os.getpid(),
                  **fields)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / STATUS_FILE, suffix=".json") as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    return record
