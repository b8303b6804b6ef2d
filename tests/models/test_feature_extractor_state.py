"""Packaged weights for a features-only backbone: no head tensors, so timm loads them without
its "Unexpected keys" warning, and the loaded network is the same."""

from __future__ import annotations

import logging

import pytest
import timm
import torch

from mvf_lightning.models.backbone import BackboneConfig, ImageBackbone
from mvf_lightning.models.weight_sources import feature_extractor_state, load_package_weights

LITE0 = "tf_efficientnet_lite0"
HEAD = {"conv_head.weight", "bn2.weight", "bn2.bias", "bn2.running_mean", "bn2.running_var",
        "bn2.num_batches_tracked", "classifier.weight", "classifier.bias"}


def test_features_only_lite0_weights_leave_out_exactly_the_head():
    full = load_package_weights("efficientnet_lite0", LITE0)
    trunk = load_package_weights("efficientnet_lite0", LITE0, features_only=True)
    assert set(full) - set(trunk) == HEAD
    model = timm.create_model(LITE0, pretrained=False, features_only=True, out_indices=(-1,))
    model.load_state_dict(trunk, strict=True)  # every tensor has its place, none is missing


def test_feature_wrappers_that_keep_names_lose_only_the_classifier():
    reference = timm.create_model("resnet18", pretrained=False)
    state = feature_extractor_state(reference.state_dict(), "resnet18")
    assert set(reference.state_dict()) - set(state) == {"fc.weight", "fc.bias"}


def test_tensors_no_model_has_are_kept_for_timm_to_report():
    state = {"not_a_layer.weight": torch.zeros(1), "conv_head.weight": torch.zeros(1)}
    assert list(feature_extractor_state(state, LITE0)) == ["not_a_layer.weight"]


def test_backbone_with_features_only_weights_loads_without_unexpected_keys(caplog):
    """The backbone asks for features-only weights for a CNN: the same tensors in the model,
    and timm has nothing to warn about."""
    with caplog.at_level(logging.WARNING, logger="timm"):
        backbone = ImageBackbone(
            BackboneConfig(name=LITE0, pretrained="package:efficientnet_lite0")
        )
    assert not [r for r in caplog.records if "Unexpected keys" in r.getMessage()]
    full = load_package_weights("efficientnet_lite0", LITE0)
    own = backbone.model.state_dict()
    assert own and all(torch.equal(v, full[k]) for k, v in own.items())


@pytest.mark.parametrize("features_only", [False, True])
def test_another_architecture_is_still_refused(features_only):
    with pytest.raises(ValueError, match="fit 'tf_efficientnet_lite0', not 'resnet18'"):
        load_package_weights("efficientnet_lite0", "resnet18", features_only=features_only)
