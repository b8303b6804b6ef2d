"""Every sweep in experiments/sweeps/ driven through W&B's open-source sweep engine: each
generated run's command, rendered as `wandb agent` renders it, parses, carries the swept
values into the resolved config and the model, and one runs a tiny fit into the agent's run."""

from __future__ import annotations

import contextlib
import io
import subprocess

import pytest
import yaml

from mvf_lightning.tracking.results import read_wandb_run
from mvf_lightning.tracking.sweep import run_name
from tests.cli_helpers import ROOT, read_metrics, tiny_override
from tests.experiments.helpers import (
    SWEEPS,
    generate_runs,
    python_env,
    render_agent_command,
    sweeps_python,
    wandb_tiny_override,
)

pytestmark = pytest.mark.sweeps
AGENT_PREFIX = ["/usr/bin/env", "python", "-m", "mvf_lightning"]
GRID_SIZES = {"penn_lstp_tokens_blocks.yaml": 6, "penn_final_reduction.yaml": 4}


@pytest.fixture(scope="module")
def generated() -> dict[str, list[dict]]:
    return generate_runs(sweeps_python(), SWEEPS, runs=4)


def _sweep(name: str) -> dict:
    return yaml.safe_load((ROOT / "experiments" / "sweeps" / name).read_text())


def _lookup(config: dict, dotted: str):
    """A dotted key's value; like jsonargparse, ``a.b`` also finds ``a.init_args.b`` (a
    class given by class_path, e.g. a pluggable loss)."""
    for part in dotted.split("."):
        if part not in config and "init_args" in config:
            config = config["init_args"]
        config = config[part]
    return config


def _print_config(monkeypatch, argv: list[str]) -> dict:
    """``python -m mvf_lightning ARGV --print_config`` in this process, from the repo root."""
    from mvf_lightning.cli.commands import main

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as info:
        main([*argv, "--print_config"])
    assert info.value.code in (0, None), f"{argv} failed to parse"
    return yaml.safe_load(out.getvalue())


def test_there_is_a_sweep_per_study():
    names = {p.name for p in SWEEPS}
    assert {"penn_lstp_tokens_blocks.yaml", "penn_final_reduction.yaml",
            "penn_lr_temperature_variance.yaml"} <= names
    for path in SWEEPS:
        sweep = yaml.safe_load(path.read_text())
        assert sweep["metric"]["name"].startswith("val/") and "/mean/" in sweep["metric"]["name"]
        assert sweep["method"] in ("grid", "random", "bayes")


def test_the_engine_generates_every_grid_point_and_search_runs(generated):
    assert set(generated) == {p.name for p in SWEEPS}
    for name, runs in generated.items():
        expected = GRID_SIZES.get(name, 4)
        assert len(runs) == expected, name
        assert len({str(r) for r in runs}) == expected, f"{name}: repeated runs"


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_agent_commands_parse_with_the_swept_values(monkeypatch, generated, path):
    sweep = _sweep(path.name)
    metric_dataset = sweep["metric"]["name"].split("/")[1]
    for params in generated[path.name]:
        argv = render_agent_command(sweep, params)
        assert argv[:4] == AGENT_PREFIX, argv
        assert argv[4] == "fit"
        for key, spec in params.items():  # exactly the agent's form, e.g. "--x=[3, 7, 11]"
            assert f"--{key}={spec['value']}" in argv
        printed = _print_config(monkeypatch, argv[4:])
        for key, spec in params.items():
            assert _lookup(printed, key) == spec["value"], (key, argv)
        # the sweep's metric is the one the evaluation callback logs for this data
        callbacks = [c["class_path"] for c in printed["trainer"]["callbacks"]]
        assert "mvf_lightning.evaluation.callback.AlignmentEvaluation" in callbacks
        data = printed["data"]["class_path"].rsplit(".", 1)[-1].lower()
        assert data.startswith(metric_dataset), (data, metric_dataset)


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_swept_values_reach_the_model(monkeypatch, generated, path):
    from mvf_lightning.cli.config_files import expand_config_args
    from mvf_lightning.cli.lightning_cli import MVFLightningCLI

    params = generated[path.name][-1]
    argv = render_agent_command(_sweep(path.name), params)
    monkeypatch.chdir(ROOT)
    cli = MVFLightningCLI(args=expand_config_args(argv[5:]), run=False, model_only=True)
    module = cli.model
    for key, spec in params.items():
        assert _lookup(module.hparams, key.removeprefix("model.")) == spec["value"], key
    embedder, backbone = module.model.embedder, module.model.backbone
    for key, spec in params.items():
        if key == "model.embedder.num_tokens":
            assert embedder.num_tokens == spec["value"]
        if key == "model.backbone.blocks":
            assert backbone.blocks == spec["value"]
            assert backbone.out_channels == 768 * len(spec["value"])
        if key == "model.embedder.reduction":
            assert embedder.reduce.mode == spec["value"]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("logger", ["csv", "wandb"])
def test_agent_command_runs_a_tiny_fit_into_the_agents_run(generated, tmp_path, logger):
    """The agent's environment (run id, sweep id, parameter file) and command: the fit logs
    offline into the agent's run id, named after the swept values, with the full config and
    the metric the sweep optimises, whether the config logs to W&B itself or only to CSV
    (the demo's logger: a W&B logger is added for the sweep, the CSV one stays)."""
    from wandb.sdk.lib import config_util

    name = "demo_lr_temperature.yaml"
    sweep = _sweep(name)
    params = generated[name][0]
    argv = render_agent_command(sweep, params)
    demo = argv.index("configs/demo.yaml")
    argv[demo] = str(ROOT / "configs" / "demo.yaml")
    if logger == "wandb":
        override = wandb_tiny_override(tmp_path, tmp_path / "demo")
        save_dir, project = tmp_path / "runs", "sweeps"
    else:
        override = tiny_override(tmp_path, tmp_path / "demo", tmp_path / "ckpt", tmp_path / "csv")
        save_dir, project = tmp_path / "root", "demo-project"  # default_root_dir, WANDB_PROJECT
    argv[demo + 1 : demo + 1] = ["--config", str(override)]
    param_file = tmp_path / "wandb" / "sweep-sw1" / "config-agentrun1.yaml"
    param_file.parent.mkdir(parents=True)
    config_util.save_config_file_from_dict(str(param_file), params)  # what the agent writes
    env = python_env({"WANDB_RUN_ID": "agentrun1", "WANDB_SWEEP_ID": "sw1",
                      "WANDB_SWEEP_PARAM_PATH": str(param_file), "WANDB_MODE": "offline",
                      "WANDB_PROJECT": "demo-project"})
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]

    folders = list((save_dir / "wandb").glob("offline-run-*"))
    assert [f.name.rsplit("-", 1)[-1] for f in folders] == ["agentrun1"]
    run = read_wandb_run(folders[0])
    values = {k: v["value"] for k, v in params.items()}
    assert run["id"] == "agentrun1" and run["sweep_id"] == "sw1" and run["exit_code"] == 0
    assert run["name"] == run_name(values)
    assert "lr=" in run["name"] and "temperature=" in run["name"]
    resolved = run["config"]["cli"]  # the whole resolved config, from RunConfigSaver
    for key, value in values.items():
        assert _lookup(resolved, key) == value
        assert run["config"][key] == value  # the agent's parameters, as W&B records them
    assert resolved["trainer"]["max_epochs"] == 1
    metric = sweep["metric"]["name"]
    assert isinstance(run["summary"][metric], float)  # what the sweep optimises, in its run
    saved = yaml.safe_load((save_dir / project / "agentrun1" / "config.yaml").read_text())
    assert _lookup(saved, "model.optimizer.lr") == values["model.optimizer.lr"]
    if logger == "wandb":
        assert (save_dir / project / "agentrun1" / "checkpoints" / "last.ckpt").is_file()
    else:
        assert "logging to W&B as well" in proc.stderr
        csv_metrics = read_metrics(tmp_path / "csv" / "fit")
        assert csv_metrics[metric][-1][1] == pytest.approx(run["summary"][metric])
