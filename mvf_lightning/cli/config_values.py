"""Parsed config values (jsonargparse ``Namespace``) as plain Python values."""

from __future__ import annotations

from typing import Any

__all__ = ["flat_values", "plain"]


def plain(value: Any) -> Any:
    """A parsed config section (``Namespace``) as nested dicts; other values unchanged."""
    if hasattr(value, "as_dict"):
        return value.as_dict()
    return value


def flat_values(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b.c": value}`` for every leaf of a parsed config section."""
    value = plain(value)
    if not isinstance(value, dict):
        return {prefix.rstrip("."): value}
    out: dict[str, Any] = {}
    for k, v in value.items():
        out.update(flat_values(v, f"{prefix}{k}."))
    return out
