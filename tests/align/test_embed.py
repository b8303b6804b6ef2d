"""``align``'s model loading and embedding in-process (the quick tier's share of align/):
the checkpoint's own preprocessing, every frame embedded and L2-normalised, the disk feature
cache reused on a second pass with equal embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mvf_lightning.align.embed import decode_for_model, embed_frames, feature_cache
from mvf_lightning.align.model import load_model
from mvf_lightning.data.decode import probe_video
from mvf_lightning.errors import CheckpointError, ConfigError


def test_checkpoint_gives_model_preprocessing_and_identity(tiny_ckpt):
    module, prep, identity = load_model(ckpt=tiny_ckpt)
    assert not module.training
    assert (prep.crop_size, prep.mean, prep.std) == (32, (0.5,) * 3, (0.5,) * 3)
    assert identity["checkpoint"]["path"] == str(tiny_ckpt.resolve())
    assert len(identity["checkpoint"]["sha256"]) == 64


def test_every_frame_embedded_normalised_and_cached_on_disk(tiny_ckpt, clip, tmp_path):
    module, prep, _ = load_model(ckpt=tiny_ckpt)
    frames = decode_for_model(clip, prep, progress=False)
    n = probe_video(clip).num_frames
    assert frames.shape == (n, 3, 32, 32) and frames.dtype == torch.float32
    plain = embed_frames(module, frames, torch.device("cpu"))
    assert plain.shape == (n, 16) and plain.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(plain, axis=1), 1.0, rtol=1e-5)

    fingerprint = feature_cache(module, prep, tmp_path / "cache")
    first = embed_frames(module, frames, torch.device("cpu"), cache=fingerprint, key="clip")
    again = embed_frames(module, frames, torch.device("cpu"), cache=fingerprint, key="clip")
    assert module.cached_backbone.stats()["hits"] >= 1 and any((tmp_path / "cache").rglob("*"))
    np.testing.assert_allclose(first, plain, atol=1e-5)
    np.testing.assert_array_equal(again, first)
    assert feature_cache(module, prep, None) is None  # --no-cache


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="--ckpt CHECKPOINT or --config CONFIG"):
        load_model()
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.ckpt: not a readable checkpoint"):
        load_model(ckpt=junk)
