"""augment.py: per-view shared parameters, normalisation, shapes, device."""

from __future__ import annotations

import pytest
import torch

from mvf_lightning.data.augment import IMAGENET_MEAN, EvalTransform, TrainAugmentation

OFF = {"hflip_prob": 0.0, "jitter_prob": 0.0, "blur_prob": 0.0, "grayscale_prob": 0.0}


def _static_clips(b=2, v=2, t=4, h=40, w=48, seed=0):
    """Each video is one random image repeated over all frames and both views."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (b, 1, 1, 3, h, w), generator=g, dtype=torch.uint8)
    return image.expand(b, v, t, 3, h, w).contiguous()


def test_frames_of_a_view_share_parameters_views_differ():
    torch.manual_seed(0)
    aug = TrainAugmentation(crop_size=24, hflip_prob=0.5, jitter_prob=1.0, blur_prob=1.0)
    out = aug(_static_clips(b=3, v=2, t=5))
    assert out.shape == (3, 2, 5, 3, 24, 24) and out.dtype == torch.float32
    # identical input frames -> identical output frames within each view
    torch.testing.assert_close(out, out[:, :, :1].expand_as(out), rtol=0, atol=1e-5)
    # the two views of the same video get independent parameters
    for b in range(3):
        assert (out[b, 0, 0] - out[b, 1, 0]).abs().max() > 1e-2


def test_constant_mean_colour_normalises_to_zero():
    mean = torch.tensor(IMAGENET_MEAN) * 255
    frames = mean.round().to(torch.uint8).view(1, 1, 1, 3, 1, 1).expand(2, 2, 3, 3, 30, 30)
    out = TrainAugmentation(crop_size=16, **OFF)(frames)
    assert out.shape == (2, 2, 3, 3, 16, 16)
    assert out.abs().max() < 0.01
    ev = EvalTransform(crop_size=16)(frames[0, 0])
    assert ev.shape == (3, 3, 16, 16) and ev.abs().max() < 0.01


def test_custom_mean_std():
    frames = torch.full((1, 1, 2, 3, 8, 8), 255, dtype=torch.uint8)
    out = TrainAugmentation(crop_size=8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), **OFF)(frames)
    torch.testing.assert_close(out, torch.ones_like(out))


def test_eval_transform_resizes_shorter_side_and_centre_crops():
    # left half black, right half white, 20x40: after resize to 16x32, centre crop 16 keeps
    # the middle: columns 8..23 of the resized image -> half black, half white
    frame = torch.zeros(3, 20, 40, dtype=torch.uint8)
    frame[..., 20:] = 255
    out = EvalTransform(crop_size=16, mean=(0, 0, 0), std=(1, 1, 1))(frame[None])
    assert out.shape == (1, 3, 16, 16)
    assert out[0, :, :, :7].max() < 0.05 and out[0, :, :, 9:].min() > 0.95


def test_eval_transform_leading_dims_and_no_resize_when_size_matches():
    frames = torch.randint(0, 256, (2, 5, 3, 16, 16), dtype=torch.uint8)
    out = EvalTransform(crop_size=16, mean=(0, 0, 0), std=(1, 1, 1), chunk_size=3)(frames)
    torch.testing.assert_close(out, frames.float() / 255)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_device_preserved_cuda():
    frames = _static_clips(b=1, t=2).cuda()
    assert TrainAugmentation(crop_size=16)(frames).device == frames.device
    assert EvalTransform(crop_size=16)(frames[0, 0]).device == frames.device


def test_device_preserved_cpu():
    frames = _static_clips(b=1, t=2)
    assert TrainAugmentation(crop_size=16)(frames).device.type == "cpu"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hflip_prob": 1.5}, "hflip_prob"),
        ({"blur_kernel_size": 4}, "blur_kernel_size"),
        ({"mean": (0.5, 0.5)}, "mean"),
        ({"std": (0.0, 1.0, 1.0)}, "std"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainAugmentation(**kwargs)


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"\[B, V, T, 3, H, W\]"):
        TrainAugmentation(crop_size=8)(torch.zeros(2, 4, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[\.\.\., 3, H, W\]"):
        EvalTransform(crop_size=8)(torch.zeros(2, 4, 8, 8, dtype=torch.uint8))
