"""One evaluated video as a record, from an evaluation step's output, and the one cross-rank
gather of records. Lightning-free (the gather takes a torch.distributed setting).

The module's ``validation_step`` / ``test_step`` / ``predict_step`` return one whole video:
its L2-normalised ``embeddings [N, E]`` with the evaluation item's ``labels``,
``frame_indices``, ``video_id``, ``set_name``, ``split`` and ``group``, or, for a video that
failed to decode, ``broken=True`` and ``error``. :func:`video_record` turns either into a
:class:`VideoEmbedding`; the metrics callback, the media callback and the prediction writer
all use it and :func:`gather_videos`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["VideoEmbedding", "gather_videos", "unique_videos", "video_record"]


@dataclass
class VideoEmbedding:
    """One evaluated video: its set, its role (``train`` / ``val``) and per-frame arrays.

    ``error`` is set (and ``embeddings`` may be None) for a video that failed to decode:
    it is listed, never scored.
    """

    video_id: str
    set_name: str
    split: str
    embeddings: np.ndarray | None  # float32 [N, E]
    labels: np.ndarray | None = None  # int64 [N], -1 = unknown
    frame_indices: np.ndarray | None = None  # int64 [N]
    group: str = ""
    error: str | None = None

    @property
    def broken(self) -> bool:
        return self.error is not None

    @property
    def key(self) -> tuple[str, str, str]:
        return self.set_name, self.split, self.video_id

    @property
    def num_frames(self) -> int:
        """Number of embedded frames ``N`` (0 for a broken video)."""
        return 0 if self.embeddings is None else int(self.embeddings.shape[0])

    def known_labels(self) -> np.ndarray:
        """Labels, all ``-1`` where none are known."""
        if self.labels is None:
            return np.full(self.num_frames, -1, dtype=np.int64)
        return np.asarray(self.labels, dtype=np.int64)


def _numpy(x: Any, dtype: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = x.float() if np.dtype(dtype).kind == "f" else x
        x = x.numpy()
    return np.ascontiguousarray(np.asarray(x), dtype=dtype)


def video_record(outputs: Any) -> VideoEmbedding | None:
    """The record of one evaluation step's output (embeddings as float32 numpy on the CPU),
    or None for an output that is not one whole video."""
    if not isinstance(outputs, dict):
        return None
    ids = (str(outputs.get("video_id")), str(outputs.get("set_name", "default")),
           str(outputs.get("split", "val")))
    if outputs.get("broken") is True:
        return VideoEmbedding(*ids, embeddings=None, error=str(outputs.get("error", "")))
    if "embeddings" not in outputs:
        return None
    labels, frames = outputs.get("labels"), outputs.get("frame_indices")
    return VideoEmbedding(
        *ids,
        embeddings=_numpy(outputs["embeddings"], np.float32),
        labels=None if labels is None else _numpy(labels, np.int64).reshape(-1),
        frame_indices=None if frames is None else _numpy(frames, np.int64).reshape(-1),
        group=str(outputs.get("group", "")),
    )


def unique_videos(videos: Iterable[VideoEmbedding]) -> list[VideoEmbedding]:
    """Each ``(set, split, video id)`` once (its first copy), in the order first seen."""
    unique: dict[tuple[str, str, str], VideoEmbedding] = {}
    for v in videos:
        unique.setdefault(v.key, v)
    return list(unique.values())


def gather_videos(
    videos: list[Any], world_size: int, rank: int = 0, to: int | None = None
) -> list[Any] | None:
    """Every rank's ``videos`` (records, or items carrying them) in rank order: on every rank
    (``to=None``), or on rank ``to`` only (None elsewhere). Without torch.distributed (one
    process) the list itself. A DistributedSampler's padding repeats videos: callers keep
    each once (:func:`unique_videos`)."""
    dist = torch.distributed
    if world_size <= 1 or not (dist.is_available() and dist.is_initialized()):
        return list(videos)
    if to is None:
        parts: list[list[Any] | None] = [None] * world_size
        dist.all_gather_object(parts, videos)
    else:
        parts = [None] * world_size if rank == to else None
        dist.gather_object(videos, parts, dst=to)
        if parts is None:
            return None
    return [v for part in parts for v in (part or [])]
