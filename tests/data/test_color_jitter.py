"""color_jitter.py: torchvision's colour-jitter definitions, per view, with a per-view order."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from mvf_lightning.data.augment import TrainAugmentation, random_resized_crop_boxes
from mvf_lightning.data.color_jitter import (
    ColorJitterPerView,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
)

TORCHVISION = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)


def _clips(n=4, t=3, h=10, w=12, seed=0) -> torch.Tensor:
    """Random clips with the pixels where HSV has branches: grey, black, white, channel ties."""
    x = torch.rand(n, t, 3, h, w, generator=torch.Generator().manual_seed(seed))
    x[0, 0, :, :2, :2] = 0.5  # grey
    x[0, 1, :, :2, :2] = 0.0  # black
    x[1, 0, :, :2, :2] = 1.0  # white
    x[1, :, 1] = x[1, :, 0]  # red == green everywhere in clip 1
    x[2, :, 2, :3] = x[2, :, 1, :3]  # green == blue on some rows
    x[3, :, 0, :, :4] = 1.0  # saturated red channel
    return x


def _torchvision_per_view(x, applied, factors, order):
    """The reference: torchvision's functions, view by view, in each view's own order."""
    views = []
    for n in range(x.shape[0]):
        view = x[n]
        if applied[n]:
            for op in order[n].tolist():
                view = TORCHVISION[op](view, float(factors[n, op]))
        views.append(view)
    return torch.stack(views)


@pytest.mark.parametrize(
    "ours, index", [(adjust_brightness, 0), (adjust_contrast, 1), (adjust_saturation, 2)]
)
@pytest.mark.parametrize("factors", [(0.0, 0.2, 1.0, 1.8), (0.5, 1.3, 0.9, 2.5)])
def test_blend_operations_equal_torchvision_per_clip(ours, index, factors):
    x = _clips()
    out = ours(x, torch.tensor(factors))
    expected = torch.stack([TORCHVISION[index](x[n], factors[n]) for n in range(4)])
    torch.testing.assert_close(out, expected, rtol=0, atol=2e-6)


@pytest.mark.parametrize("factors", [(-0.5, -0.2, 0.0, 0.5), (0.13, -0.07, 0.25, -0.499)])
def test_hue_rotation_equals_torchvision_hsv_round_trip(factors):
    x = _clips()
    out = adjust_hue(x, torch.tensor(factors))
    expected = torch.stack([TF.adjust_hue(x[n], factors[n]) for n in range(4)])
    torch.testing.assert_close(out, expected, rtol=0, atol=3e-6)


def test_hue_rotation_by_a_third_turn_cycles_the_primaries():
    red = torch.zeros(1, 1, 3, 1, 1)
    red[:, :, 0] = 1.0
    green = adjust_hue(red, torch.tensor([1 / 3]))
    torch.testing.assert_close(green.flatten(), torch.tensor([0.0, 1.0, 0.0]), atol=1e-6, rtol=0)


def test_jitter_equals_torchvision_applied_view_by_view_in_each_views_order():
    x = _clips(n=6)
    applied = torch.tensor([True, True, False, True, True, True])
    factors = torch.tensor(
        [[0.6, 1.4, 0.3, 0.1], [1.7, 0.5, 1.2, -0.2], [0.2, 0.2, 0.2, 0.2],
         [1.0, 1.8, 0.2, 0.05], [0.9, 0.8, 1.6, -0.15], [1.2, 1.1, 0.4, 0.19]]
    )
    order = torch.tensor(
        [[0, 1, 2, 3], [3, 2, 1, 0], [1, 0, 3, 2], [2, 3, 0, 1], [3, 0, 2, 1], [0, 1, 2, 3]]
    )
    out = ColorJitterPerView()(x, (applied, factors, order))
    expected = _torchvision_per_view(x, applied, factors, order)
    torch.testing.assert_close(out, expected, rtol=0, atol=3e-6)
    assert torch.equal(out[2], x[2])  # a view the jitter was not applied to is untouched


def test_every_view_draws_its_own_order_and_factors_in_torchvisions_ranges():
    torch.manual_seed(0)
    applied, factors, order = ColorJitterPerView(0.8, 0.8, 0.8, 0.2, p=0.8).draw(20_000)
    # a permutation of the four operations per view, each operation first a quarter of the time
    assert torch.equal(order.sort(dim=1).values, torch.arange(4).expand(20_000, 4))
    first = torch.bincount(order[:, 0], minlength=4).float() / 20_000
    assert (first - 0.25).abs().max() < 0.015
    # two views side by side disagree on the order as often as independent draws do (23/24)
    differ = (order[0::2] != order[1::2]).any(dim=1).float().mean()
    assert abs(differ - 23 / 24) < 0.01
    assert abs(applied.float().mean() - 0.8) < 0.015
    for op, (lo, hi) in enumerate([(0.2, 1.8)] * 3 + [(-0.2, 0.2)]):
        assert lo <= factors[:, op].min() < lo + 0.01 and hi - 0.01 < factors[:, op].max() <= hi


def test_an_operation_of_strength_zero_is_never_applied():
    x = _clips()
    jitter = ColorJitterPerView(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.2, p=1.0)
    torch.manual_seed(1)
    applied, factors, order = jitter.draw(4)
    out = jitter(x, (applied, factors, order))
    torch.testing.assert_close(out, adjust_hue(x, factors[:, 3]), rtol=0, atol=0)


def test_probability_zero_returns_the_clips_unchanged():
    x = _clips()
    assert torch.equal(ColorJitterPerView(p=0.0)(x), x)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"hue": 0.6}, "hue must be in [0, 0.5]"), ({"brightness": -1.0}, "brightness must be >= 0"),
     ({"p": 1.5}, "p must be a probability")],
)
def test_bad_strengths_are_refused_with_the_argument_named(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ColorJitterPerView(**kwargs)


def test_training_augmentation_jitters_each_view_as_torchvision_does_in_its_own_order():
    """TrainAugmentation with only the jitter on (a full-frame crop at the frame's own size is
    the identity) equals torchvision's jitter applied view by view with the same draws."""
    frames = (_clips(n=8, t=2, h=12, w=12, seed=4) * 255).round().to(torch.uint8)
    frames = frames.view(4, 2, 2, 3, 12, 12)
    aug = TrainAugmentation(crop_size=12, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                            hflip_prob=0.0, blur_prob=0.0, grayscale_prob=0.0, jitter_prob=0.8,
                            mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    torch.manual_seed(5)
    out = aug(frames)
    torch.manual_seed(5)
    random_resized_crop_boxes(8, 12, 12, (1.0, 1.0), (1.0, 1.0))  # the crop's draws
    applied, factors, order = aug.jitter.draw(8)
    assert len({tuple(o) for o in order[applied].tolist()}) > 1  # orders differ between views
    expected = _torchvision_per_view(frames.flatten(0, 1).float() / 255, applied, factors, order)
    torch.testing.assert_close(out.flatten(0, 1), expected, rtol=0, atol=1e-5)
