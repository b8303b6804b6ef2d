"""Shared by the experiment tests: the sweep YAMLs, the W&B agent's command rendering, tiny
fits logged to W&B offline, and a writer of hand-made W&B run logs."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.cli_helpers import ROOT, tiny_override

SWEEPS = sorted((ROOT / "experiments" / "sweeps").glob("*.yaml"))
HERE = Path(__file__).resolve().parent


def sweeps_python() -> str:
    """The python of the sweep-engine environment, created (cached) on first use; skips the
    test, saying why, only when it cannot be created."""
    if shutil.which("uv") is None:
        pytest.skip("the sweeps environment needs uv (pip install uv) to be created")
    proc = subprocess.run(
        ["bash", str(HERE / "make_sweeps_env.sh")], capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        pytest.skip(f"could not create the sweeps environment: {proc.stderr.strip()[-800:]}")
    return proc.stdout.strip().splitlines()[-1]


def generate_runs(python: str, paths: list[Path], runs: int = 4) -> dict[str, list[dict]]:
    """``{sweep file name: [run parameters {key: {"value": v}}]}`` from the sweep engine."""
    proc = subprocess.run(
        [python, str(HERE / "sweep_engine.py"), *map(str, paths), "--runs", str(runs)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"sweep engine failed:\n{proc.stderr[-4000:]}"
    return {Path(p).name: runs for p, runs in json.loads(proc.stdout).items()}


def render_agent_command(sweep: dict, params: dict) -> list[str]:
    """The argv ``wandb agent`` starts for one run of ``sweep`` (as wandb_agent.Agent does):
    ``${env}`` -> /usr/bin/env, ``${interpreter}`` -> python, ``${program}``, and ``${args}``
    -> ``--key=str(value)`` built by W&B's own function."""
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    command = sweep_utils.create_sweep_command(list(sweep.get("command") or []) or None)
    sweep_vars = sweep_utils.create_sweep_command_args({"args": params})
    sweep_vars.update(
        interpreter=["python"], program=[sweep.get("program", "")], env=["/usr/bin/env"]
    )
    argv: list[str] = []
    for chunk in map(str, command):
        if chunk.startswith("${") and chunk.endswith("}"):
            argv += sweep_vars.get(chunk[2:-1]) or []
        else:
            argv.append(chunk)
    return argv


def wandb_tiny_override(tmp: Path, demo_root: Path, project: str = "sweeps") -> Path:
    """tests/cli_helpers.tiny_override logging to W&B (offline) under ``tmp/runs``."""
    path = tiny_override(tmp, demo_root, tmp / "unused", tmp / "unused_logs")
    config = yaml.safe_load(path.read_text())
    config["trainer"]["logger"] = {
        "class_path": "lightning.pytorch.loggers.WandbLogger",
        "init_args": {"save_dir": str(tmp / "runs"), "project": project, "offline": True},
    }
    config["trainer"]["callbacks"][1]["init_args"].pop("dirpath")  # beside the W&B run
    out = tmp / "tiny_wandb.yaml"
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def python_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a CLI subprocess, with this interpreter first as ``python``."""
    from tests.cli_helpers import cli_env

    env = cli_env(Path("."))
    env.pop("MVF_LIGHTNING_DEMO_ROOT", None)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


def write_wandb_log(path: Path, records: list[bytes]) -> None:
    """A ``.wandb`` file in W&B's LevelDB log format (7-byte header, 32 KiB blocks)."""
    block, out = 32768, bytearray(b":W&B" + struct.pack("<HB", 0xBEE1, 0))
    for data in records:
        first = True
        while True:
            left = block - len(out) % block
            if left < 7:
                out += b"\0" * left
                continue
            piece, data = data[: left - 7], data[left - 7 :]
            last = not data
            kind = 1 if first and last else 2 if first else 4 if last else 3
            out += struct.pack("<IHB", 0, len(piece), kind) + piece
            first = False
            if last:
                break
    path.write_bytes(bytes(out))


def wandb_record(**fields) -> bytes:
    """One serialised W&B record for :func:`write_wandb_log`: a run (``run_id``, ``name``), a
    config update, a history row, a summary update or an exit code, from the keyword given."""
    from wandb.proto import wandb_internal_pb2 as pb

    record = pb.Record()
    if "run_id" in fields:
        record.run.run_id = fields["run_id"]
        record.run.display_name = fields.get("name", "")
    for key, value in fields.get("config", {}).items():
        record.config.update.add(key=key, value_json=json.dumps(value))
    for key, value in fields.get("history", {}).items():
        item = record.history.item.add()
        item.key = key
        item.value_json = json.dumps(value)
    for key, value in fields.get("summary", {}).items():
        item = record.summary.update.add()
        item.nested_key.append(key)
        item.value_json = json.dumps(value)
    if "exit_code" in fields:
        record.exit.exit_code = fields["exit_code"]
    return record.SerializeToString()
