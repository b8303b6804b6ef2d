"""Media rendering: shapes, dtypes and one value-level property per function."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mvf_lightning.evaluation.media import (
    COLORMAPS,
    alignment_video,
    apply_colormap,
    attention_overlay,
    similarity_matrix_image,
)


def luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


@pytest.mark.parametrize("cmap", sorted(COLORMAPS))
def test_colormap_brightness_increases(cmap):
    rgb = apply_colormap(np.linspace(0, 1, 50), cmap)
    assert rgb.dtype == np.uint8 and rgb.shape == (50, 3)
    assert np.all(np.diff(luminance(rgb)) >= 0)


def test_similarity_matrix_image():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 4))
    b = np.vstack([a[:3], -a[3:]])  # frames 0-2 identical, 3-5 opposite
    img = similarity_matrix_image(a, torch.from_numpy(b), cell_size=2)
    assert img.dtype == np.uint8 and img.shape == (12, 12, 3)
    lum = luminance(img[::2, ::2])
    # identical frames (similarity 1) are the brightest cells, opposite ones the darkest
    assert lum[0, 0] == lum.max() and lum[4, 4] == lum.min()
    assert similarity_matrix_image(a, a).shape == (510, 510, 3)  # auto cell size 85


def test_attention_overlay():
    frames = np.full((2, 16, 12, 3), 100, np.uint8)
    att = np.zeros((2, 3, 4, 4), np.float32)
    att[:, 0, 0, 0] = 1.0  # token 0 attends to the top-left corner
    out = attention_overlay(frames, att)
    assert out.dtype == np.uint8 and out.shape == (2, 16, 12 * 4, 3)
    np.testing.assert_array_equal(out[:, :, :12], frames)  # the frame itself first
    panel = luminance(out[0, :, 12:24])
    assert panel[0, 0] > panel[-1, -1]  # attended corner brighter
    # [N, K, S] with square S gives the same picture
    flat = attention_overlay(frames, att.reshape(2, 3, 16))
    np.testing.assert_array_equal(flat, out)
    with pytest.raises(ValueError, match="square"):
        attention_overlay(frames, np.zeros((2, 3, 15), np.float32))


def test_alignment_video_picks_nearest():
    q_frames = np.stack([np.full((8, 6, 3), 10 * i, np.uint8) for i in range(3)])
    c_frames = np.stack([np.full((4, 3, 3), 50 + 10 * i, np.uint8) for i in range(4)])
    q_embs = np.array([[0.0], [3.0], [1.1]])
    c_embs = np.array([[3.1], [1.0], [0.2], [9.0]])
    out = alignment_video(q_frames, c_frames, q_embs, c_embs)
    assert out.dtype == np.uint8 and out.shape == (3, 8, 12, 3)
    np.testing.assert_array_equal(out[:, :, :6], q_frames)
    # nearest candidates: 0 -> 2, 3 -> 0, 1.1 -> 1 (resized to the query frame size)
    assert [int(out[i, 0, 6, 0]) for i in range(3)] == [70, 50, 60]
    with pytest.raises(ValueError, match="disagree"):
        alignment_video(q_frames, c_frames, q_embs[:2], c_embs)
