"""Config files that share common parts: a top-level ``inherit: [paths]`` key lists YAML
files (relative to the including file) that are applied first, in order. Lightning itself
never sees the key: each ``--config FILE`` becomes ``--config BASE ... --config FILE-CONTENT``."""

from __future__ import annotations

from pathlib import Path

import yaml

from ..errors import ConfigError, MissingFileError

INHERIT_KEY = "inherit"
INLINE_SOURCES: dict[str, str] = {}
"""The file each inline YAML string passed as ``--config`` came from (for error messages)."""


def _expand(path: Path, seen: tuple[Path, ...]) -> list[str]:
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise ConfigError(f"config inheritance loops: {chain}")
    if not path.is_file():
        raise MissingFileError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(data, dict) or INHERIT_KEY not in data:
        return [str(path)]
    bases = data.pop(INHERIT_KEY)
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: '{INHERIT_KEY}' must be a path or a list of paths")
    out: list[str] = []
    for base in bases:
        out += _expand(path.parent / base, (*seen, path))
    content = yaml.safe_dump(data, sort_keys=False) if data else "{}"
    INLINE_SOURCES[content] = str(path)
    out.append(content)
    return out


def expand_config_args(argv: list[str]) -> list[str]:
    """Replace every ``--config FILE`` whose file inherits from others by the chain of files."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        value = None
        if arg == "--config" and i + 1 < len(argv):
            value, i = argv[i + 1], i + 2
        elif arg.startswith("--config="):
            value, i = arg.split("=", 1)[1], i + 1
        else:
            out.append(arg)
            i += 1
            continue
        if Path(value).suffix in (".yaml", ".yml") and Path(value).is_file():
            for item in _expand(Path(value), ()):
                out += ["--config", item]
        else:
            out += ["--config", value]
    return out


def config_sources(args: list[str]) -> list[str]:
    """The YAML files behind the ``--config`` values of expanded ``args``, in order."""
    out = []
    for i, arg in enumerate(args):
        value = None
        if arg == "--config" and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--config="):
            value = arg.split("=", 1)[1]
        if value is None:
            continue
        if value in INLINE_SOURCES:
            out.append(INLINE_SOURCES[value])
        elif Path(value).suffix in (".yaml", ".yml") and Path(value).is_file():
            out.append(str(Path(value).resolve()))
    return out
