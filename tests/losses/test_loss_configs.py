"""Choosing a loss from configs and the command line; the paper configs' training recipe;
a demo fit with TCC learns."""

from __future__ import annotations

import collections

import pytest
import torch
import yaml

from tests.cli_helpers import ROOT, learning_override, read_metrics, run_cli

CONFIGS = ROOT / "configs"


def run_main(monkeypatch, tmp_path, args: list[str]) -> int | None:
    from mvf_lightning.cli.commands import main

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MVF_LIGHTNING_DEMO_ROOT", str(tmp_path / "demo_root"))
    monkeypatch.chdir(tmp_path)
    try:
        return main(args)
    except SystemExit as exit_:
        return exit_.code


def printed_config(monkeypatch, tmp_path, capsys, *args: str) -> dict:
    code = run_main(monkeypatch, tmp_path, ["fit", *args, "--print_config"])
    assert code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def test_penn_tcc_config_is_the_references_tcc_regime(monkeypatch, tmp_path, capsys):
    """One view per video, same-action batches of 2, no projection head: TCC as the
    reference's tcc_transformer_config.yml trains it, visible in the printed config."""
    penn_tcc = str(CONFIGS / "penn_tcc.yaml")
    config = printed_config(monkeypatch, tmp_path, capsys, "--config", penn_tcc)
    assert config["model"]["loss"] == {
        "class_path": "mvf_lightning.losses.TCC",
        "init_args": {
            "views": 1, "embedding": "raw",
            "loss_type": "regression_mse_var", "similarity": "l2", "temperature": 0.1,
            "label_smoothing": 0.1, "variance_lambda": 0.001, "huber_delta": 1.0,
            "normalize_indices": True,
        },
    }
    assert config["model"]["embedder"]["num_tokens"] == 3  # otherwise the Penn Action recipe
    assert config["trainer"]["max_epochs"] == 500
    data = config["data"]["init_args"]
    assert (data["train_batches"], data["train_views"], data["batch_size"]) == (
        "same_group", 1, 2)


def test_penn_tcc_config_builds(capsys):
    from mvf_lightning.cli.commands import main

    assert main(["summary", "--config", str(CONFIGS / "penn_tcc.yaml")]) == 0
    # Penn Action's trainable count without the projection head (Linear 128x128 + bias,
    # BatchNorm 128, Linear 128x128 + bias = 33,280): TCC trains on the raw embedding
    assert capsys.readouterr().out.splitlines()[0] == f"trainable parameters: {4801920 - 33280}"


@pytest.mark.parametrize("config", ["penn.yaml", "finegym99.yaml", "finegym288.yaml",
                                    "k400.yaml", "k400_penn.yaml", "penn_tcc.yaml",
                                    "penn_tcn.yaml", "penn_supervised.yaml"])
def test_paper_configs_use_the_reference_recipe(monkeypatch, tmp_path, capsys, config):
    printed = printed_config(monkeypatch, tmp_path, capsys, "--config", str(CONFIGS / config))
    trainer, model = printed["trainer"], printed["model"]
    assert printed["seed_everything"] == 1
    assert trainer["precision"] == "16-mixed" and trainer["sync_batchnorm"] is True
    assert trainer["gradient_clip_val"] == 10.0
    assert model["scheduler"]["name"] == "epoch_cosine"
    assert model["optimizer"] == {"name": "adam", "lr": 1e-4, "weight_decay": 1e-5,
                                  "betas": [0.9, 0.999]}
    if config == "k400.yaml":  # one video per GPU, as the reference's TRAIN.BATCH_SIZE
        assert printed["data"]["init_args"]["batch_size"] == 1
        assert model["loss"]["init_args"]["negatives"] == "batch_noself"


def test_penn_tcn_config_is_the_references_tcn_regime(monkeypatch, tmp_path, capsys):
    config = printed_config(monkeypatch, tmp_path, capsys,
                            "--config", str(CONFIGS / "penn_tcn.yaml"))
    assert config["model"]["loss"] == {"class_path": "mvf_lightning.losses.TCN",
                                       "init_args": {"reg_lambda": 0.002, "positive_window": 5}}
    data = config["data"]["init_args"]
    assert (data["num_frames"], data["batch_size"], data["train_sampling"],
            data["train_views"]) == (40, 2, "offset_uniform", 1)
    assert config["model"]["embedder"]["num_tokens"] == 3


def test_penn_supervised_config_trains_a_classifier_on_labels(monkeypatch, tmp_path, capsys):
    config = printed_config(monkeypatch, tmp_path, capsys,
                            "--config", str(CONFIGS / "penn_supervised.yaml"))
    assert config["model"]["loss"] == {"class_path": "mvf_lightning.losses.Classification",
                                       "init_args": {"num_classes": 6}}
    data = config["data"]["init_args"]
    assert (data["train_views"], data["train_labels"]) == (1, True)


@pytest.mark.parametrize(
    ("config", "trainable"),
    [("penn_tcn.yaml", 4801920 - 33280),          # no projection head
     ("penn_supervised.yaml", 4801920 - 33280 + 128 * 6 + 6)],  # + the linear classifier
)
def test_other_method_configs_build_without_the_projection_head(capsys, config, trainable):
    from mvf_lightning.cli.commands import main

    assert main(["summary", "--config", str(CONFIGS / config)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"trainable parameters: {trainable}"


def test_loss_is_chosen_on_the_command_line(monkeypatch, tmp_path, capsys):
    demo = str(CONFIGS / "demo.yaml")
    config = printed_config(monkeypatch, tmp_path, capsys, "--config", demo, "--model.loss=TCC",
                            "--model.loss.loss_type=regression_huber")
    loss = config["model"]["loss"]
    assert loss["class_path"] == "mvf_lightning.losses.TCC"
    assert loss["init_args"]["loss_type"] == "regression_huber"
    assert "negatives" not in loss["init_args"]  # SCL's settings are not passed to TCC
    config = printed_config(monkeypatch, tmp_path, capsys, "--config", demo,
                            "--model.loss.temperature=0.2")
    assert config["model"]["loss"]["class_path"] == "mvf_lightning.losses.SCL"
    assert config["model"]["loss"]["init_args"]["temperature"] == 0.2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model.loss=TCC", "--model.loss.negatives=batch"], "'negatives' is not accepted"),
        (["--model.loss.temprature=0.2"], "'temprature' is not accepted"),
        (["--model.loss=TCC", "--model.loss.similarity=dot"], "Got value: dot"),
        (["--model.loss=TCN", "--model.loss.temperature=0.1"], "'temperature' is not accepted"),
    ],
)
def test_bad_loss_settings_are_rejected(monkeypatch, tmp_path, capsys, args, message):
    code = run_main(monkeypatch, tmp_path,
                    ["fit", "--config", str(CONFIGS / "demo.yaml"), *args, "--print_config"])
    assert code not in (0, None)
    assert message in capsys.readouterr().err


@pytest.mark.integration
def test_demo_fit_with_tcc_learns_and_evaluates(tmp_path):
    override = learning_override(tmp_path, check_val_every_n_epoch=8)
    # Our two-view variant: on the demo's tiny random backbone the reference's regime (pairs
    # of different videos) changes too little in 8 epochs to measure (test_module.py shows
    # it fitting a fixed batch; test_reference_methods_fit.py runs it under DDP).
    run_cli(tmp_path, "fit", "--config", str(CONFIGS / "demo.yaml"), "--config", str(override),
            "--model.loss=TCC", "--model.loss.views=2", "--model.loss.embedding=projected")
    metrics = read_metrics(tmp_path / "logs" / "fit")
    per_epoch = collections.defaultdict(list)
    for epoch, value in metrics["train/loss"]:
        per_epoch[epoch].append(value)
    means = [sum(v) / len(v) for _, v in sorted(per_epoch.items())]
    assert len(means) == 8
    # Measured after the spec-exact initialisation: 0.743 -> 0.667-0.686 in epochs 6-8.
    assert (means[-1] + means[-2]) / 2 < 0.95 * means[0], means
    assert "val/demo/mean/kendalls_tau" in metrics
    assert max(v for _, v in metrics["train/skipped_steps"]) == 0
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["loss"]["class_path"].endswith(".TCC")
