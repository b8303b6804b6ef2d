"""The reference's other training methods as losses: TCN's n-pairs loss against its definition
written out per video and per anchor, supervised classification against a hand-computed
cross-entropy, TCC on one view of same-action videos, and what each asks of the batches."""

from __future__ import annotations

import math

import pytest
import torch

from mvf_lightning.data.contract import TrainingBatches
from mvf_lightning.losses import (
    LOSSES,
    TCC,
    TCN,
    Classification,
    build_loss,
    phase_classification_loss,
    temporal_cycle_consistency_loss,
    time_contrastive_loss,
)
from tests.losses.test_temporal_cycle_consistency import reference_tcc


def tcn_by_definition(embs: list[list[list[float]]], reg_lambda: float) -> float:
    """Per video: anchors at even positions, positives at odd ones; for anchor i the
    cross-entropy of ``[a_i . p_j for j]`` with label i (no temperature), averaged over the
    anchors, plus ``0.25 * reg_lambda * (mean ||a||^2 + mean ||p||^2)``; mean over videos."""
    losses = []
    for video in embs:
        anchors, positives = video[0::2], video[1::2]
        xent = 0.0
        for i, a in enumerate(anchors):
            logits = [sum(x * y for x, y in zip(a, p)) for p in positives]
            top = max(logits)
            lse = top + math.log(sum(math.exp(v - top) for v in logits))
            xent += lse - logits[i]
        xent /= len(anchors)
        sq_a = sum(sum(x * x for x in a) for a in anchors) / len(anchors)
        sq_p = sum(sum(x * x for x in p) for p in positives) / len(positives)
        losses.append(xent + 0.25 * reg_lambda * (sq_a + sq_p))
    return sum(losses) / len(losses)


@pytest.mark.parametrize(("b", "n", "d", "reg_lambda"), [(2, 4, 3, 0.002), (3, 6, 8, 0.5)])
def test_time_contrastive_loss_equals_its_definition_in_float64(b, n, d, reg_lambda):
    embs = torch.randn(b, 2 * n, d, generator=torch.Generator().manual_seed(b), dtype=torch.float64)
    loss = time_contrastive_loss(embs, reg_lambda=reg_lambda)
    assert loss.dtype == torch.float64
    expected = tcn_by_definition(embs.tolist(), reg_lambda)
    assert abs(float(loss) - expected) <= 1e-12 * abs(expected)


def test_time_contrastive_loss_rewards_matching_pairs_and_rejects_odd_layouts():
    anchors = torch.eye(4, dtype=torch.float64) * 5
    matched = torch.stack([anchors, anchors], 1).reshape(1, 8, 4)
    shuffled = torch.stack([anchors, anchors.roll(1, 0)], 1).reshape(1, 8, 4)
    assert time_contrastive_loss(matched) < time_contrastive_loss(shuffled)
    with pytest.raises(ValueError, match=r"\[B, 2n, D\].*\[1, 7, 4\]"):
        time_contrastive_loss(matched[:, :7])


def test_tcn_class_trains_on_normalized_single_views_of_anchor_positive_pairs():
    loss = TCN()
    assert (loss.reg_lambda, loss.positive_window, loss.embedding) == (0.002, 5, "normalized")
    assert loss.batches() == TrainingBatches(views=1, frames="offset_uniform", positive_window=5)
    embs = torch.randn(2, 1, 6, 4, dtype=torch.float64)
    steps = torch.zeros(2, 1, 6, dtype=torch.long)
    masks = torch.ones(2, 1, 6, dtype=torch.bool)
    lens = torch.full((2, 1), 30)
    assert float(loss(embs, steps, lens, masks)) == pytest.approx(
        float(time_contrastive_loss(embs[:, 0])), rel=1e-12)
    with pytest.raises(ValueError, match=r"embs must have shape \[B, 1, T, D\]"):
        loss(embs.expand(2, 2, 6, 4), steps, lens, masks)
    with pytest.raises(ValueError, match="num_frames must be even"):
        loss(embs[:, :, :5], steps[:, :, :5], lens, masks[:, :, :5])
    with pytest.raises(ValueError, match="positive_window must be >= 1, got 0"):
        TCN(positive_window=0)


def test_phase_classification_loss_is_the_masked_mean_cross_entropy_of_labelled_frames():
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]]],
                          dtype=torch.float64)
    labels = torch.tensor([[0, 2, -1, 1]])
    masks = torch.tensor([[True, True, True, False]])

    def xent(row: list[float], label: int) -> float:
        return math.log(sum(math.exp(v) for v in row)) - row[label]

    expected = (xent([2.0, 0.0, 0.0], 0) + xent([0.0, 1.0, 0.0], 2)) / 2  # -1 and masked out
    assert float(phase_classification_loss(logits, labels, masks)) == pytest.approx(expected,
                                                                                   rel=1e-12)
    nothing = phase_classification_loss(logits, torch.full_like(labels, -1), masks)
    assert float(nothing) == 0.0


def test_classification_class_trains_its_linear_head_on_raw_embeddings_with_labels():
    loss = Classification(num_classes=4)
    assert loss.embedding == "raw"
    assert loss.batches() == TrainingBatches(views=1, labels=True)
    head = loss.head(8)
    assert isinstance(head, torch.nn.Linear) and (head.in_features, head.out_features) == (8, 4)
    embs = torch.randn(2, 1, 5, 8)
    labels = torch.tensor([[[0, 1, 2, 3, -1]], [[3, 3, 2, 1, 0]]])
    masks = torch.ones(2, 1, 5, dtype=torch.bool)
    steps, lens = torch.zeros(2, 1, 5, dtype=torch.long), torch.full((2, 1), 5)
    value = loss(embs, steps, lens, masks, labels=labels, head=head)
    assert float(value) == pytest.approx(
        float(phase_classification_loss(head(embs), labels, masks)), rel=1e-6)
    value.backward()
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="num_classes=4 but a training label is 5"):
        loss(embs, steps, lens, masks, labels=labels.clamp(max=5) + 2, head=head)
    with pytest.raises(ValueError, match="needs labels="):
        loss(embs, steps, lens, masks, head=head)


def test_tcc_defaults_to_the_references_regime_and_aligns_single_views_across_videos():
    loss = TCC()
    assert (loss.views, loss.embedding) == (1, "raw")
    assert loss.batches() == TrainingBatches(views=1, same_group=True)
    two = TCC(views=2, embedding="projected")
    assert two.batches() == TrainingBatches(views=2) and two.embedding == "projected"
    g = torch.Generator().manual_seed(3)
    embs = torch.randn(2, 1, 5, 3, generator=g, dtype=torch.float64)
    steps = torch.sort(torch.randperm(12, generator=g)[:5]).values.repeat(2, 1, 1)
    lens = torch.full((2, 1), 12)
    masks = torch.ones(2, 1, 5, dtype=torch.bool)
    expected = reference_tcc(
        [embs[0, 0].tolist(), embs[1, 0].tolist()],
        [[float(s) for s in steps[0, 0]], [float(s) for s in steps[1, 0]]],
        [12.0, 12.0],
    )
    assert float(loss(embs, steps, lens, masks)) == pytest.approx(expected, rel=1e-9)
    assert float(temporal_cycle_consistency_loss(embs, steps, lens, masks)) == pytest.approx(
        expected, rel=1e-9)
    # ``views`` decides how batches are built; the loss itself cycles between any B V views.
    pairs = embs.reshape(1, 2, 5, 3)
    assert float(loss(pairs, steps.reshape(1, 2, 5), lens.reshape(1, 2), masks.reshape(1, 2, 5))
                 ) == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="batch_size >= 2"):
        loss(embs[:1], steps[:1], lens[:1], masks[:1])
    with pytest.raises(ValueError, match="embedding must be one of"):
        TCC(embedding="pooled")


def test_registry_and_configs_name_every_method():
    assert {name: cls.__name__ for name, cls in LOSSES.items()} == {
        "scl": "SCL", "tcc": "TCC", "tcn": "TCN", "classification": "Classification"}
    rebuilt = build_loss({"class_path": "TCN", "init_args": {"reg_lambda": 0.01}})
    assert isinstance(rebuilt, TCN) and rebuilt.config() == {
        "class_path": "mvf_lightning.losses.time_contrastive.TCN",
        "init_args": {"reg_lambda": 0.01, "positive_window": 5}}
    assert build_loss("classification").init_args() == {"num_classes": 6}
