"""The benchmark scripts users run: the GPU check's table and the reference-structured model.

Timings are not asserted (they live in benchmarks/README.md); what is asserted is that the
scripts produce what they promise: every row of the GPU check, honest "not measured" entries
without a GPU, and a reference-structured embedder of exactly our trainable size.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


def _table(text: str) -> dict[str, str]:
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 2 and cells[0] not in ("measurement", "---"):
            rows[cells[0]] = cells[1]
    return rows


def test_gpu_check_without_cuda_reports_every_row_as_not_measured(tmp_path):
    gpu_check = _load("gpu_check")
    out = tmp_path / "gpu.md"
    assert gpu_check.main(["--device", "none", "--out", str(out)]) == 0
    rows = _table(out.read_text())
    assert list(rows) == list(gpu_check.ROWS)
    assert all(v == "not measured (no CUDA device)" for v in rows.values())


def test_gpu_check_shell_script_writes_the_table_without_a_gpu(tmp_path):
    out = tmp_path / "gpu.md"
    env = {**os.environ, "PYTHON": sys.executable, "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        ["bash", str(BENCH / "gpu_check.sh"), str(out)], env=env, capture_output=True,
        text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "no nvidia-smi" in proc.stderr
    assert len(_table(out.read_text())) == 10


@pytest.mark.integration
def test_gpu_check_measures_on_cpu_with_tiny_sizes(tmp_path):
    gpu_check = _load("gpu_check")
    out = tmp_path / "gpu.md"
    gpu_check.main(["--device", "cpu", "--tiny", "--out", str(out),
                    "--workdir", str(tmp_path / "videos")])
    rows = _table(out.read_text())
    measured = [gpu_check.ROWS[i] for i in (0, 2, 4, 7)]
    for key in measured:
        assert float(rows[key]) > 0, key
    assert rows[gpu_check.ROWS[3]].endswith("x")
    for key in (gpu_check.ROWS[1], gpu_check.ROWS[5], gpu_check.ROWS[6]):
        assert rows[key] == "not measured", key  # GPU-only figures are never invented


def test_reference_structured_embedder_has_our_trainable_size():
    from mvf_lightning.models.backbone import BackboneConfig
    from mvf_lightning.models.mvformer import EmbedderConfig, MVFormer

    ref = _load("_reference_pipeline")
    model = MVFormer(
        BackboneConfig(name="vit_tiny_patch16_224", pretrained="none", blocks=[0, 1, 2],
                       img_size=32),
        EmbedderConfig(num_frames=8),
    )
    ours = sum(p.numel() for p in model.parameters() if p.requires_grad)
    embedder = ref.ReferenceStyleEmbedder(192 * 3, train_len=8)
    assert sum(p.numel() for p in embedder.parameters()) == ours
    # Penn Action at the paper's size: 2304 channels -> the reference's 4,801,920.
    assert sum(p.numel() for p in ref.ReferenceStyleEmbedder(2304).parameters()) == 4_801_920
    tokens = torch.randn(2, 8, 4, 192 * 3)
    z = embedder(tokens, torch.ones(2, 8, dtype=torch.bool))
    assert z.shape == (2, 8, 128)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(2, 8))


def _rows(text: str, first_cell: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith(f"| {first_cell}")]


@pytest.mark.integration
def test_levers_benchmark_times_every_switch_against_the_default(capsys):
    _load("bench_levers").main(["--quick", "--skip-compile"])
    out = capsys.readouterr().out
    switches = [row[1] for row in _rows(out, "") if row[1].startswith("`")]
    assert switches[:6] == ["`defaults`", "`model.backbone.autocast: bf16`",
                            "`trainer.precision: bf16-mixed`",
                            "`model.backbone.fused_attn: false`",
                            "`model.backbone.chunk_size: 16`", "`model.backbone.chunk_size: 128`"]
    assert "`model.backbone.channels_last: true`" in switches[6:]
    for row in _rows(out, ""):
        if row[1].startswith("`"):
            assert float(row[2]) > 0 and row[3].endswith("x") and float(row[4]) > 0, row


@pytest.mark.integration
def test_end_to_end_benchmark_compares_three_pipelines_per_layout(tmp_path, capsys):
    _load("bench_train_e2e").main(["--quick", "--workdir", str(tmp_path)])
    out = capsys.readouterr().out
    final = out[out.rindex("## End-to-end training throughput"):]
    for layout in ("penn-like", "finegym-like"):
        assert f"### {layout}" in final
    pipelines = [row[0] for row in _rows(final, "ours")] + [
        row[0] for row in _rows(final, "reference structure")]
    assert pipelines.count("ours, augment in workers") == 2
    assert final.count("end-to-end throughput ours / reference structure: **") == 2
    assert final.count("ours / backbone-only forward = ") == 2


def test_augmentation_benchmark_compares_the_three_structures_on_the_same_frames(capsys):
    bench = _load("bench_augment")
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (1, 2, 3, 40, 48, 3), dtype=torch.uint8).permute(0, 1, 2, 5,
                                                                                    3, 4)
    outs = [bench.PreviousAugmentation(16)(frames), bench.ReferencePerView(16)(frames)]
    for out in outs:  # what ours gives: [B, V, T, 3, S, S] float, normalised
        assert out.shape == (1, 2, 3, 3, 16, 16) and out.dtype == torch.float32
        assert out.min() > -2.2 and out.max() < 2.7
    bench.main(["--quick"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    table = [r for r in rows if "-like" in r]
    assert len(table) == 2 * 2  # printed as measured, then in the final table
    assert all(r.rstrip(" |").endswith("x") for r in table)
