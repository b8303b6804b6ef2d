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
    """The frozen-backbone feature cache ``align`` reuses between runs (None: no cache, or
    part of the backbone trains so its features are not fixed).

    TODO(lead): the cache moves to the model side (issue 8.4); adapt this one function.
    """
    if directory is None or not module.model.backbone.fully_frozen:
        return None
    from dataclasses import asdict

    from ..evaluation.feature_cache import FeatureCache

    namespace = {
        "purpose": "align",
        "backbone": module._backbone_identity(),
        "backbone_config": {
            k: v for k, v in asdict(module.backbone_config).items() if k != "chunk_size"
        },
        "preprocessing": prep.as_dict(),
    }
    return FeatureCache(namespace, directory=directory, memory=False)


@torch.no_grad()
def embed_frames(
    module: Any,
    frames: torch.Tensor,
    device: torch.device,
    bf16: bool = False,
    cache: Any = None,
    key: str | None = None,
) -> np.ndarray:
    """Preprocessed frames ``[N, 3, S, S]`` -> L2-normalised embeddings ``[N, E]`` (float32),
    the whole video in the model's evaluation windows (``embed_video`` / ``embed_features``).
    With a cache, the backbone features of ``key`` are read from it or stored in it."""
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
            hit = cache.get(key, x.shape[0], device)
            if hit is None:
                tokens, cls = module.model.backbone_features(x.unsqueeze(0))
                hit = cache.put(key, tokens[0], None if cls is None else cls[0])
            tokens, cls = hit
            dtype = next(module.model.embedder.parameters()).dtype
            out = module.embed_features(
                tokens.to(dtype), None if cls is None else cls.to(dtype)
            )
    return out["embeddings"].float().cpu().numpy()
