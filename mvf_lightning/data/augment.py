"""Spatial augmentation on the accelerator (Kornia), applied after the batch is transferred.

Workers only decode uint8 frames; these modules turn them into normalised float tensors
on whatever device the batch is on. One batched Kornia call covers every view of every
video, with parameters shared by all frames of a view and independent across views.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "EvalTransform", "TrainAugmentation"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _check_stats(mean: Sequence[float], std: Sequence[float], who: str) -> None:
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"{who}: mean and std need 3 values (RGB), got {list(mean)}, {list(std)}")
    if min(std) <= 0:
        raise ValueError(f"{who}: std must be > 0, got {list(std)}")


def _check_prob(name: str, p: float, who: str) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{who}: {name} must be a probability in [0, 1], got {p}")


def _to_unit_float(frames: torch.Tensor, who: str) -> torch.Tensor:
    """uint8 in [0, 255] -> contiguous float32 in [0, 1]; float input is taken as [0, 1]."""
    frames = frames.contiguous()  # items are channel-first views of channel-last memory
    if frames.dtype == torch.uint8:
        return frames.float().div_(255.0)
    if frames.is_floating_point():
        return frames.float()
    raise TypeError(f"{who}: frames must be uint8 (or float in [0, 1]), got {frames.dtype}")


class TrainAugmentation(nn.Module):
    """MV-Former view augmentation: uint8 ``[B, V, T, 3, H, W]`` -> float ``[B, V, T, 3, S, S]``.

    Random resized crop to ``crop_size``, horizontal flip, colour jitter, Gaussian blur,
    grayscale, then normalisation with ``mean``/``std``. Every frame of one view gets the
    same parameters; views and videos are independent. Kornia cannot draw the blur kernel
    size per sample, so the kernel is fixed (``blur_kernel_size``, default 9, wide enough
    for sigma up to 2) and only sigma is random.
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
        blur_kernel_size: int = 9,
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
        if blur_kernel_size < 3 or blur_kernel_size % 2 == 0:
            raise ValueError(
                f"{who}: blur_kernel_size must be odd and >= 3, got {blur_kernel_size}"
            )
        if not 0 < blur_sigma[0] <= blur_sigma[1]:
            raise ValueError(f"{who}: blur_sigma must be (low, high) with 0 < low <= high")
        self.crop_size = int(crop_size)
        steps: list[nn.Module] = [
            K.RandomResizedCrop(
                (self.crop_size, self.crop_size),
                scale=tuple(crop_scale),
                ratio=tuple(crop_ratio),
                cropping_mode="resample",  # one batched warp instead of a per-sample loop
            )
        ]
        if hflip_prob > 0:
            steps.append(K.RandomHorizontalFlip(p=hflip_prob))
        if jitter_prob > 0:
            steps.append(K.ColorJitter(brightness, contrast, saturation, hue, p=jitter_prob))
        if blur_prob > 0:
            steps.append(
                K.RandomGaussianBlur(
                    (blur_kernel_size, blur_kernel_size), tuple(blur_sigma), p=blur_prob
                )
            )
        if grayscale_prob > 0:
            steps.append(K.RandomGrayscale(p=grayscale_prob))
        self.augment = K.VideoSequential(*steps, data_format="BTCHW", same_on_frame=True)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(3, 1, 1), False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(3, 1, 1), False)

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.ndim != 6 or frames.shape[3] != 3:
            raise ValueError(
                f"{type(self).__name__}: frames must be [B, V, T, 3, H, W], "
                f"got {list(frames.shape)}"
            )
        b, v, t = frames.shape[:3]
        clips = _to_unit_float(frames, type(self).__name__).flatten(0, 1)  # [B*V, T, 3, H, W]
        out = self.augment(clips).clamp_(0.0, 1.0)
        mean = self.mean.to(out.device)
        std = self.std.to(out.device)
        out = (out - mean) / std
        return out.reshape(b, v, t, 3, self.crop_size, self.crop_size).contiguous()


class EvalTransform(nn.Module):
    """Evaluation: uint8 ``[..., 3, H, W]`` -> float ``[..., 3, S, S]``.

    Resizes the shorter side to ``crop_size`` (bilinear, antialiased; skipped when it already
    matches), centre-crops ``crop_size`` and normalises. Frames are processed in chunks of
    ``chunk_size`` so whole long videos do not need a float copy at full resolution.
    """

    def __init__(
        self,
        crop_size: int = 224,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        chunk_size: int = 256,
    ) -> None:
        super().__init__()
        _check_stats(mean, std, type(self).__name__)
        self.crop_size = int(crop_size)
        self.chunk_size = int(chunk_size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(3, 1, 1), False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(3, 1, 1), False)

    def _chunk(self, x: torch.Tensor) -> torch.Tensor:
        s = self.crop_size
        x = _to_unit_float(x, type(self).__name__)
        h, w = x.shape[-2:]
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
