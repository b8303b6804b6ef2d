"""FeatureCache: hits after the first put, rounding applied identically, staleness, budgets."""

from __future__ import annotations

import torch

from mvf_lightning.evaluation.feature_cache import FeatureCache

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
