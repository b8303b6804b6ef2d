"""How the suite runs itself (tests/conftest.py): whole files per xdist worker, the longest
first, and for every process it starts one bytecode cache and OpenMP threads that do not spin
on the cores the other worker needs."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import (
    LONGEST_FIRST,
    cache_bytecode,
    longest_first_rank,
    work_unit,
    yield_idle_cores,
)


def test_a_file_is_one_unit_and_every_slurm_test_shares_one():
    path = "tests/faults/test_fit_faults.py"
    assert work_unit(f"{path}::test_x[a-b]") == path
    assert work_unit("tests/slurm/test_slurm_jobs.py::test_a") == "tests/slurm/"
    assert work_unit("tests/slurm/test_resume_after_kill.py::test_b") == "tests/slurm/"


def test_the_longest_files_come_first_in_their_listed_order():
    ids = [f"{p}x.py::t" if p.endswith("/") else f"{p}::t" for p in LONGEST_FIRST]
    ranks = [longest_first_rank(work_unit(nodeid)) for nodeid in ids]
    assert ranks == list(range(len(LONGEST_FIRST)))
    assert longest_first_rank("tests/data/test_augment.py") == len(LONGEST_FIRST)


def test_without_bytecode_writing_the_suites_processes_cache_it_in_one_folder(tmp_path):
    cache, source = tmp_path / "pycache", tmp_path / "src"
    source.mkdir()
    (source / "compiled_once.py").write_text("VALUE = 1\n")
    env = {"PYTHONDONTWRITEBYTECODE": "1", "PATH": "/usr/bin:/bin"}
    cache_bytecode(env, lambda: cache)
    assert env == {"PATH": "/usr/bin:/bin", "PYTHONPYCACHEPREFIX": str(cache)}
    subprocess.run([sys.executable, "-c", "import compiled_once"], cwd=source, env=env,
                   check=True, timeout=60)
    assert list(cache.rglob("compiled_once.*.pyc"))
    assert not list(source.rglob("*.pyc"))  # nothing beside the sources


def test_a_chosen_prefix_or_bytecode_writing_is_left_as_it_is(tmp_path):
    chosen = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": "/elsewhere"}
    cache_bytecode(chosen, lambda: tmp_path)
    assert chosen == {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": "/elsewhere"}
    writing = {"PATH": "/usr/bin"}
    cache_bytecode(writing, lambda: tmp_path)
    assert writing == {"PATH": "/usr/bin"}


def test_openmp_threads_wait_passively_unless_a_policy_was_chosen():
    env: dict[str, str] = {}
    yield_idle_cores(env)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    chosen = {"OMP_WAIT_POLICY": "ACTIVE"}
    yield_idle_cores(chosen)
    assert chosen == {"OMP_WAIT_POLICY": "ACTIVE"}
