"""The pictures: sizes, and that every labelled element is really drawn (the image changes
when it is turned off or moved)."""

from __future__ import annotations

import numpy as np
import pytest

from mvf_lightning.visualization import (
    AlignmentCanvas,
    Track,
    alignment_video,
    attention_image,
    attention_maps,
    panel_size,
    similarity_matrix_image,
)

RNG = np.random.default_rng(0)
MATRIX = RNG.random((30, 40))
ROW_PHASES = np.repeat([0, 1, 2], 10)
COL_PHASES = np.repeat([0, 1, 2, 3], 10)
PATH = np.stack([np.arange(30), np.arange(30) * 4 // 3], axis=1)


def differs(a: np.ndarray, b: np.ndarray) -> int:
    return int((np.abs(a.astype(int) - b.astype(int)).sum(-1) > 30).sum())


def test_similarity_matrix_size_and_labelled_elements():
    full = similarity_matrix_image(MATRIX, row_name="query", col_name="other",
                                   row_phases=ROW_PHASES, col_phases=COL_PHASES, path=PATH)
    assert full.dtype == np.uint8 and full.shape == (560, 640, 3)
    bare = similarity_matrix_image(MATRIX, labels=False)
    assert bare.shape == full.shape and differs(full, bare) > 10_000  # axes, bar, title
    # each element on its own changes the picture
    no_path = similarity_matrix_image(MATRIX, row_name="query", col_name="other",
                                      row_phases=ROW_PHASES, col_phases=COL_PHASES)
    no_phases = similarity_matrix_image(MATRIX, row_name="query", col_name="other", path=PATH)
    renamed = similarity_matrix_image(MATRIX, row_name="query", col_name="another one",
                                      row_phases=ROW_PHASES, col_phases=COL_PHASES, path=PATH)
    for other in (no_path, no_phases, renamed):
        assert differs(full, other) > 100
    # the colour bar label says what the value is
    dist = similarity_matrix_image(MATRIX, value_name="embedding distance",
                                   higher_is_closer=False)
    sim = similarity_matrix_image(MATRIX, value_name="cosine similarity")
    assert differs(dist, sim) > 1000
    assert similarity_matrix_image(MATRIX, size=(320, 280)).shape == (280, 320, 3)


def test_similarity_matrix_refuses_labels_of_the_wrong_length():
    with pytest.raises(ValueError, match="row_phases"):
        similarity_matrix_image(MATRIX, row_phases=np.zeros(5, int))


def test_attention_maps_are_normalised_per_token():
    att = np.zeros((1, 2, 4, 4), np.float32)
    att[0, 0, 0, 0] = 1.0
    att[0, 1] = 0.3  # constant: no information -> 0
    maps = attention_maps(att, 16, 16)
    assert maps.shape == (1, 2, 16, 16)
    assert maps[0, 0].max() == pytest.approx(1.0) and maps[0, 0, 0, 0] > maps[0, 0, -1, -1]
    assert np.all(maps[0, 1] == 0)


def test_attention_image_rows_legend_and_overlay():
    frames = np.full((3, 32, 32, 3), 120, np.uint8)
    att = np.zeros((3, 2, 4, 4), np.float32)
    att[:, 0, 0, 0] = 1.0  # token 1: top left
    att[:, 1, -1, -1] = 1.0  # token 2: bottom right
    img = attention_image(frames, att, [0, 5, 9], video_name="v", panel_px=64)
    bare = attention_image(frames, att, [0, 5, 9], panel_px=64, labels=False)
    assert bare.shape == (3 * 64, 4 * 64, 3)  # one row per frame: frame, all, token 1, 2
    assert img.shape[0] > bare.shape[0] and img.shape[1] > bare.shape[1]  # legend, row labels
    row = bare[:64]
    frame, combined, tok1, tok2 = (row[:, 64 * c:64 * (c + 1)] for c in range(4))
    assert np.all(frame[1:-1, 1:-1] == 120)  # the frame itself
    # each token's own colour where it attends, the frame elsewhere
    assert differs(tok1[:8, :8], frame[:8, :8]) > 0 and differs(tok2[-8:, -8:], frame[-8:, -8:])
    assert differs(combined[:8, :8], combined[-8:, -8:]) > 0  # two different colours
    relabelled = attention_image(frames, att, [1, 5, 9], video_name="v", panel_px=64)
    assert differs(img, relabelled) > 0  # row labels carry the frame index
    with pytest.raises(ValueError, match="frames"):
        attention_image(frames, att[:2])


def test_panel_size_is_readable_and_even():
    assert panel_size(64, 64) == (224, 224)  # small videos are enlarged
    assert panel_size(144, 176) == (224, 274)
    assert panel_size(720, 1280) == (480, 854)  # large ones are capped
    assert all(s % 2 == 0 for s in panel_size(301, 333))


def test_alignment_canvas_labels_counter_and_timeline():
    phases = np.repeat([0, 1], 10)
    tracks = [Track("query", 20, (64, 64), phases), Track("other", 30, (144, 176), None)]
    canvas = AlignmentCanvas(tracks, phase_names=["reach", "grasp"])
    frames = [np.full((64, 64, 3), 50, np.uint8), np.full((144, 176, 3), 200, np.uint8)]
    a = canvas.draw(frames, [3, 5])
    assert a.shape == (canvas.height, canvas.width, 3)
    assert a.shape[0] >= 224 and a.shape[0] % 2 == 0 and a.shape[1] % 2 == 0
    (top, x, h, w), (top2, x2, h2, w2) = canvas._boxes
    assert h == h2 == 224  # both at least 224 px tall, side by side
    assert np.all(a[top:top + h, x:x + w] == 50) and np.all(a[top2:top2 + h2, x2:x2 + w2] == 200)
    b = canvas.draw(frames, [15, 5])  # only the query's position changes
    changed = np.flatnonzero(np.abs(a.astype(int) - b.astype(int)).sum((0, 2)))
    assert changed.max() < x2  # counter and marker of the query only
    assert canvas.info_text(tracks[0], 15) == "frame 15 / 20 · grasp"
    assert canvas.info_text(tracks[1], 5) == "frame  5 / 30"
    bare = AlignmentCanvas(tracks, labels=False)
    assert bare.height < canvas.height


def test_alignment_video_frames():
    tracks = [Track("q", 6, (32, 32)), Track("o", 9, (32, 48))]
    frames = [np.zeros((6, 32, 32, 3), np.uint8), np.zeros((6, 32, 48, 3), np.uint8)]
    video = alignment_video(tracks, frames, np.stack([np.arange(6), [0, 1, 3, 4, 6, 8]]))
    assert video.shape[0] == 6 and video.dtype == np.uint8 and video.shape[1] >= 224
    assert len({f.tobytes() for f in video}) == 6  # counters and markers move every frame
    with pytest.raises(ValueError, match="steps"):
        alignment_video(tracks, [frames[0][:3], frames[1]], np.zeros((2, 6), int))
