"""The frame-by-frame similarity (or distance) matrix of two videos as a labelled picture."""

from __future__ import annotations

import numpy as np

from .figure import new_figure, phase_boundaries, render

__all__ = ["similarity_matrix_image"]


def similarity_matrix_image(
    matrix: np.ndarray,
    *,
    row_name: str = "video A",
    col_name: str = "video B",
    value_name: str = "cosine similarity",
    higher_is_closer: bool = True,
    row_phases: np.ndarray | None = None,
    col_phases: np.ndarray | None = None,
    path: np.ndarray | None = None,
    path_name: str = "DTW path",
    title: str | None = None,
    size: tuple[int, int] = (640, 560),
    labels: bool = True,
) -> np.ndarray:
    """``matrix [N, M]`` (rows: frames of ``row_name``, columns: frames of ``col_name``) ->
    uint8 ``[H, W, 3]`` with ``(W, H) = size``.

    Frames on both axes with tick labels, the video names as axis titles and a colour bar
    named ``value_name``; the colour map runs so that close frames are bright whether the
    value is a similarity (``higher_is_closer``) or a distance. Phase boundaries of either
    video (``*_phases``, per-frame labels) are drawn as dashed lines; ``path`` (``[L, 2]``
    pairs ``(row, col)``, e.g. a DTW path or nearest neighbours) is drawn on top.
    ``labels=False`` gives the bare matrix (no axes, bar, lines' legend or title).
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or 0 in m.shape:
        raise ValueError(f"similarity_matrix_image: matrix must be [N, M] non-empty, got {m.shape}")
    n, k = m.shape
    for name, lab, length in (("row_phases", row_phases, n), ("col_phases", col_phases, k)):
        if lab is not None and np.asarray(lab).shape != (length,):
            raise ValueError(
                f"similarity_matrix_image: {name} must have one label per frame ({length}), "
                f"got shape {np.asarray(lab).shape}"
            )
    fig = new_figure(*size)
    if labels:
        ax = fig.add_axes((0.13, 0.11, 0.66, 0.8))
        cax = fig.add_axes((0.82, 0.11, 0.035, 0.8))
    else:
        ax = fig.add_axes((0, 0, 1, 1))
    cmap = "viridis" if higher_is_closer else "viridis_r"
    finite = m[np.isfinite(m)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    im = ax.imshow(
        m, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest",
        extent=(-0.5, k - 0.5, n - 0.5, -0.5),
    )
    ax.set_xlim(-0.5, k - 0.5)
    ax.set_ylim(n - 0.5, -0.5)
    handles = []
    if labels:
        for b in phase_boundaries(row_phases):
            line = ax.axhline(b - 0.5, color="white", lw=1.0, ls="--", alpha=0.9)
        for b in phase_boundaries(col_phases):
            line = ax.axvline(b - 0.5, color="white", lw=1.0, ls="--", alpha=0.9)
        if len(phase_boundaries(row_phases)) or len(phase_boundaries(col_phases)):
            line.set_label("phase boundary")
            handles.append(line)
    if path is not None:
        p = np.asarray(path).reshape(-1, 2)
        if len(p):
            if path_name.lower().startswith("nearest"):
                (trace,) = ax.plot(p[:, 1], p[:, 0], "o", color="#ff3030", ms=2.5, mew=0)
            else:
                (trace,) = ax.plot(p[:, 1], p[:, 0], "-", color="#ff3030", lw=1.6)
            trace.set_label(path_name)
            handles.append(trace)
    if not labels:
        ax.set_axis_off()
        return render(fig)
    ax.set_xlabel(f"{col_name}: frame")
    ax.set_ylabel(f"{row_name}: frame")
    ax.xaxis.set_label_position("bottom")
    bar = fig.colorbar(im, cax=cax)
    bar.set_label(f"{value_name} (bright: alike)")
    if handles:
        ax.legend(handles=handles, loc="lower left", fontsize=8, framealpha=0.8)
    ax.set_title(title or f"{row_name} vs {col_name}", fontsize=10)
    return render(fig)

