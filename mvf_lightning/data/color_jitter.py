"""Colour jitter per view, as torchvision's ``ColorJitter`` defines it, for a batch of clips.

Every view draws its own brightness, contrast, saturation and hue factors and its own random
order of the four operations (the reference applies torchvision's transform view by view);
all frames of a view share them. The whole batch is processed with a constant number of
tensor calls: at each of the four positions of the order, the views whose operation there is
the same are gathered and adjusted together. Kornia's ``ColorJitter`` draws one order per
batch and was 4x slower on a CPU here (``benchmarks/README.md``), hence this module.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..errors import ConfigError

__all__ = [
    "ColorJitterPerView",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "grayscale",
]

_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale


def _per_clip(factors: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Factors ``[N]`` -> shape ``[N, 1, ..., 1]`` broadcasting over clips ``x`` ``[N, ...]``."""
    return factors.to(x.device, x.dtype).view(-1, *([1] * (x.ndim - 1)))


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma of RGB images ``[..., 3, H, W]`` -> ``[..., 1, H, W]`` (torchvision's weights)."""
    r, g, b = x.unbind(dim=-3)
    luma = torch.add(r * _GRAY_WEIGHTS[0], g, alpha=_GRAY_WEIGHTS[1])
    return luma.add_(b, alpha=_GRAY_WEIGHTS[2]).unsqueeze(-3)


def adjust_brightness(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Scale clips ``[N, ..., 3, H, W]`` in [0, 1] by one factor per clip, then clamp."""
    return (x * _per_clip(factors, x)).clamp_(0.0, 1.0)


def adjust_contrast(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Blend each image with the mean of its own luma (torchvision), one factor per clip."""
    mean = grayscale(x).mean(dim=(-3, -2, -1), keepdim=True)
    return torch.lerp(mean, x, _per_clip(factors, x)).clamp_(0.0, 1.0)


def adjust_saturation(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Blend each pixel with its luma (torchvision), one factor per clip."""
    return torch.lerp(grayscale(x), x, _per_clip(factors, x)).clamp_(0.0, 1.0)


def adjust_hue(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of clips in [0, 1] by one factor per clip (in turns, [-0.5, 0.5]).

    torchvision's RGB -> HSV -> RGB round trip, written without materialising HSV: value ``v``
    and chroma ``c`` are unchanged by the rotation, and the output is
    ``v - c + c * rgb(h)`` with ``rgb`` the fully saturated colour of hue ``h`` (its
    piecewise-linear closed form). Branch-free arithmetic only: on a CPU, ``where``, ``%`` and
    comparisons cost 5-25x an addition here.
    """
    r, g, b = x.unbind(dim=-3)
    maxc = torch.maximum(torch.maximum(r, g), b)
    chroma = maxc - torch.minimum(torch.minimum(r, g), b)
    dr, dg, db = maxc - r, maxc - g, maxc - b  # >= 0, and 0 for the maximal channel(s)
    # which channel is maximal, with torchvision's priority on ties: red, then green, then blue
    not_r = torch.sign(dr)
    is_r = 1.0 - not_r
    is_b = not_r * torch.sign(dg)
    is_g = not_r - is_b
    divisor = chroma + (1.0 - torch.sign(chroma))  # chroma, or 1 for grey pixels
    sextant = (is_r * (db - dg) + is_g * (dr - db) + is_b * (dg - dr)) / divisor
    sextant += is_g * 2.0 + is_b * 4.0 + _per_clip(factors, sextant) * 6.0
    sextant -= torch.floor(sextant / 6.0) * 6.0  # into [0, 6)
    saturated = torch.stack(
        [(sextant - 3.0).abs_() - 1.0, 2.0 - (sextant - 2.0).abs_(), 2.0 - (sextant - 4.0).abs_()],
        dim=-3,
    ).clamp_(0.0, 1.0)
    return torch.addcmul((maxc - chroma).unsqueeze(-3), chroma.unsqueeze(-3), saturated)


_OPERATIONS: tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], ...] = (
    adjust_brightness,
    adjust_contrast,
    adjust_saturation,
    adjust_hue,
)


class ColorJitterPerView(nn.Module):
    """torchvision's ``RandomApply([ColorJitter(b, c, s, h)], p)`` for each clip of a batch.

    Clips ``[N, T, 3, H, W]`` (any dims between N and the channel) in [0, 1]. Factors are
    drawn as torchvision does: brightness, contrast and saturation uniform in
    ``[max(0, 1 - v), 1 + v]``, hue uniform in ``[-h, h]``; an operation whose strength is 0
    is skipped. The draws come from torch's CPU generator (no device synchronisation).
    """

    def __init__(
        self,
        brightness: float = 0.8,
        contrast: float = 0.8,
        saturation: float = 0.8,
        hue: float = 0.2,
        p: float = 0.8,
    ) -> None:
        super().__init__()
        who = type(self).__name__
        for name, value in (
            ("brightness", brightness),
            ("contrast", contrast),
            ("saturation", saturation),
        ):
            if value < 0:
                raise ConfigError(f"{who}: {name} must be >= 0, got {value}")
        if not 0.0 <= hue <= 0.5:
            raise ConfigError(f"{who}: hue must be in [0, 0.5], got {hue}")
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"{who}: p must be a probability in [0, 1], got {p}")
        self.ranges = [
            (max(0.0, 1.0 - v), 1.0 + v) if v > 0 else None
            for v in (float(brightness), float(contrast), float(saturation))
        ] + [(-float(hue), float(hue)) if hue > 0 else None]
        self.p = float(p)

    def draw(self, num: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Parameters for ``num`` clips: applied ``[num]`` bool, factors ``[num, 4]`` (in the
        order brightness, contrast, saturation, hue) and operation order ``[num, 4]``."""
        applied = torch.rand(num) < self.p
        factors = torch.rand(num, 4)
        for op, bounds in enumerate(self.ranges):
            if bounds is not None:
                factors[:, op] = bounds[0] + factors[:, op] * (bounds[1] - bounds[0])
        order = torch.rand(num, 4).argsort(dim=1)
        return applied, factors, order

    @torch.no_grad()
    def forward(
        self,
        clips: torch.Tensor,
        params: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        applied, factors, order = self.draw(clips.shape[0]) if params is None else params
        active = [op for op, bounds in enumerate(self.ranges) if bounds is not None]
        if not bool(applied.any()) or not active:
            return clips
        out = clips.clone()
        # Host-to-device copies without a synchronisation; the host decides which views go
        # together, so no device value is ever read back.
        on_device = factors.to(out.device, out.dtype, non_blocking=True)
        everyone = bool(applied.all())
        for position in range(4):
            for op in active:
                chosen = applied & (order[:, position] == op)
                if not bool(chosen.any()):
                    continue
                if everyone and bool(chosen.all()):
                    out = _OPERATIONS[op](out, on_device[:, op])
                    continue
                index = chosen.nonzero().squeeze(1).to(out.device, non_blocking=True)
                adjusted = _OPERATIONS[op](out.index_select(0, index), on_device[index, op])
                out.index_copy_(0, index, adjusted)
        return out
