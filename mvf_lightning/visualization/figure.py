"""Shared plumbing of the pictures: a matplotlib figure (Agg, no display) rendered to an array,
and the colours that tell phases and entity tokens apart."""

from __future__ import annotations

import numpy as np

__all__ = ["new_figure", "phase_boundaries", "render", "token_colors", "phase_colors"]


def new_figure(width_px: int, height_px: int, dpi: int = 100):
    """A figure exactly ``width_px`` x ``height_px`` pixels on the Agg canvas (never a window)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def render(fig) -> np.ndarray:
    """Draw ``fig`` and return its pixels as uint8 ``[H, W, 3]`` RGB."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def _palette(name: str, n: int) -> np.ndarray:
    from matplotlib import colormaps

    cmap = colormaps[name]
    return np.array([cmap(i % cmap.N)[:3] for i in range(n)], dtype=np.float64)


def token_colors(k: int) -> np.ndarray:
    """``[k, 3]`` RGB in [0, 1]: one clearly distinct colour per entity token."""
    return _palette("tab10", k)


def phase_colors(k: int) -> np.ndarray:
    """``[k, 3]`` RGB in [0, 1]: one colour per phase (labels ``0..k-1``)."""
    return _palette("Set2", k)


def phase_boundaries(labels: np.ndarray | None) -> np.ndarray:
    """Frame indices where a new phase starts (label differs from the previous frame)."""
    if labels is None:
        return np.zeros(0, dtype=np.int64)
    labels = np.asarray(labels).reshape(-1)
    return np.flatnonzero(labels[1:] != labels[:-1]) + 1
