"""`summary`: exact parameter counts of the paper configs, built with no data or download."""

from __future__ import annotations

from pathlib import Path

import pytest

from mvf_lightning.cli.commands import main
from mvf_lightning.cli.config_files import expand_config_args

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize(
    ("config", "trainable"),
    [("penn.yaml", 4_801_920), ("finegym99.yaml", 7_635_200), ("finegym288.yaml", 7_635_200),
     ("k400.yaml", 4_801_920)],
)
def test_summary_prints_paper_parameter_counts(config, trainable, capsys):
    assert main(["summary", "--config", str(CONFIGS / config)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"trainable parameters: {trainable}"
    assert out[1] == "frozen parameters: 85806336"  # DINO ViT-B/8, blocks up to 11
    table = "\n".join(out[2:])
    assert "embedder.pool" in table and "backbone" in table


def test_summary_applies_overrides(capsys):
    assert main(["summary", "--config", str(CONFIGS / "penn.yaml"),
                 "--model.embedder.num_tokens=4"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    # one more LSTP query (384 weights) and one more one-hot input channel to the MLP (512)
    assert first == f"trainable parameters: {4_801_920 + 384 + 512}"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("--model.backbone.name=vit_bse_patch8_224", "closest timm names: vit_base_patch8_224"),
        ("--model.backbone.blocks=[3,12]", "block index 12 is out of range"),
        ("--model.embedder.num_tokens=0", "num_tokens must be >= 1"),
    ],
)
def test_summary_bad_values_are_named(override, message, capsys):
    assert main(["summary", "--config", str(CONFIGS / "penn.yaml"), override]) == 1
    assert message in capsys.readouterr().err


def test_mistyped_key_names_the_closest_valid_key(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["summary", "--config", str(CONFIGS / "penn.yaml"), "--model.embeder.num_tokens=4"])
    assert exc.value.code == 2
    assert 'did you mean "model.embedder.num_tokens"' in capsys.readouterr().err


def test_config_inheritance_expands_bases_in_order(tmp_path):
    (tmp_path / "base.yaml").write_text("trainer:\n  max_epochs: 3\n")
    (tmp_path / "mid.yaml").write_text("inherit: base.yaml\nmodel:\n  step_seed: 1\n")
    (tmp_path / "top.yaml").write_text("inherit: [mid.yaml]\ntrainer:\n  max_epochs: 5\n")
    args = expand_config_args(["fit", "--config", str(tmp_path / "top.yaml"), "--x=1"])
    assert args[0] == "fit" and args[-1] == "--x=1"
    configs = [args[i + 1] for i, a in enumerate(args) if a == "--config"]
    assert configs[0] == str((tmp_path / "base.yaml").resolve())
    assert "step_seed: 1" in configs[1] and "inherit" not in configs[1]
    assert "max_epochs: 5" in configs[2]


def test_config_inheritance_loop_is_reported(tmp_path):
    (tmp_path / "a.yaml").write_text("inherit: b.yaml\n")
    (tmp_path / "b.yaml").write_text("inherit: a.yaml\n")
    with pytest.raises(ValueError, match="loops"):
        expand_config_args(["--config", str(tmp_path / "a.yaml")])
