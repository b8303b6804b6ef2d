"""The loss registry: names, class paths and checkpoint dicts -> loss objects."""

from __future__ import annotations

import pytest

from mvf_lightning.losses import (
    LOSSES,
    SCL,
    TCC,
    TCN,
    Classification,
    SequenceLoss,
    build_loss,
    get_loss,
)


def test_registry_names_each_loss_class():
    assert {"scl": SCL, "tcc": TCC, "tcn": TCN, "classification": Classification} == LOSSES
    assert get_loss("scl") is SCL and get_loss("TCC") is TCC
    assert get_loss("tcn") is TCN and get_loss("Classification") is Classification
    names = r"\['classification', 'scl', 'tcc', 'tcn'\]"
    with pytest.raises(ValueError, match=rf"unknown loss 'nce'; valid names: {names}"):
        get_loss("nce")


def test_config_round_trips_through_plain_values():
    loss = TCC(loss_type="regression_huber", similarity="cosine", huber_delta=0.5)
    config = loss.config()
    assert config == {
        "class_path": "mvf_lightning.losses.temporal_cycle_consistency.TCC",
        "init_args": {
            "views": 1, "embedding": "raw",
            "loss_type": "regression_huber", "similarity": "cosine", "temperature": 0.1,
            "label_smoothing": 0.1, "variance_lambda": 0.001, "huber_delta": 0.5,
            "normalize_indices": True,
        },
    }
    rebuilt = build_loss(config)
    assert isinstance(rebuilt, TCC) and rebuilt.config() == config
    assert repr(rebuilt).startswith("TCC(views=1, embedding='raw', loss_type='regression_huber'")


@pytest.mark.parametrize(
    ("spec", "cls", "args"),
    [
        (None, SCL, {"temperature": 0.1}),
        ("tcc", TCC, {"loss_type": "regression_mse_var"}),
        ({"class_path": "TCC", "init_args": {"temperature": 0.2}}, TCC, {"temperature": 0.2}),
        ({"class_path": "mvf_lightning.losses.SCL"}, SCL, {"negatives": "single_noself"}),
        # checkpoints written before losses took their own arguments
        ({"name": "scl", "temperature": 0.1, "label_variance": 5.0, "negatives": "batch",
          "kwargs": {}}, SCL, {"label_variance": 5.0, "negatives": "batch"}),
        ({"negatives": "batch_noself"}, SCL, {"negatives": "batch_noself"}),
    ],
)
def test_build_loss_accepts_every_config_form(spec, cls, args):
    loss = build_loss(spec)
    assert type(loss) is cls
    for key, value in args.items():
        assert getattr(loss, key) == value


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"class_path": "TCC", "init_args": {"negatives": "batch"}},
         "TCC: .*unexpected keyword argument 'negatives'"),
        ({"class_path": "collections.OrderedDict"}, "'collections.OrderedDict' is not a loss"),
        ({"class_path": "NCE"},
         r"'NCE' is not a loss class; use one of \['Classification', 'SCL', 'TCC', 'TCN'\]"),
        ({"class_path": "SCL", "init": {}}, r"unknown key\(s\) \['init'\]"),
    ],
)
def test_bad_loss_configs_are_named(spec, message):
    with pytest.raises(ValueError, match=message):
        build_loss(spec)


class Zero(SequenceLoss):
    """A third loss defined outside the package: found by its import path."""

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight

    def __call__(self, embs, steps, seq_lens, masks):
        return embs.sum() * 0 * self.weight


def test_a_new_loss_needs_no_change_outside_its_file():
    loss = build_loss({"class_path": f"{__name__}.Zero", "init_args": {"weight": 2.0}})
    assert type(loss).__name__ == "Zero" and loss.init_args() == {"weight": 2.0}
    assert build_loss(loss) is loss
