"""The package's shape as README's Layout and docs/architecture.md state it: a top level of
subpackages and entry points, no reaching into another subpackage's private names, Lightning's
private API in one module, and no ``getattr`` into the DataModule."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mvf_lightning"
PRIVATE_LIGHTNING = PACKAGE / "training" / "lightning_private.py"


def _sources() -> dict[Path, ast.Module]:
    return {p: ast.parse(p.read_text(), filename=str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def _subpackage(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0]


def test_the_top_level_holds_subpackages_and_the_entry_points_only():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert modules == ["__init__.py", "__main__.py", "errors.py"]
    from mvf_lightning.metrics import KendallsTau  # the public path README documents

    assert KendallsTau.__module__.startswith("mvf_lightning.evaluation.metrics")


def test_no_module_imports_a_private_name_of_another_subpackage():
    offences = []
    for path, tree in _sources().items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or not node.module:
                continue
            parts = node.module.split(".")
            if parts[0] != "mvf_lightning" or len(parts) < 2:
                continue
            other = parts[1] != _subpackage(path)
            for alias in node.names:
                if other and alias.name.startswith("_"):
                    offences.append(f"{path.relative_to(PACKAGE)}: {node.module}.{alias.name}")
    assert not offences, offences


def test_lightnings_private_api_is_used_in_one_module_only():
    private_access = re.compile(r"\b(trainer|self\.trainer|loop|fit_loop|cli|connector)\._[a-z]")
    offences = []
    for path, tree in _sources().items():
        if path == PRIVATE_LIGHTNING:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lightning"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                if "._" in node.module or private:
                    offences.append(f"{path.relative_to(PACKAGE)}: from {node.module} {private}")
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if private_access.search(line):
                offences.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert not offences, offences


def test_nothing_reads_the_datamodule_through_getattr():
    offences = [
        f"{path.relative_to(PACKAGE)}:{node.lineno}"
        for path, tree in _sources().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        and node.func.id in ("getattr", "hasattr") and node.args
        and "datamodule" in ast.unparse(node.args[0])
    ]
    assert not offences, offences
