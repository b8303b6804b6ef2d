"""Spatial augmentation on the accelerator (Kornia), applied after the batch is transferred.

Workers only decode uint8 frames; these modules turn them into normalised float tensors
on whatever device the batch is on. Batched calls (Kornia's, and our per-view colour jitter)
cover every view of every video, with parameters shared by all frames of a view and
independent across views.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .color_jitter import ColorJitterPerView

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "EvalCrop",
    "EvalTransform",
    "TrainAugmentation",
    "TrainAugmentationConfig",
    "crop_and_resize",
    "random_resized_crop_boxes",
]

EvalCrop = Literal["native", "resize"]
"""Evaluation crop: ``"native"`` = a centre crop of the target size at the frame's own
resolution (the reference's); ``"resize"`` = resize the short side to it, then centre crop."""

_CHUNK_BYTES = {True: 8 << 20, False: 512 << 20}
"""Float32 bytes of uint8 frames converted at once for the crop, on a CPU (True) or not."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _check_stats(mean: Sequence[float], std: Sequence[float], who: str) -> None:
    if len(mean) != 3 or len(std) != 3:
        raise ConfigError(f"{who}: mean and std need 3 values (RGB), got {list(mean)}, {list(std)}")
    if min(std) <= 0:
        raise ConfigError(f"{who}: std must be > 0, got {list(std)}")


def _check_prob(name: str, p: float, who: str) -> None:
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"{who}: {name} must be a probability in [0, 1], got {p}")


def _check_pixel_dtype(frames: torch.Tensor, who: str) -> None:
    if frames.dtype != torch.uint8 and not frames.is_floating_point():
        raise TypeError(f"{who}: frames must be uint8 (or float in [0, 1]), got {frames.dtype}")


def _to_unit_float(frames: torch.Tensor, who: str) -> torch.Tensor:
    """uint8 in [0, 255] -> contiguous float32 in [0, 1]; float input is taken as [0, 1]."""
    _check_pixel_dtype(frames, who)
    frames = frames.contiguous()  # items are channel-first views of channel-last memory
    return frames.float().div_(255.0) if frames.dtype == torch.uint8 else frames.float()


@dataclass
class TrainAugmentationConfig:
    """Per-view spatial augmentation settings (MV-Former's defaults), given to the DataModule
    as ``data.augmentation``; crop size and normalisation are the DataModule's own."""

    crop_scale: tuple[float, float] = (0.8, 1.0)
    """Random-resized-crop area range, as a share of the frame."""
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    """Random-resized-crop aspect-ratio (width / height) range."""
    hflip_prob: float = 0.5
    jitter_prob: float = 0.8
    brightness: float = 0.8
    contrast: float = 0.8
    saturation: float = 0.8
    hue: float = 0.2
    blur_prob: float = 0.4
    blur_kernel_size: tuple[int, int] = (9, 5)
    """Gaussian blur kernel (height, width): the reference's 9 tall x 5 wide."""
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    grayscale_prob: float = 0.2


def random_resized_crop_boxes(
    num: int,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.8, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``num`` random-resized-crop boxes on a ``height x width`` frame -> int64 ``[num, 4]``
    as ``(top, left, box_height, box_width)``.

    torchvision's rule, for all boxes at once: up to ``attempts`` draws of an area share in
    ``scale`` and a log-uniform ratio in ``ratio``; the first draw that fits is placed at a
    uniformly random position; when none fits, the largest CENTRED region whose ratio is in
    range (a 640x360 frame always ends here: its centred 480x360 region).
    """
    area = float(height * width)
    shares = torch.empty(num, attempts, device=device).uniform_(float(scale[0]), float(scale[1]))
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(torch.empty(num, attempts, device=device).uniform_(log_lo, log_hi))
    target = shares.double() * area
    w = torch.round(torch.sqrt(target * aspect.double())).long()
    h = torch.round(torch.sqrt(target / aspect.double())).long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    # index of the first fitting attempt (0 if none fits); a one-hot row, so argmax is exact
    first = ((fits.int().cumsum(1) == 1) & fits).int().argmax(dim=1, keepdim=True)
    h = h.gather(1, first).squeeze(1)
    w = w.gather(1, first).squeeze(1)
    top = (torch.rand(num, device=device) * (height - h + 1)).long().clamp_(max=height - h)
    left = (torch.rand(num, device=device) * (width - w + 1)).long().clamp_(max=width - w)
    fb_h, fb_w = _centred_fallback(height, width, ratio)
    any_fit = fits.any(dim=1)
    h = torch.where(any_fit, h, fb_h)
    w = torch.where(any_fit, w, fb_w)
    top = torch.where(any_fit, top, (height - fb_h) // 2)
    left = torch.where(any_fit, left, (width - fb_w) // 2)
    return torch.stack([top, left, h, w], dim=1)


def _centred_fallback(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """(h, w) of the largest region whose width / height is within ``ratio`` (torchvision)."""
    frame_ratio = width / height
    if frame_ratio < min(ratio):
        return int(round(width / min(ratio))), width
    if frame_ratio > max(ratio):
        return height, int(round(height * max(ratio)))
    return height, width


def crop_and_resize(frames: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop each clip's box and resize it to ``size x size``, bilinear, in one batched call.

    ``frames`` float ``[N, T, C, H, W]``; ``boxes`` ``[N, 4]`` ``(top, left, h, w)``, one per
    clip, shared by its T frames. Equals ``F.interpolate(crop, size, mode="bilinear",
    align_corners=False)`` of the cropped region (no antialiasing), the reference's resize:
    the sampling positions are those of ``interpolate`` and, like it, clamped to the box's
    outermost pixel centres, so an upsampled box (Penn Action's 224 px frames) repeats its
    own edge pixels rather than reading the frame's pixels just outside it.
    """
    n, t, c, height, width = frames.shape
    top, left, h, w = boxes.to(frames.device, torch.float32).unbind(1)
    theta = torch.zeros(n, 2, 3, device=frames.device, dtype=torch.float32)
    theta[:, 0, 0] = w / width
    theta[:, 0, 2] = (2 * left + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * top + h) / height - 1
    # A clip's frames share its box: they are sampled as channels of one image, so each
    # sampling position's weights are computed once per clip.
    grid = F.affine_grid(theta, [n, t * c, size, size], align_corners=False)
    # Pixel centre j sits at (2 j + 1) / extent - 1 in grid units: clamp to the box's first
    # and last pixel centres in x (width) and y (height).
    lo = torch.stack([(2 * left + 1) / width - 1, (2 * top + 1) / height - 1], dim=1)
    hi = torch.stack([(2 * (left + w) - 1) / width - 1, (2 * (top + h) - 1) / height - 1], dim=1)
    grid = torch.maximum(torch.minimum(grid, hi.view(n, 1, 1, 2)), lo.view(n, 1, 1, 2))
    out = F.grid_sample(
        frames.reshape(n, t * c, height, width),
        grid,
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )
    return out.reshape(n, t, c, size, size)


class TrainAugmentation(nn.Module):
    """MV-Former view augmentation: uint8 ``[B, V, T, 3, H, W]`` -> float ``[B, V, T, 3, S, S]``.

    Random resized crop to ``crop_size`` (:func:`random_resized_crop_boxes`, with the
    reference's centred fallback), horizontal flip, colour jitter (:class:`ColorJitterPerView`:
    torchvision's, with a random operation order per view), Gaussian blur (fixed
    ``blur_kernel_size`` (height, width), random sigma), grayscale, then normalisation with
    ``mean``/``std``. Every frame of one view gets the same parameters; views and videos are
    independent. The keyword arguments after ``crop_size`` are those of
    :class:`TrainAugmentationConfig` (see :meth:`from_config`).
    """

    def __init__(
        self,
        crop_size: int = 224,
        crop_scale: tuple[float, float] = (0.8, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip_prob: float = 0.5,
        jitter_prob: float = 0.8,
        brightness: float = 0.8,
        contrast: float = 0.8,
        saturation: float = 0.8,
        hue: float = 0.2,
        blur_prob: float = 0.4,
        blur_kernel_size: int | tuple[int, int] = (9, 5),
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        grayscale_prob: float = 0.2,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        import kornia.augmentation as K

        who = type(self).__name__
        for name, p in [
            ("hflip_prob", hflip_prob),
            ("jitter_prob", jitter_prob),
            ("blur_prob", blur_prob),
            ("grayscale_prob", grayscale_prob),
        ]:
            _check_prob(name, p, who)
        _check_stats(mean, std, who)
        kernel = (
            (int(blur_kernel_size),) * 2
            if isinstance(blur_kernel_size, int)
            else tuple(int(k) for k in blur_kernel_size)
        )
        if len(kernel) != 2 or min(kernel) < 3 or any(k % 2 == 0 for k in kernel):
            raise ConfigError(
                f"{who}: blur_kernel_size must be odd sizes >= 3 (height, width), "
                f"got {blur_kernel_size}"
            )
        if not 0 < blur_sigma[0] <= blur_sigma[1]:
            raise ConfigError(f"{who}: blur_sigma must be (low, high) with 0 < low <= high")
        if not 0 < crop_scale[0] <= crop_scale[1] or not 0 < crop_ratio[0] <= crop_ratio[1]:
            raise ConfigError(
                f"{who}: crop_scale and crop_ratio must be (low, high) with 0 < low <= high, "
                f"got {crop_scale}, {crop_ratio}"
            )
        self.crop_size = int(crop_size)
        self.crop_scale = (float(crop_scale[0]), float(crop_scale[1]))
        self.crop_ratio = (float(crop_ratio[0]), float(crop_ratio[1]))
        # Colour jitter first: it is pixel-wise (its contrast mean is the whole frame's), so it
        # commutes with the flip; Kornia's own jitter shares one op order across the batch.
        self.jitter = (
            ColorJitterPerView(brightness, contrast, saturation, hue, p=jitter_prob)
            if jitter_prob > 0
            else None
        )
        steps: list[nn.Module] = []
        if hflip_prob > 0:
            steps.append(K.RandomHorizontalFlip(p=hflip_prob))
        if blur_prob > 0:
            steps.append(K.RandomGaussianBlur(kernel, tuple(blur_sigma), p=blur_prob))
        if grayscale_prob > 0:
            steps.append(K.RandomGrayscale(p=grayscale_prob))
        self.augment = (
            K.VideoSequential(*steps, data_format="BTCHW", same_on_frame=True) if steps else None
        )
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(3, 1, 1), False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(3, 1, 1), False)

    @classmethod
    def from_config(
        cls,
        config: TrainAugmentationConfig,
        crop_size: int = 224,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> TrainAugmentation:
        return cls(crop_size=crop_size, mean=mean, std=std, **dataclasses.asdict(config))

    def set_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Replace the normalisation statistics (e.g. with the backbone's own)."""
        _check_stats(mean, std, type(self).__name__)
        self.mean.copy_(torch.tensor(mean, dtype=torch.float32).view(3, 1, 1))
        self.std.copy_(torch.tensor(std, dtype=torch.float32).view(3, 1, 1))

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.ndim != 6 or frames.shape[3] != 3:
            raise ValueError(
                f"{type(self).__name__}: frames must be [B, V, T, 3, H, W], "
                f"got {list(frames.shape)}"
            )
        b, v, t, _, height, width = frames.shape
        _check_pixel_dtype(frames, type(self).__name__)
        clips = frames.flatten(0, 1)  # [B*V, T, 3, H, W]; channel-last memory from the loader
        boxes = random_resized_crop_boxes(
            b * v, height, width, self.crop_scale, self.crop_ratio, device=clips.device
        )
        size = self.crop_size
        out = torch.empty((b * v, t, 3, size, size), dtype=torch.float32, device=clips.device)
        # Float copies of a few frames at a time: a whole batch at full resolution would be a
        # fresh allocation (and page faults) per step on a CPU.
        frame_bytes = b * v * 3 * height * width * 4
        step = max(1, _CHUNK_BYTES[clips.device.type == "cpu"] // frame_bytes)
        for start in range(0, t, step):
            part = clips[:, start : start + step]
            chunk = torch.empty(part.shape, dtype=torch.float32, device=part.device)
            out[:, start : start + step] = crop_and_resize(chunk.copy_(part), boxes, size)
        if frames.dtype == torch.uint8:
            out.mul_(1.0 / 255.0)  # after the (linear) resampling, on the smaller tensor
        if self.jitter is not None:
            out = self.jitter(out)
        if self.augment is not None:
            out = self.augment(out)
        out = out.clamp_(0.0, 1.0).sub_(self.mean.to(out.device)).div_(self.std.to(out.device))
        return out.reshape(b, v, t, 3, size, size).contiguous()


class EvalTransform(nn.Module):
    """Evaluation: uint8 ``[..., 3, H, W]`` -> float ``[..., 3, S, S]``.

    ``crop="native"`` (the reference's): the centred ``crop_size`` square at the frame's own
    resolution, its offsets ``ceil((H - S) / 2)`` and ``ceil((W - S) / 2)`` as the reference's
    (frames must be at least that big).
    ``crop="resize"``: the shorter side is first resized to ``crop_size`` (bilinear,
    antialiased; skipped when it already matches), then centre-cropped. Then normalisation.
    Frames are processed in chunks of ``chunk_size`` so whole long videos do not need a float
    copy at full resolution.
    """

    def __init__(
        self,
        crop_size: int = 224,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        chunk_size: int = 256,
        crop: EvalCrop = "resize",
    ) -> None:
        super().__init__()
        _check_stats(mean, std, type(self).__name__)
        if crop not in ("native", "resize"):
            raise ConfigError(
                f"{type(self).__name__}: crop must be 'native' or 'resize', got {crop!r}"
            )
        self.crop = crop
        self.crop_size = int(crop_size)
        self.chunk_size = int(chunk_size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(3, 1, 1), False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(3, 1, 1), False)

    set_normalization = TrainAugmentation.set_normalization

    def _chunk(self, x: torch.Tensor) -> torch.Tensor:
        s = self.crop_size
        h, w = x.shape[-2:]
        if self.crop == "native":
            if h < s or w < s:
                raise ConfigError(
                    f"{type(self).__name__}: a native {s}x{s} centre crop needs frames of at "
                    f"least that size, got {h}x{w}; set data.eval_crop: resize (or decode_size)"
                )
            # ceil((h - s) / 2), as the reference's ``uniform_crop`` (not torchvision's round)
            top, left = (h - s + 1) // 2, (w - s + 1) // 2
            x = _to_unit_float(x[..., top : top + s, left : left + s], type(self).__name__)
            return (x - self.mean.to(x.device)) / self.std.to(x.device)
        x = _to_unit_float(x, type(self).__name__)
        if min(h, w) != s:
            scale = s / min(h, w)
            size = (max(s, round(h * scale)), max(s, round(w * scale)))
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
            x = x.clamp_(0.0, 1.0)
            h, w = size
        top, left = (h - s) // 2, (w - s) // 2
        x = x[..., top : top + s, left : left + s]
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    @torch.no_grad()
    def to_display(self, frames: torch.Tensor) -> np.ndarray:
        """Frames this transform made (``[N, 3, S, S]``) back to uint8 ``[N, S, S, 3]``."""
        x = frames.detach().float()
        x = x * self.std.to(x.device) + self.mean.to(x.device)
        return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.ndim < 3 or frames.shape[-3] != 3:
            raise ValueError(
                f"{type(self).__name__}: frames must be [..., 3, H, W], got {list(frames.shape)}"
            )
        lead = frames.shape[:-3]
        flat = frames.reshape(-1, *frames.shape[-3:])
        s = self.crop_size
        out = torch.empty((flat.shape[0], 3, s, s), dtype=torch.float32, device=frames.device)
        for i in range(0, flat.shape[0], self.chunk_size):
            out[i : i + self.chunk_size] = self._chunk(flat[i : i + self.chunk_size])
        return out.reshape(*lead, 3, s, s)
