"""A real one-machine Slurm cluster (two simulated nodes) for the `slurm` tests, started once
per session with tests/slurm/cluster.sh and stopped afterwards; the tiny demo dataset."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.slurm.jobs import CLUSTER_SCRIPT, NUM_TRAIN, NUM_VAL

CANNOT_INSTALL = 3  # cluster.sh: Slurm missing and not installable (no root / no apt-get)


@pytest.fixture(scope="session")
def slurm_conf(tmp_path_factory) -> Path:
    """Start the cluster; skip (with the reason) only where Slurm cannot be installed."""
    folder = tmp_path_factory.mktemp("slurm")
    start = subprocess.run([str(CLUSTER_SCRIPT), "start", str(folder)], capture_output=True,
                           text=True, timeout=300)
    if start.returncode == CANNOT_INSTALL:
        pytest.skip(start.stderr.strip().splitlines()[-1])
    assert start.returncode == 0, f"cluster.sh start failed:\n{start.stdout}\n{start.stderr}"
    yield folder / "slurm.conf"
    subprocess.run([str(CLUSTER_SCRIPT), "stop", str(folder)], capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    from mvf_lightning.data.demo import ensure_demo_dataset

    return ensure_demo_dataset(
        tmp_path_factory.mktemp("demo") / "demo", num_train=NUM_TRAIN, num_val=NUM_VAL
    )
