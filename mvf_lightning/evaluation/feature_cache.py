"""Cache of frozen-backbone features for evaluation videos.

The backbone is frozen and evaluation frames are not augmented, so a video's backbone tokens
never change between evaluations: computed once, later evaluations run only the trainable
part. Entries live in memory and/or on disk (safetensors), under a namespace derived from
everything that determines the features: backbone name, weights and blocks, the evaluation
transform and decoding, and the content of the evaluation indexes. A change to any of them
gives a new namespace, so stale entries are never used; an entry whose frame count disagrees
with the video is treated as stale and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from ..utils.atomic import atomic_path

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
