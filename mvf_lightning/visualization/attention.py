"""LSTP attention of the entity tokens, overlaid on the frames the model saw."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .figure import new_figure, render, token_colors

__all__ = ["attention_image", "attention_maps"]


def attention_maps(attention: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[F, K, h, w]`` attention -> ``[F, K, height, width]`` in [0, 1]: bilinearly upsampled
    and min-max normalised per frame and token (a constant map becomes 0)."""
    att = torch.as_tensor(np.asarray(attention), dtype=torch.float32)
    if att.ndim != 4:
        raise ValueError(f"attention must be [F, K, h, w], got {tuple(att.shape)}")
    up = torch.nn.functional.interpolate(
        att, size=(height, width), mode="bilinear", align_corners=False
    )
    flat = up.flatten(2)
    lo, hi = flat.amin(-1, keepdim=True), flat.amax(-1, keepdim=True)
    norm = torch.where(hi > lo, (flat - lo) / (hi - lo).clamp_min(1e-12), torch.zeros_like(flat))
    return norm.reshape(up.shape).numpy()


def attention_image(
    frames: np.ndarray,
    attention: np.ndarray,
    frame_indices: Sequence[int] | None = None,
    *,
    video_name: str = "",
    panel_px: int = 160,
    alpha: float = 0.7,
    labels: bool = True,
) -> np.ndarray:
    """One row per frame: the frame, all entity tokens over it (each pixel in the colour of
    the token attending most, opacity = that attention), then one panel per token.

    ``frames`` uint8 ``[F, H, W, 3]`` (what the model saw), ``attention`` ``[F, K, h, w]``
    (spatial attention of each token over the feature grid); ``frame_indices`` label the rows
    (default ``0..F-1``). Returns uint8 ``[H', W', 3]``. ``labels=False`` leaves out the
    legend, titles and row labels.
    """
    f = np.asarray(frames)
    if f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [F, H, W, 3], got {f.dtype} {f.shape}")
    att = np.asarray(attention)
    if att.ndim != 4 or att.shape[0] != f.shape[0]:
        raise ValueError(
            f"attention must be [F, K, h, w] with F={f.shape[0]} (the frames), got {att.shape}"
        )
    n, h, w = f.shape[:3]
    k = att.shape[1]
    idx = list(range(n)) if frame_indices is None else [int(i) for i in frame_indices]
    if len(idx) != n:
        raise ValueError(f"frame_indices: {len(idx)} given for {n} frames")
    maps = attention_maps(att, h, w)  # [F, K, H, W]
    colors = token_colors(k)
    cols = k + 2
    pw, ph = panel_px, max(1, round(panel_px * h / w))
    top = 46 if labels else 0
    left = 70 if labels else 0
    width, height = left + cols * pw, top + n * ph + (18 if labels else 0)
    width, height = width + width % 2, height + height % 2
    fig = new_figure(width, height)
    base = f.astype(np.float64) / 255.0
    for r in range(n):
        strongest = maps[r].argmax(0)
        weight = maps[r].max(0)[..., None] * alpha
        panels = [base[r], (1 - weight) * base[r] + weight * colors[strongest]]
        for t in range(k):
            wt = maps[r, t][..., None] * alpha
            panels.append((1 - wt) * base[r] * 0.8 + wt * colors[t])
        for c, img in enumerate(panels):
            x0 = (left + c * pw) / width
            y0 = 1 - (top + (r + 1) * ph) / height
            ax = fig.add_axes((x0, y0, pw / width, ph / height))
            ax.imshow(np.clip(img, 0, 1), interpolation="bilinear", aspect="auto")
            ax.set_xticks([])
            ax.set_yticks([])
            if not labels:
                ax.set_axis_off()
            if labels and r == 0:
                name = ("frame", "all tokens")[c] if c < 2 else f"token {c - 1}"
                ax.set_title(name, fontsize=8, pad=2, color="black" if c < 2 else colors[c - 2])
            if labels and c == 0:
                ax.set_ylabel(f"frame {idx[r]}", fontsize=9)
    if labels:
        from matplotlib.patches import Patch

        handles = [Patch(color=colors[t], label=f"token {t + 1}") for t in range(k)]
        fig.legend(
            handles=handles, loc="upper center", ncol=min(k, 8), fontsize=8, frameon=False,
            bbox_to_anchor=(0.5, 1.0),
        )
        fig.text(
            0.5, 4 / height, f"{video_name}: LSTP attention of each entity token".strip(": "),
            ha="center", va="bottom", fontsize=8,
        )
    return render(fig)
