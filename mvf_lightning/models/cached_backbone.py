"""Frozen-backbone features of evaluation videos, computed once and reused.

The backbone is frozen and evaluation frames are not augmented, so a video's backbone tokens
never change between evaluations: computed once, later evaluations run only the trainable
part. :class:`CachedBackbone` wraps the backbone on the evaluation path; its entries
(:class:`FeatureCache`: memory and/or disk, safetensors) live under a namespace derived
from the backbone's identity (architecture, weights, blocks) and a fingerprint of the
evaluation preprocessing that the DataModule gives (decoding, transform, index contents).
A change to either gives a new namespace, so stale entries are never used; an entry whose
frame count disagrees with the video is treated as stale and recomputed. No Lightning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..utils.atomic import atomic_path
from .backbone import PERFORMANCE_SETTINGS

CACHE_MODES = ("off", "memory", "disk", "both")
DEFAULT_CACHE_DIR = "~/.cache/mvf_lightning/features"

CACHE_FORMAT = 1


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


class FeatureCache:
    """Backbone tokens (and CLS) per evaluation video, bounded by byte budgets.

    Args:
        namespace: plain-JSON description of what determines the features.
        directory: root folder for the disk cache (None: memory only).
        memory: keep entries in memory too.
        max_memory_gb / max_disk_gb: budgets; entries beyond them are not stored.
        dtype: storage precision; the evaluation always uses the stored (rounded) values, so
            a cold and a warm evaluation give identical embeddings.
    """

    def __init__(
        self,
        namespace: dict,
        directory: str | os.PathLike | None = None,
        memory: bool = True,
        max_memory_gb: float = 4.0,
        max_disk_gb: float = 20.0,
        dtype: torch.dtype = torch.float16,
    ) -> None:
        self.namespace = {"format": CACHE_FORMAT, **namespace}
        self.id = self.namespace_id(namespace)
        self.memory = memory
        self.max_memory = int(max_memory_gb * 2**30)
        self.max_disk = int(max_disk_gb * 2**30)
        self.dtype = dtype
        self._store: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self.memory_bytes = 0
        self.hits = self.misses = self.skipped = 0
        self.directory: Path | None = None
        self.disk_bytes = 0
        if directory is not None:
            self.directory = Path(directory).expanduser() / self.id
            self.directory.mkdir(parents=True, exist_ok=True)
            info = self.directory / "namespace.json"
            if not info.exists():
                info.write_text(json.dumps(self.namespace, indent=2, default=str))
            self.disk_bytes = sum(p.stat().st_size for p in self.directory.glob("*.safetensors"))

    @staticmethod
    def namespace_id(namespace: dict) -> str:
        return _digest({"format": CACHE_FORMAT, **namespace})[:20]

    @staticmethod
    def key(item: dict[str, Any]) -> str:
        """Entry key of an evaluation item: its set, role, video and the frames it holds."""
        idx = item.get("frame_indices")
        frames = (
            hashlib.sha1(torch.as_tensor(idx).cpu().numpy().tobytes()).hexdigest()[:12]
            if idx is not None
            else str(len(item["frames"]))
        )
        raw = f"{item.get('set_name')}|{item.get('split')}|{item.get('video_id')}|{frames}"
        return hashlib.sha1(raw.encode()).hexdigest()

    def _path(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{key}.safetensors"

    def get(
        self, key: str, num_frames: int, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """Cached ``(tokens [N, S, C], cls [N, C] | None)`` or None (miss or stale)."""
        entry = self._store.get(key)
        if entry is None and (path := self._path(key)) is not None and path.is_file():
            from safetensors.torch import load_file

            try:
                data = load_file(str(path))
                entry = (data["tokens"], data.get("cls"))
            except Exception:  # noqa: BLE001 - a damaged entry is just a miss
                entry = None
            if entry is not None and self.memory:
                self._remember(key, entry)
        if entry is None or entry[0].shape[0] != num_frames:
            self.misses += 1
            return None
        self.hits += 1
        tokens, cls = entry
        return tokens.to(device), None if cls is None else cls.to(device)

    def _remember(self, key: str, entry: tuple[torch.Tensor, torch.Tensor | None]) -> bool:
        size = sum(t.numel() * t.element_size() for t in entry if t is not None)
        if self.memory_bytes + size > self.max_memory:
            return False
        self._store[key] = entry
        self.memory_bytes += size
        return True

    def put(
        self, key: str, tokens: torch.Tensor, cls: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Store and return the features as the cache holds them (rounded to ``dtype``)."""
        stored = (
            tokens.detach().to("cpu", self.dtype).contiguous(),
            None if cls is None else cls.detach().to("cpu", self.dtype).contiguous(),
        )
        kept = self._remember(key, stored) if self.memory else False
        path = self._path(key)
        if path is not None:
            size = sum(t.numel() * t.element_size() for t in stored if t is not None)
            if self.disk_bytes + size <= self.max_disk:
                self._write(path, stored)
                self.disk_bytes += size
                kept = True
        if not kept:
            self.skipped += 1
        out_dtype = tokens.dtype
        return (
            stored[0].to(tokens.device, out_dtype),
            None if stored[1] is None else stored[1].to(tokens.device, out_dtype),
        )

    @staticmethod
    def _write(path: Path, stored: tuple[torch.Tensor, torch.Tensor | None]) -> None:
        from safetensors.torch import save_file

        tensors = {"tokens": stored[0]}
        if stored[1] is not None:
            tensors["cls"] = stored[1]
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp))

    def stats(self) -> dict[str, float]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "not_stored_over_budget": self.skipped,
            "memory_mb": self.memory_bytes / 2**20,
            "disk_mb": self.disk_bytes / 2**20,
        }


@dataclass
class FeatureCacheConfig:
    """Where frozen-backbone features of evaluation videos are kept (``model.feature_cache``)."""

    mode: str = "memory"
    """``off``, ``memory``, ``disk`` or ``both``."""
    directory: str | None = None
    """Disk cache folder (default ``~/.cache/mvf_lightning/features``)."""
    max_memory_gb: float = 4.0
    max_disk_gb: float = 20.0
    """Budgets: videos beyond them are recomputed each time."""

    def __post_init__(self) -> None:
        if self.mode not in CACHE_MODES:
            raise ConfigError(f"feature_cache.mode={self.mode!r}: use one of {CACHE_MODES}")


class CachedBackbone:
    """The backbone on the evaluation path: ``frames [N, 3, H, W]`` of one whole video ->
    ``tokens [N, S, C]``, ``cls [N, C] | None``, from the cache when this backbone has seen
    the video under the same preprocessing before.

    Caching is skipped (features computed every time) when the mode is ``off``, when part of
    the backbone trains (its features change), or when no preprocessing fingerprint is given.
    """

    def __init__(self, backbone: nn.Module, config: FeatureCacheConfig | None = None) -> None:
        self.backbone = backbone
        self.config = config or FeatureCacheConfig()
        self.cache: FeatureCache | None = None

    def identity(self) -> dict[str, Any]:
        """What determines the backbone's features (not how they are batched)."""
        config = getattr(self.backbone, "config", None)
        settings = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else {}
        for key in PERFORMANCE_SETTINGS:
            settings.pop(key, None)
        return {
            "class": type(self.backbone).__name__,
            "config": settings,
            "weights": getattr(self.backbone, "weight_source", None),
            # Whether the final CLS vector is computed (and cached) beside the tokens.
            "final_cls": bool(getattr(self.backbone, "final_cls", False)),
        }

    @property
    def active(self) -> bool:
        return self.config.mode != "off" and bool(getattr(self.backbone, "fully_frozen", False))

    def _cache_for(self, fingerprint: str) -> FeatureCache:
        namespace = {"backbone": self.identity(), "preprocessing": fingerprint}
        if self.cache is None or self.cache.id != FeatureCache.namespace_id(namespace):
            mode = self.config.mode
            directory = None
            if mode in ("disk", "both"):
                directory = Path(self.config.directory or DEFAULT_CACHE_DIR).expanduser()
            self.cache = FeatureCache(
                namespace,
                directory=directory,
                memory=mode in ("memory", "both"),
                max_memory_gb=self.config.max_memory_gb,
                max_disk_gb=self.config.max_disk_gb,
            )
        return self.cache

    @torch.no_grad()
    def __call__(
        self, frames: torch.Tensor, item: Mapping[str, Any], fingerprint: str | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Features of the video ``item`` (its ``set_name``, ``split``, ``video_id`` and
        ``frame_indices`` key the entry) whose frames are ``frames``."""
        if not self.active or fingerprint is None:
            return self.backbone(frames)
        cache = self._cache_for(fingerprint)
        key = cache.key(item)
        cached = cache.get(key, frames.shape[0], frames.device)
        if cached is not None:
            tokens, cls = cached
            return tokens.to(frames.dtype), None if cls is None else cls.to(frames.dtype)
        tokens, cls = self.backbone(frames)
        return cache.put(key, tokens, cls)

    def stats(self) -> dict[str, float]:
        """Hits, misses and sizes of the current cache (empty before the first use)."""
        return {} if self.cache is None else self.cache.stats()
