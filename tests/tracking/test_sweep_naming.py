"""mvf_lightning.tracking.sweep: which values a sweep run swept, and the run name showing them."""

from __future__ import annotations

from jsonargparse import Namespace

from mvf_lightning.tracking.sweep import name_sweep_run, run_name, swept_values

WANDB = "lightning.pytorch.loggers.WandbLogger"


def _agent_param_file(tmp_path, params: dict):
    from wandb.sdk.lib import config_util

    path = tmp_path / "config-run1.yaml"
    config_util.save_config_file_from_dict(str(path), params)  # as `wandb agent` writes it
    return path


def test_swept_values_come_from_the_agents_parameter_file(tmp_path):
    path = _agent_param_file(tmp_path, {
        "model.backbone.blocks": {"value": [3, 7, 11]},
        "model.optimizer.lr": {"value": 5.4941947893598324e-05},
        "_wandb": {"value": {"cli_version": "0.31.0"}},
    })
    env = {"WANDB_SWEEP_PARAM_PATH": str(path)}
    values = swept_values(["--model.embedder.num_tokens=9"], env)
    assert values == {"model.backbone.blocks": [3, 7, 11],
                      "model.optimizer.lr": 5.4941947893598324e-05}


def test_swept_values_fall_back_to_the_command_line_overrides():
    argv = ["--config", "configs/penn.yaml", "--model.backbone.blocks=[3, 7, 11]",
            "--model.embedder.reduction=avg", "--model.optimizer.lr=0.001", "--print_config"]
    assert swept_values(argv, {}) == {
        "model.backbone.blocks": [3, 7, 11],
        "model.embedder.reduction": "avg",
        "model.optimizer.lr": 0.001,
    }


def test_run_name_shows_each_value_under_its_shortest_unique_key():
    assert run_name({"model.embedder.num_tokens": 5, "model.backbone.blocks": [3, 7, 11]}) == (
        "num_tokens=5 blocks=[3,7,11]"
    )
    assert run_name({"model.loss.name": "scl", "model.backbone.name": "vit",
                     "model.optimizer.lr": 5.4941947893598324e-05}) == (
        "loss.name=scl backbone.name=vit lr=5.49e-05"
    )


def _config(*loggers) -> Namespace:
    logger = list(loggers) if len(loggers) > 1 else loggers[0]
    return Namespace(trainer=Namespace(logger=logger))


def _logger(class_path: str, name: str | None = None) -> Namespace:
    return Namespace(class_path=class_path, init_args=Namespace(name=name, project="p"))


def test_only_a_sweep_run_gets_a_name_and_a_given_name_is_kept(tmp_path):
    argv = ["--config", "x.yaml", "--model.embedder.num_tokens=5"]
    config = _config(_logger(WANDB))
    name_sweep_run(config, argv, {})
    assert config.trainer.logger.init_args.name is None  # not started by an agent

    sweep_env = {"WANDB_SWEEP_ID": "abc"}
    csv = _logger("lightning.pytorch.loggers.CSVLogger")
    named = _logger(WANDB, "mine")
    config = _config(_logger(WANDB), csv, named)
    name_sweep_run(config, argv, sweep_env)
    assert config.trainer.logger[0].init_args.name == "num_tokens=5"
    assert csv.init_args.name is None
    assert named.init_args.name == "mine"


def test_the_parameter_file_names_the_run_under_the_agent(tmp_path):
    path = _agent_param_file(tmp_path, {"model.embedder.reduction": {"value": "max"}})
    config = _config(_logger(WANDB))
    name_sweep_run(config, ["--model.embedder.reduction=max"],
                   {"WANDB_SWEEP_ID": "abc", "WANDB_SWEEP_PARAM_PATH": str(path)})
    assert config.trainer.logger.init_args.name == "reduction=max"
