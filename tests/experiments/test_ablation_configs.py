"""The paper's ablations as override files: `summary` on Penn Action plus each override prints
the reference's trainable parameter count (mvformer.md, "Ablations in the reference")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mvf_lightning.cli.commands import main

ROOT = Path(__file__).resolve().parents[2]
PENN = ROOT / "configs" / "penn.yaml"
ABLATIONS = ROOT / "experiments" / "ablations"
BACKBONES = ROOT / "experiments" / "backbones"

# mvformer.md's ablation table, row by row.
TABLE = {
    "lstp1": 3_620_480,
    "lstp3": 3_622_272,
    "lstp5": 3_624_064,
    "multi_lstp1": 4_800_128,
    "multi_lstp5": 4_803_712,
    "late_cls": 3_225_216,
    "late_max": 3_225_216,
    "late_avg": 3_225_216,
    "fwb3": 3_916_032,
    "fwb5": 4_507_648,
    "rn50_lstp1": 4_603_520,
    "rn50_lstp3": 4_605_312,
    "rn50_lstp5": 4_607_104,
    "rn50_max": 3_880_576,
}

# Hand-computed for Penn Action with another ViT and blocks 3,7,11: only LSTP's key and value
# maps depend on the width, 2 * (3 W * 384 + 384); Penn's other trainable parts add 3,030,144.
VIT_S = 3_030_144 + 2 * (3 * 384 * 384 + 384) + 3 * 384 + 384
VIT_B = 4_801_920
BACKBONE_COUNTS = {
    "dino_vits16": VIT_S,
    "dino_vitb16": VIT_B,
    "dinov2_vits14": VIT_S,
    "dinov2_vitb14": VIT_B,
}

FROZEN_VIT_B8 = 85_806_336  # blocks up to 11, final norm dropped
FROZEN = {
    "late_cls": FROZEN_VIT_B8 + 2 * 768,  # the final CLS needs the final norm
    "fwb3": FROZEN_VIT_B8 + 2 * 768,
    "lstp1": FROZEN_VIT_B8,
    "rn50_max": 23_508_032,  # torchvision ResNet-50 without its classifier
}


def _summary(capsys, override: Path) -> tuple[int, int]:
    assert main(["summary", "--config", str(PENN), "--config", str(override)]) == 0
    lines = capsys.readouterr().out.splitlines()
    trainable = re.fullmatch(r"trainable parameters: (\d+)", lines[0])
    frozen = re.fullmatch(r"frozen parameters: (\d+)", lines[1])
    assert trainable and frozen, lines[:2]
    return int(trainable.group(1)), int(frozen.group(1))


def test_one_override_per_table_row():
    assert sorted(p.stem for p in ABLATIONS.glob("*.yaml")) == sorted(TABLE)


@pytest.mark.parametrize("name", list(TABLE))
def test_summary_prints_the_reference_count(name, capsys):
    trainable, frozen = _summary(capsys, ABLATIONS / f"{name}.yaml")
    assert trainable == TABLE[name]
    if name in FROZEN:
        assert frozen == FROZEN[name]


@pytest.mark.parametrize("name", list(BACKBONE_COUNTS))
def test_backbone_overrides(name, capsys):
    assert VIT_S == 3_917_184
    trainable, _ = _summary(capsys, BACKBONES / f"{name}.yaml")
    assert trainable == BACKBONE_COUNTS[name]


def test_pouring_config_count(capsys):
    """The table's last row: the full Pouring config (block 11, 3 tokens)."""
    pouring = ROOT / "configs" / "pouring.yaml"
    if not pouring.is_file():
        pytest.skip("configs/pouring.yaml comes with the Pouring DataModule")
    assert main(["summary", "--config", str(pouring)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "trainable parameters: 3622272"


@pytest.mark.parametrize(("readme", "counts"), [(ABLATIONS / "README.md", TABLE),
                                                (BACKBONES / "README.md", BACKBONE_COUNTS)])
def test_readmes_list_every_experiment_with_its_count(readme, counts):
    text = readme.read_text()
    for name, count in counts.items():
        rows = [line for line in text.splitlines() if line.startswith(f"| `{name}` |")]
        assert len(rows) == 1, name
        assert f"{count:,}" in rows[0], name
