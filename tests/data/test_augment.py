"""augment.py: per-view shared parameters, normalisation, shapes, device."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mvf_lightning.data.augment import (
    IMAGENET_MEAN,
    EvalTransform,
    TrainAugmentation,
    TrainAugmentationConfig,
    random_resized_crop_boxes,
)

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


# ---------------------------------------------------------------- crops on FineGym-sized frames
def _coordinate_frames(h=360, w=640, t=2):
    """uint8 [1, 2, t, 3, h, w]: channel 0 = column % 256, 1 = row % 256, 2 = column // 256 * 80."""
    rows = torch.arange(h).view(h, 1).expand(h, w)
    cols = torch.arange(w).view(1, w).expand(h, w)
    image = torch.stack([cols % 256, rows % 256, cols // 256 * 80]).to(torch.uint8)
    return image.view(1, 1, 1, 3, h, w).expand(1, 2, t, 3, h, w).contiguous()


def test_crop_boxes_on_640x360_always_fall_back_to_the_centred_480x360_region():
    # area share >= 0.8 of 640 x 360 with width/height <= 4/3 needs a height > 360: no
    # attempt ever fits, and the reference's fallback is the centred 480 x 360 region
    torch.manual_seed(0)
    boxes = random_resized_crop_boxes(2000, 360, 640)
    assert boxes.tolist() == [[0, 80, 360, 480]] * 2000


def test_crop_boxes_that_fit_follow_the_drawn_scale_and_ratio():
    torch.manual_seed(0)
    boxes = random_resized_crop_boxes(4000, 224, 224)  # Penn Action's stored frames
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + h <= 224).all() and (left + w <= 224).all()
    share = (h * w).double() / 224**2
    assert share.min() > 0.79 and share.max() <= 1.0
    ratio = w.double() / h
    assert ratio.min() > 0.75 - 0.01 and ratio.max() < 4 / 3 + 0.01
    assert len({(int(a), int(b)) for a, b in zip(top, left)}) > 100  # random positions
    # a tall frame (ratio below 3/4) falls back to its full width, centred vertically
    torch.manual_seed(0)
    assert random_resized_crop_boxes(10, 1000, 100).tolist() == [[433, 0, 133, 100]] * 10


def test_training_on_640x360_frames_crops_the_centred_480x360_region():
    frames = _coordinate_frames()
    torch.manual_seed(0)
    out = TrainAugmentation(crop_size=224, mean=(0, 0, 0), std=(1, 1, 1), **OFF)(frames)
    region = frames[0, 0, :1, :, 0:360, 80:560].float() / 255
    want = F.interpolate(region, size=(224, 224), mode="bilinear", align_corners=False)
    for v in range(2):
        for t in range(2):
            torch.testing.assert_close(out[0, v, t], want[0], rtol=0, atol=1e-4)  # << 1/255


def test_evaluation_native_crop_sees_the_pixels_of_a_hand_computed_centre_crop():
    frames = _coordinate_frames()[0, 0]  # [2, 3, 360, 640]
    out = EvalTransform(crop_size=224, mean=(0, 0, 0), std=(1, 1, 1), crop="native")(frames)
    # centre 224 x 224 of 640 x 360: rows (360 - 224) / 2 = 68 .., columns (640 - 224) / 2 = 208 ..
    torch.testing.assert_close(out, frames[:, :, 68:292, 208:432].float() / 255, rtol=0, atol=0)
    assert out[0, 0, 0, 0] * 255 == 208 and out[0, 1, 0, 0] * 255 == 68
    # the other choice resizes 640 x 360 to 398 x 224 first, so it sees a wider field
    resized = EvalTransform(crop_size=224, mean=(0, 0, 0), std=(1, 1, 1), crop="resize")(frames)
    assert not torch.allclose(resized, out)
    with pytest.raises(ValueError, match=r"native 224x224 centre crop.*64x64.*eval_crop"):
        EvalTransform(crop_size=224, crop="native")(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_evaluation_native_crop_offsets_round_up_as_the_references():
    """The reference's ``uniform_crop`` places the crop at ceil((H - S) / 2), ceil((W - S) / 2):
    on 227 x 229 frames rows 2.. and columns 3.. (Python's round would give column 2)."""
    rows = torch.arange(227).view(1, 1, 227, 1).expand(1, 3, 227, 229)
    cols = torch.arange(229).view(1, 1, 1, 229).expand(1, 3, 227, 229)
    frames = torch.where(torch.arange(3).view(1, 3, 1, 1) == 0, cols, rows).to(torch.uint8)
    out = EvalTransform(crop_size=224, mean=(0, 0, 0), std=(1, 1, 1), crop="native")(frames)
    assert round(out[0, 0, 0, 0].item() * 255) == 3  # first column
    assert round(out[0, 1, 0, 0].item() * 255) == 2  # first row
    torch.testing.assert_close(out, frames[:, :, 2:226, 3:227].float() / 255, rtol=0, atol=0)


def test_upsampled_boxes_equal_interpolate_of_the_box_also_at_its_border():
    """Penn Action's crops (0.8-1.0 of a 224 px frame, resized to 224) are upsampled: every
    output pixel, the outermost ring included, equals ``F.interpolate`` of the cropped box
    (which repeats the box's edge pixels), not a sample of the pixels just outside it."""
    g = torch.Generator().manual_seed(3)
    frames = torch.randint(0, 256, (2, 2, 2, 3, 40, 40), generator=g, dtype=torch.uint8)
    aug = TrainAugmentation(
        crop_size=40, crop_scale=(0.5, 0.8), mean=(0, 0, 0), std=(1, 1, 1), **OFF
    )
    torch.manual_seed(4)
    out = aug(frames).flatten(0, 1)
    torch.manual_seed(4)
    boxes = random_resized_crop_boxes(4, 40, 40, (0.5, 0.8), (3 / 4, 4 / 3))
    # some boxes lie inside the frame: there the pixels just outside a box exist and differ
    assert any(t > 0 and le > 0 and t + h < 40 and le + w < 40 for t, le, h, w in boxes.tolist())
    clips = frames.flatten(0, 1).float() / 255
    for n, (top, left, h, w) in enumerate(boxes.tolist()):
        region = clips[n, :, :, top : top + h, left : left + w]
        want = F.interpolate(region, size=(40, 40), mode="bilinear", align_corners=False)
        torch.testing.assert_close(out[n], want, rtol=0, atol=1e-5)


def test_blur_kernel_is_9_tall_and_5_wide():
    frame = torch.zeros(1, 1, 1, 3, 31, 31, dtype=torch.uint8)
    frame[..., 15, 15] = 255
    aug = TrainAugmentation(
        crop_size=31, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip_prob=0.0,
        jitter_prob=0.0, grayscale_prob=0.0, blur_prob=1.0, blur_sigma=(2.0, 2.0),
        mean=(0, 0, 0), std=(1, 1, 1),
    )
    out = aug(frame)[0, 0, 0, 0]
    rows, cols = torch.nonzero(out > 1e-6, as_tuple=True)
    assert (rows.min().item(), rows.max().item()) == (11, 19)  # 15 -+ 4
    assert (cols.min().item(), cols.max().item()) == (13, 17)  # 15 -+ 2


def test_augmentation_config_builds_the_same_module():
    config = TrainAugmentationConfig(hflip_prob=0.0, jitter_prob=0.0)
    aug = TrainAugmentation.from_config(config, crop_size=16, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert aug.crop_size == 16 and aug.mean.flatten().tolist() == [0.5] * 3
    kinds = [type(m).__name__ for m in aug.augment]
    assert kinds == ["RandomGaussianBlur", "RandomGrayscale"]


def test_crop_boxes_equal_torchvisions_loop_on_the_same_draws():
    """The vectorised boxes equal a per-sample, attempt-by-attempt torchvision-style loop fed
    with the same random numbers (frame and scales chosen so that some samples fit on a later
    attempt and some never fit)."""
    import math

    n, height, width, scale, ratio = 300, 100, 300, (0.08, 1.0), (3 / 4, 4 / 3)
    torch.manual_seed(5)
    got = random_resized_crop_boxes(n, height, width, scale, ratio)
    torch.manual_seed(5)
    shares = torch.empty(n, 10).uniform_(*scale)
    aspect = torch.exp(torch.empty(n, 10).uniform_(math.log(ratio[0]), math.log(ratio[1])))
    u_top, u_left = torch.rand(n), torch.rand(n)
    want, attempts_used = [], []
    for i in range(n):
        for k in range(10):
            target = float(shares[i, k]) * height * width
            w = int(round(math.sqrt(target * float(aspect[i, k]))))
            h = int(round(math.sqrt(target / float(aspect[i, k]))))
            if 0 < w <= width and 0 < h <= height:
                top = int(float(u_top[i]) * (height - h + 1))
                left = int(float(u_left[i]) * (width - w + 1))
                want.append([top, left, h, w])
                attempts_used.append(k)
                break
        else:  # wider than 4/3: full height, width 4/3 of it, centred
            want.append([0, (300 - 133) // 2, 100, 133])
            attempts_used.append(None)
    assert got.tolist() == want
    assert None in attempts_used and any(k not in (0, None) for k in attempts_used)


@pytest.mark.parametrize("chunk_bytes", [1, 1 << 30])
def test_each_view_is_its_own_box_resized_whatever_the_conversion_chunks(monkeypatch, chunk_bytes):
    """Views get different boxes; with the uint8 -> float conversion done one frame at a time
    (CPU chunks) or all at once, each frame equals the bilinear resize of its view's box, on
    channel-last input memory as the loader delivers it."""
    from mvf_lightning.data import augment

    monkeypatch.setattr(augment, "_CHUNK_BYTES", {True: chunk_bytes, False: chunk_bytes})
    g = torch.Generator().manual_seed(2)
    frames = torch.randint(0, 256, (2, 2, 3, 30, 40, 3), generator=g, dtype=torch.uint8)
    frames = frames.permute(0, 1, 2, 5, 3, 4)  # [B, V, T, 3, H, W] over [B, V, T, H, W, 3]
    aug = TrainAugmentation(crop_size=16, crop_scale=(0.3, 0.9), mean=(0, 0, 0), std=(1, 1, 1),
                            **OFF)
    torch.manual_seed(7)
    out = aug(frames)
    torch.manual_seed(7)
    boxes = random_resized_crop_boxes(4, 30, 40, (0.3, 0.9), (3 / 4, 4 / 3))
    assert len({tuple(b) for b in boxes.tolist()}) == 4
    clips = frames.flatten(0, 1).float() / 255
    for n, (top, left, h, w) in enumerate(boxes.tolist()):
        region = clips[n, :, :, top : top + h, left : left + w]
        want = F.interpolate(region, size=(16, 16), mode="bilinear", align_corners=False)
        torch.testing.assert_close(out.flatten(0, 1)[n], want, rtol=0, atol=1e-5)
