"""A user's second ``uv run`` prints only the command's own output: no package reinstalled.

decord 0.6.0's wheel is tagged ``py3-none`` in its name but ``cp36m`` inside, so uv reinstalled
it on every call ("Uninstalled 1 package / Installed 1 package"); the project depends on
``eva-decord`` (the same ``decord`` module, consistent tags) instead.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.cli_helpers import ROOT

pytestmark = pytest.mark.faults


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed")
def test_second_uv_run_installs_nothing():
    def uv_run() -> subprocess.CompletedProcess:
        return subprocess.run(
            ["uv", "run", "--frozen", "python", "-c", "pass"],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )

    first = uv_run()
    assert first.returncode == 0, first.stderr
    second = uv_run()
    assert second.returncode == 0, second.stderr
    output = second.stdout + second.stderr
    assert "install" not in output.lower(), output
    assert output.strip() == "", output


def test_decord_module_comes_from_a_consistently_tagged_wheel():
    """The installed distribution that provides ``decord`` says the same tags inside as in its
    file name (a ``cp36m`` tag inside is what made uv reinstall it)."""
    import importlib.metadata

    dists = importlib.metadata.packages_distributions().get("decord", [])
    assert dists, "no installed distribution provides the decord module"
    for name in dists:
        wheel = importlib.metadata.distribution(name).read_text("WHEEL") or ""
        tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines()
                if line.startswith("Tag:")]
        assert tags and all(not t.startswith("cp36") for t in tags), (name, tags)
