"""The pictures of one evaluation (evaluation/media.py): sizes, labels drawn, DTW matches."""

from __future__ import annotations

import numpy as np
import pytest

from mvf_lightning.evaluation.media import (
    alignment_clip,
    attention_picture,
    evenly,
    similarity_picture,
)
from mvf_lightning.evaluation.records import VideoEmbedding
from mvf_lightning.visualization import AlignmentCanvas, Track


def video(name: str, embeddings: np.ndarray, labels: np.ndarray | None = None) -> VideoEmbedding:
    return VideoEmbedding(name, "set", "val", embeddings, labels)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_evenly():
    assert evenly(10, 20).tolist() == list(range(10))
    assert evenly(10, 3).tolist() == [0, 4, 9]  # 4.5 rounds to even
    assert evenly(10, 1).tolist() == [0]


def test_similarity_picture_with_and_without_phases():
    rng = np.random.default_rng(0)
    a = video("a", unit(rng.normal(size=(12, 4))), np.repeat([0, 1, 2], 4))
    b = video("b", unit(rng.normal(size=(9, 4))), np.repeat([0, 1, 2], 3))
    img = similarity_picture(a, b)
    assert img.shape == (560, 640, 3) and img.dtype == np.uint8
    unlabelled = similarity_picture(video("a", a.embeddings, np.full(12, -1)),
                                    video("b", b.embeddings))
    assert (np.abs(img.astype(int) - unlabelled.astype(int)).sum(-1) > 30).sum() > 100
    assert similarity_picture(a, b, thumbnail=True).shape == (280, 320, 3)


def test_attention_picture():
    frames = np.full((5, 32, 32, 3), 90, np.uint8)
    att = np.random.default_rng(0).random((5, 2, 16)).astype(np.float32)
    image, caption = attention_picture(frames, att, (4, 4), 3, "vid")
    assert image.ndim == 3 and image.shape[0] > 3 * 100  # three rows of frames
    assert "frames 0, 2, 4" in caption and "vid" in caption
    with pytest.raises(ValueError, match="feature grid"):
        attention_picture(frames, att, (3, 5), 3, "vid")


def test_alignment_clip_shows_the_dtw_matches():
    n = 16
    colours = np.linspace(20, 230, n).astype(np.uint8)
    q_frames = np.repeat(colours[:, None, None, None], 32, 1).repeat(32, 2).repeat(3, 3)
    embs = unit(np.stack([np.cos(np.arange(n) / 5), np.sin(np.arange(n) / 5), np.ones(n)], 1))
    warp = np.concatenate([np.repeat(np.arange(8), 2), np.arange(8, n, 2)])  # 20 frames
    query = video("query", embs)
    other = video("other", embs[warp])
    clip, caption = alignment_clip(query, other, q_frames, q_frames[warp], max_frames=100)
    assert clip.shape[0] == n and clip.shape[1] >= 224 and "query" in caption
    canvas = AlignmentCanvas([Track("query", n, (32, 32)), Track("other", len(warp), (32, 32))])
    (top, x, h, w), (top2, x2, _, _) = canvas._boxes
    assert clip.shape[1:3] == (canvas.height, canvas.width)
    for t in range(n):
        left = clip[t, top + h // 2, x + w // 2]
        right = clip[t, top2 + h // 2, x2 + w // 2]
        assert abs(int(left[0]) - int(colours[t])) <= 1
        # the matched frame shows this frame's content, or a neighbour the fast part skipped
        assert abs(int(right[0]) - int(colours[t])) <= colours[1] - colours[0] + 1
    short, _ = alignment_clip(query, other, q_frames, q_frames[warp], max_frames=5)
    assert short.shape[0] == 5
