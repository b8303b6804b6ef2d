"""The query video and aligned videos side by side, labelled, with a timeline per video."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .figure import new_figure, phase_colors, render

__all__ = ["AlignmentCanvas", "Track", "alignment_video", "iter_alignment_frames", "panel_size"]

MIN_HEIGHT = 224
MAX_HEIGHT = 480
_TITLE, _INFO, _STRIP = 26, 22, 18


def panel_size(height: int, width: int, min_height: int = MIN_HEIGHT,
               max_height: int = MAX_HEIGHT) -> tuple[int, int]:
    """Panel ``(height, width)`` for a video of ``height x width``: the original height kept
    within ``[min_height, max_height]``, aspect ratio kept, both even (yuv420p)."""
    h = min(max(int(height), min_height), max_height)
    w = max(2, round(h * int(width) / max(int(height), 1)))
    return h + h % 2, w + w % 2


def _resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 ``[H, W, 3]`` -> ``size = (h, w)`` (PIL, bilinear; small frames stay sharp)."""
    if frame.shape[:2] == tuple(size):
        return frame
    from PIL import Image

    h, w = size
    return np.asarray(Image.fromarray(np.ascontiguousarray(frame)).resize((w, h), Image.BILINEAR))


@dataclass
class Track:
    """One video of the alignment video.

    Args:
        name: shown above the panel.
        num_frames: frames of the whole video (the timeline's length).
        size: ``(height, width)`` of the video's frames.
        phases: per-frame phase labels of the whole video (colours the timeline), or None.
    """

    name: str
    num_frames: int
    size: tuple[int, int]
    phases: np.ndarray | None = None


class AlignmentCanvas:
    """Draws one output frame at a time (a video can be longer than memory allows).

    Each panel: the video's name on top, the frame (resized to :func:`panel_size`), a line
    ``frame i / N · phase``, and a timeline strip (coloured by phase when known) with a marker
    at the frame shown. All panels share one height; the output size is even. The static
    layout is drawn once with matplotlib; per frame only the pictures, the marker and the
    counter line (matplotlib's monospace font, through PIL) are drawn, so long videos render
    quickly.
    """

    def __init__(self, tracks: Sequence[Track], phase_names: Sequence[str] | None = None,
                 labels: bool = True) -> None:
        if not tracks:
            raise ValueError("AlignmentCanvas needs at least one track")
        self.tracks = list(tracks)
        self.phase_names = None if phase_names is None else list(phase_names)
        self.labels = labels
        ph = max(panel_size(*t.size)[0] for t in self.tracks)
        self.sizes = [panel_size(ph, round(ph * t.size[1] / t.size[0]), ph, ph)
                      for t in self.tracks]
        gap = 8
        extra = (_TITLE + _INFO + _STRIP) if labels else 0
        width = sum(w for _, w in self.sizes) + gap * (len(self.tracks) + 1)
        height = ph + extra + 2 * gap
        self.width, self.height = width + width % 2, height + height % 2
        fig = new_figure(self.width, self.height)
        fig.patch.set_facecolor("white")
        self._boxes, self._infos, self._strips = [], [], []
        x = gap
        top = gap + (_TITLE if labels else 0)
        for track, (h, w) in zip(self.tracks, self.sizes):
            self._boxes.append((top, x, h, w))
            if labels:
                fig.text((x + w / 2) / self.width, 1 - (gap + _TITLE / 2) / self.height,
                         track.name, ha="center", va="center", fontsize=10, fontweight="bold")
                self._infos.append((top + h, x, _INFO, w))
                strip = (top + h + _INFO, x, _STRIP - 6, w)
                self._strips.append(strip)
                self._timeline(self._axes(fig, *strip), track)
            x += w + gap
        self.background = render(fig)
        self._font = _monospace_font(12) if labels else None

    def _axes(self, fig, top: float, x: float, h: float, w: float):
        return fig.add_axes((x / self.width, 1 - (top + h) / self.height,
                             w / self.width, h / self.height))

    def _timeline(self, ax, track: Track) -> None:
        n = max(track.num_frames, 1)
        ax.set_xlim(0, n)
        ax.set_ylim(0, 1)
        ax.set_xticks([])
        ax.set_yticks([])
        if track.phases is not None and len(track.phases):
            labels = np.asarray(track.phases)
            valid = labels[labels >= 0]
            colors = phase_colors(int(valid.max()) + 1 if valid.size else 1)
            starts = np.concatenate([[0], np.flatnonzero(labels[1:] != labels[:-1]) + 1])
            ends = np.concatenate([starts[1:], [len(labels)]])
            for s, e in zip(starts, ends):
                lab = int(labels[s])
                ax.axvspan(s, e, color=colors[lab] if lab >= 0 else (0.85, 0.85, 0.85), lw=0)
        else:
            ax.axvspan(0, n, color=(0.85, 0.85, 0.85), lw=0)

    def phase_text(self, label: int | None) -> str:
        if label is None or label < 0:
            return ""
        if self.phase_names is not None and label < len(self.phase_names):
            return self.phase_names[label]
        return f"phase {label}"

    def info_text(self, track: Track, index: int) -> str:
        """The line under a panel: frame counter and phase name."""
        label = None
        if track.phases is not None and 0 <= index < len(track.phases):
            label = int(track.phases[index])
        phase = self.phase_text(label)
        return (f"frame {index:>{len(str(track.num_frames))}d} / {track.num_frames}"
                + (f" · {phase}" if phase else ""))

    def draw(self, frames: Sequence[np.ndarray], indices: Sequence[int]) -> np.ndarray:
        """One output frame: ``frames[i]`` (uint8 ``[H, W, 3]``) is frame ``indices[i]`` of
        track ``i``. Returns uint8 ``[height, width, 3]``."""
        out = self.background.copy()
        for i, (track, frame, (top, x, h, w)) in enumerate(zip(self.tracks, frames, self._boxes)):
            out[top:top + h, x:x + w] = _resize(np.asarray(frame), (h, w))
            if not self.labels:
                continue
            index = int(indices[i])
            st, sx, sh, sw = self._strips[i]
            mx = sx + min(sw - 2, max(0, round((index + 0.5) / max(track.num_frames, 1) * sw) - 1))
            out[st - 2:st + sh + 2, mx:mx + 3] = (208, 16, 16)
            it, ix, ih, iw = self._infos[i]
            out[it:it + ih, ix:ix + iw] = _text(self.info_text(track, index), (ih, iw), self._font)
        return out


def _monospace_font(size: int):
    """PIL font from matplotlib's bundled DejaVu Sans Mono (so no system fonts are needed)."""
    from matplotlib import font_manager
    from PIL import ImageFont

    path = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans Mono"))
    return ImageFont.truetype(path, size)


def _text(text: str, size: tuple[int, int], font) -> np.ndarray:
    """``text`` centred in a white ``size = (h, w)`` box, as uint8 ``[h, w, 3]``."""
    from PIL import Image, ImageDraw

    h, w = size
    img = Image.new("RGB", (w, h), "white")
    ImageDraw.Draw(img).text((w / 2, h / 2), text, fill="black", font=font, anchor="mm")
    return np.asarray(img)


def alignment_video(
    tracks: Sequence[Track],
    frames: Sequence[np.ndarray],
    indices: np.ndarray,
    phase_names: Sequence[str] | None = None,
    labels: bool = True,
) -> np.ndarray:
    """All output frames at once (for short videos): ``frames[i]`` uint8 ``[T, H_i, W_i, 3]``
    is what track ``i`` shows at each of the ``T`` output steps, ``indices [len(tracks), T]``
    their frame numbers. Returns uint8 ``[T, H, W, 3]``."""
    return np.stack(list(iter_alignment_frames(tracks, frames, indices, phase_names, labels)))


def iter_alignment_frames(
    tracks: Sequence[Track],
    frames: Sequence[np.ndarray],
    indices: np.ndarray,
    phase_names: Sequence[str] | None = None,
    labels: bool = True,
) -> Iterator[np.ndarray]:
    """:func:`alignment_video` one frame at a time."""
    idx = np.asarray(indices)
    if idx.ndim != 2 or idx.shape[0] != len(tracks) or len(frames) != len(tracks):
        raise ValueError(
            f"alignment_video: {len(tracks)} tracks need {len(tracks)} frame arrays and "
            f"indices [{len(tracks)}, T]; got {len(frames)} and {idx.shape}"
        )
    for i, f in enumerate(frames):
        if len(f) != idx.shape[1]:
            raise ValueError(
                f"alignment_video: track {i} has {len(f)} frames for {idx.shape[1]} steps"
            )
    canvas = AlignmentCanvas(tracks, phase_names, labels)
    for t in range(idx.shape[1]):
        yield canvas.draw([f[t] for f in frames], idx[:, t])
