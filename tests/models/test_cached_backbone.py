"""CachedBackbone and its FeatureCache: hits after the first put, rounding applied identically,
staleness, budgets, namespaces from the backbone and the preprocessing fingerprint."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from mvf_lightning.models.cached_backbone import CachedBackbone, FeatureCache, FeatureCacheConfig

ITEM = {"set_name": "a", "split": "val", "video_id": "v1", "frame_indices": torch.arange(5)}


def features(n=5, s=4, c=8):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, s, c, generator=g), torch.randn(n, c, generator=g)


def test_memory_cache_returns_what_it_stored_rounded():
    cache = FeatureCache({"backbone": "x"})
    key = cache.key(ITEM)
    assert cache.get(key, 5) is None
    tokens, cls = features()
    used_tokens, used_cls = cache.put(key, tokens, cls)
    torch.testing.assert_close(used_tokens, tokens.half().float())
    got_tokens, got_cls = cache.get(key, 5)
    assert torch.equal(got_tokens.float(), used_tokens) and torch.equal(got_cls.float(), used_cls)
    assert cache.stats()["hits"] == 1 and cache.stats()["misses"] == 1


def test_disk_cache_survives_a_new_process_and_detects_changed_namespace(tmp_path):
    tokens, cls = features()
    first = FeatureCache({"backbone": "x"}, directory=tmp_path, memory=False)
    first.put(first.key(ITEM), tokens, cls)
    again = FeatureCache({"backbone": "x"}, directory=tmp_path, memory=False)
    hit = again.get(again.key(ITEM), 5)
    assert hit is not None and torch.equal(hit[0], tokens.half())
    other = FeatureCache({"backbone": "y"}, directory=tmp_path)
    assert other.get(other.key(ITEM), 5) is None  # other weights/preprocessing: new namespace
    assert (tmp_path / first.id / "namespace.json").is_file()


def test_entry_with_other_frame_count_is_stale():
    cache = FeatureCache({"backbone": "x"})
    key = cache.key(ITEM)
    cache.put(key, *features(n=5))
    assert cache.get(key, 6) is None


def test_key_depends_on_video_and_frames():
    other_frames = {**ITEM, "frame_indices": torch.arange(0, 10, 2)}
    other_video = {**ITEM, "video_id": "v2"}
    keys = {FeatureCache.key(ITEM), FeatureCache.key(other_frames), FeatureCache.key(other_video)}
    assert len(keys) == 3


def test_budget_is_respected():
    cache = FeatureCache({"backbone": "x"}, max_memory_gb=100 / 2**30)  # 100 bytes
    key = cache.key(ITEM)
    cache.put(key, *features())
    assert cache.get(key, 5) is None
    assert cache.stats()["not_stored_over_budget"] == 1


@dataclass
class _Config:
    name: str = "toy"
    chunk_size: int = 4
    unfreeze_last: int = 0


class CountingBackbone(nn.Module):
    """Tokens = frames' channel means, counting calls."""

    def __init__(self, frozen: bool = True, weights: str = "w1") -> None:
        super().__init__()
        self.config = _Config(unfreeze_last=0 if frozen else 1)
        self.weight_source = weights
        self.fully_frozen = frozen
        self.calls = 0

    def forward(self, frames):
        self.calls += 1
        tokens = frames.mean(dim=(2, 3))[:, None, :]  # [N, 1, 3]
        return tokens, tokens[:, 0]


FRAMES = torch.rand(5, 3, 4, 4)


def test_second_evaluation_skips_the_backbone_with_identical_features():
    backbone = CountingBackbone()
    cached = CachedBackbone(backbone)
    first = cached(FRAMES, ITEM, "prep-a")
    second = cached(FRAMES, ITEM, "prep-a")
    assert backbone.calls == 1 and cached.stats()["hits"] == 1
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_new_fingerprint_or_weights_recompute():
    backbone = CountingBackbone()
    cached = CachedBackbone(backbone)
    cached(FRAMES, ITEM, "prep-a")
    cached(FRAMES, ITEM, "prep-b")  # other evaluation preprocessing
    assert backbone.calls == 2
    backbone.weight_source = "w2"  # other weights: other identity
    cached(FRAMES, ITEM, "prep-b")
    assert backbone.calls == 3


@pytest.mark.parametrize("case", ["trainable", "off", "no-fingerprint"])
def test_no_caching_when_features_may_change(case):
    backbone = CountingBackbone(frozen=case != "trainable")
    config = FeatureCacheConfig(mode="off" if case == "off" else "memory")
    cached = CachedBackbone(backbone, config)
    fingerprint = None if case == "no-fingerprint" else "prep"
    for _ in range(2):
        cached(FRAMES, ITEM, fingerprint)
    assert backbone.calls == 2 and cached.stats() == {}


def test_disk_mode_uses_the_configured_folder(tmp_path):
    config = FeatureCacheConfig(mode="disk", directory=str(tmp_path))
    cached = CachedBackbone(CountingBackbone(), config)
    cached(FRAMES, ITEM, "prep")
    again = CachedBackbone(CountingBackbone(), config)
    again(FRAMES, ITEM, "prep")
    assert again.backbone.calls == 0 and again.stats()["hits"] == 1
    with pytest.raises(ValueError, match="feature_cache.mode='ram'"):
        FeatureCacheConfig(mode="ram")
