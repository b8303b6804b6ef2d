"""Decode a video with the evaluation preprocessing and embed every frame with the model."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .model import Preprocessing

__all__ = ["decode_for_model", "embed_frames", "feature_cache"]

CHUNK = 64


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="chunk", leave=False)


def decode_for_model(
    path: str | os.PathLike, prep: Preprocessing, progress: bool = True
) -> torch.Tensor:
    """Every frame of ``path`` as the model sees it in evaluation: float ``[N, 3, S, S]``.

    Decoded in chunks (decord, at the DataModule's ``decode_size`` if it has one), so a long
    video never exists as a full-resolution float copy.
    """
    from ..data.decode import VideoFile

    video = VideoFile(path, prep.decode_size)
    if len(video) == 0:
        from ..data.decode import VideoDecodeError

        raise VideoDecodeError(path, "no frames")
    transform = prep.transform()
    starts = range(0, len(video), CHUNK)
    out = []
    for start in _progress(starts, len(starts), f"decode {Path(path).name}", progress):
        frames = video.read(np.arange(start, min(start + CHUNK, len(video))))
        out.append(transform(torch.from_numpy(frames).permute(0, 3, 1, 2)))
    return torch.cat(out)


def feature_cache(module: Any, prep: Preprocessing, directory: str | os.PathLike | None):
    """Point the model's own feature cache (``module.cached_backbone``) at ``directory`` on
    disk, so a video aligned again skips the backbone; returns the cache's fingerprint of
    the preprocessing (None: no cache)."""
    import json

    from ..models.cached_backbone import FeatureCacheConfig

    if directory is None:
        module.cached_backbone.config = FeatureCacheConfig(mode="off")
        return None
    module.cached_backbone.config = FeatureCacheConfig(mode="disk", directory=str(directory))
    return json.dumps({"align": prep.as_dict()}, sort_keys=True)


@torch.no_grad()
def embed_frames(
    module: Any,
    frames: torch.Tensor,
    device: torch.device,
    bf16: bool = False,
    cache: str | None = None,
    key: str | None = None,
) -> np.ndarray:
    """Preprocessed frames ``[N, 3, S, S]`` -> L2-normalised embeddings ``[N, E]`` (float32),
    the whole video in the model's evaluation windows (``embed_video`` / ``embed_features``).
    With a cache fingerprint (:func:`feature_cache`), the backbone features of the video
    ``key`` come from the model's cache or are stored there."""
    autocast = (
        torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        if bf16 and device.type == "cuda"
        else contextlib.nullcontext()
    )
    x = frames.to(device)
    with autocast:
        if cache is None:
            out = module.embed_video(x)
        else:
            item = {"set_name": "align", "split": "align", "video_id": key,
                    "frame_indices": torch.arange(x.shape[0])}
            tokens, cls = module.cached_backbone(x, item, cache)
            out = module.embed_features(tokens, cls)
    return out["embeddings"].float().cpu().numpy()
