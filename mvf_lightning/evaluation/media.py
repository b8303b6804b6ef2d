"""Images and videos for inspecting embeddings, rendered with numpy/torch only (no matplotlib).

All outputs are ``uint8`` RGB arrays, channels last, ready for W&B / TensorBoard /
an mp4 writer: a similarity matrix, attention heat-map overlays and a
nearest-neighbour alignment video.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "COLORMAPS",
    "alignment_video",
    "apply_colormap",
    "attention_overlay",
    "similarity_matrix_image",
]

# Anchor colours from dark to bright (luminance increases monotonically).
COLORMAPS: dict[str, np.ndarray] = {
    # viridis-like: dark purple -> blue -> teal -> green -> yellow
    "viridis": np.array(
        [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]],
        dtype=np.float64,
    ),
    # heat: black -> red -> orange -> yellow -> white
    "heat": np.array(
        [[0, 0, 0], [180, 20, 0], [255, 120, 0], [255, 220, 40], [255, 255, 255]],
        dtype=np.float64,
    ),
}


def _numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def apply_colormap(values: np.ndarray, cmap: str = "viridis") -> np.ndarray:
    """Map values in ``[0, 1]`` (clipped; NaN -> 0) to ``uint8`` RGB ``[..., 3]``."""
    if cmap not in COLORMAPS:
        raise ValueError(f"unknown colormap {cmap!r}; choose from {sorted(COLORMAPS)}")
    anchors = COLORMAPS[cmap]
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0).clip(0.0, 1.0)
    pos = v * (len(anchors) - 1)
    lo = np.minimum(np.floor(pos).astype(np.int64), len(anchors) - 2)
    frac = (pos - lo)[..., None]
    rgb = anchors[lo] * (1.0 - frac) + anchors[lo + 1] * frac
    return np.rint(rgb).clip(0, 255).astype(np.uint8)


def _rescale(x: np.ndarray, vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """Affinely map ``x`` to ``[0, 1]`` (min/max of ``x`` unless given); constant -> 0.5."""
    lo = float(np.nanmin(x)) if vmin is None else float(vmin)
    hi = float(np.nanmax(x)) if vmax is None else float(vmax)
    if not hi > lo:
        return np.full_like(x, 0.5, dtype=np.float64)
    return (x.astype(np.float64) - lo) / (hi - lo)


def similarity_matrix_image(
    emb_a: np.ndarray | torch.Tensor,
    emb_b: np.ndarray | torch.Tensor,
    cell_size: int | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "viridis",
) -> np.ndarray:
    """Colour-mapped cosine similarity of every frame of ``a`` (rows) with every frame of ``b``.

    Returns ``uint8 [N * cell, M * cell, 3]``; ``cell_size`` defaults to the largest
    integer keeping the longer side <= 512 (at least 1). Similarities are rescaled
    from ``[vmin, vmax]`` (default: the matrix's min/max) so that higher similarity is
    brighter.
    """
    a = _numpy(emb_a).astype(np.float64)
    b = _numpy(emb_b).astype(np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected [N, E] and [M, E] embeddings, got {a.shape} and {b.shape}")
    if a.shape[0] == 0 or b.shape[0] == 0:
        raise ValueError("similarity_matrix_image needs at least one frame on each side")
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    sim = a @ b.T
    img = apply_colormap(_rescale(sim, vmin, vmax), cmap)
    if cell_size is None:
        cell_size = max(1, 512 // max(sim.shape))
    if cell_size < 1:
        raise ValueError(f"cell_size must be >= 1, got {cell_size}")
    return np.repeat(np.repeat(img, cell_size, axis=0), cell_size, axis=1)


def _check_frames(frames: np.ndarray, name: str) -> np.ndarray:
    f = _numpy(frames)
    if f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 [N, H, W, 3], got {f.dtype} {f.shape}")
    return f


def attention_overlay(
    frames: np.ndarray | torch.Tensor,
    attention: np.ndarray | torch.Tensor,
    alpha: float = 0.5,
    cmap: str = "heat",
) -> np.ndarray:
    """Each frame beside one heat-map overlay per entity token: ``uint8 [N, H, W*(K+1), 3]``.

    ``attention`` is ``[N, K, h, w]`` or ``[N, K, S]`` with ``S = h * w`` square. Maps are
    bilinearly upsampled to the frame size, min-max normalised per frame and token
    (strongest attention -> bright end of the colormap) and blended with weight ``alpha``.
    """
    f = _check_frames(frames, "frames")
    att = torch.as_tensor(_numpy(attention), dtype=torch.float32)
    n, h, w, _ = f.shape
    if att.ndim == 3:
        side = int(round(att.shape[-1] ** 0.5))
        if side * side != att.shape[-1]:
            raise ValueError(f"attention [N, K, S] needs a square S, got S={att.shape[-1]}")
        att = att.reshape(att.shape[0], att.shape[1], side, side)
    if att.ndim != 4 or att.shape[0] != n:
        raise ValueError(
            f"attention must be [N, K, h, w] with N={n} (the frames), got {tuple(att.shape)}"
        )
    k = att.shape[1]
    up = torch.nn.functional.interpolate(att, size=(h, w), mode="bilinear", align_corners=False)
    flat = up.reshape(n, k, -1)
    lo = flat.amin(-1, keepdim=True)
    hi = flat.amax(-1, keepdim=True)
    norm = torch.where(hi > lo, (flat - lo) / (hi - lo).clamp_min(1e-12), torch.zeros_like(flat))
    heat = apply_colormap(norm.reshape(n, k, h, w).numpy(), cmap).astype(np.float64)
    base = f.astype(np.float64)[:, None]  # [N, 1, H, W, 3]
    blended = np.rint((1.0 - alpha) * base + alpha * heat).clip(0, 255).astype(np.uint8)
    panels = np.concatenate([f[:, None], blended], axis=1)  # [N, K+1, H, W, 3]
    return panels.transpose(0, 2, 1, 3, 4).reshape(n, h, w * (k + 1), 3)


def _resize_frames(frames: np.ndarray, h: int, w: int) -> np.ndarray:
    if frames.shape[1:3] == (h, w):
        return frames
    t = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    t = torch.nn.functional.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)
    return t.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def alignment_video(
    query_frames: np.ndarray | torch.Tensor,
    candidate_frames: np.ndarray | torch.Tensor,
    query_embs: np.ndarray | torch.Tensor,
    candidate_embs: np.ndarray | torch.Tensor,
) -> np.ndarray:
    """Each query frame beside its nearest candidate frame: ``uint8 [N, H, 2W, 3]``.

    Nearest by squared Euclidean distance between embeddings (as Kendall's tau uses;
    first index on ties). Candidate frames are resized to the query frame size.
    """
    qf = _check_frames(query_frames, "query_frames")
    cf = _check_frames(candidate_frames, "candidate_frames")
    qe = torch.as_tensor(_numpy(query_embs), dtype=torch.float64)
    ce = torch.as_tensor(_numpy(candidate_embs), dtype=torch.float64)
    if qe.ndim != 2 or ce.ndim != 2 or qe.shape[1] != ce.shape[1]:
        raise ValueError(
            f"expected [N, E] and [M, E] embeddings, got {tuple(qe.shape)} and {tuple(ce.shape)}"
        )
    if qe.shape[0] != qf.shape[0] or ce.shape[0] != cf.shape[0]:
        raise ValueError(
            f"frames and embeddings disagree: {qf.shape[0]} query frames vs {qe.shape[0]} "
            f"embeddings, {cf.shape[0]} candidate frames vs {ce.shape[0]} embeddings"
        )
    if ce.shape[0] == 0:
        raise ValueError("alignment_video needs at least one candidate frame")
    nn = torch.cdist(qe, ce).argmin(1).numpy()
    cf = _resize_frames(cf, qf.shape[1], qf.shape[2])
    return np.concatenate([qf, cf[nn]], axis=2)
