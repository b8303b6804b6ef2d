"""TCC against a loop-by-loop reading of the spec (mvformer.md, "Other losses in the
reference: TCC"), pair by pair and frame by frame in Python floats."""

from __future__ import annotations

import math

import pytest
import torch

from mvf_lightning.losses import TCC, temporal_cycle_consistency_loss

LOSS_TYPES = ["regression_mse_var", "regression_mse", "regression_huber", "classification"]


def reference_tcc(
    seqs: list[list[list[float]]],
    steps: list[list[float]],
    lens: list[float],
    *,
    loss_type: str = "regression_mse_var",
    similarity: str = "l2",
    temperature: float = 0.1,
    label_smoothing: float = 0.1,
    variance_lambda: float = 0.001,
    huber_delta: float = 1.0,
    normalize_indices: bool = True,
    pairs: list[tuple[int, int]] | None = None,
) -> float:
    """Every ordered pair (i, j), i != j, of the sequences (or the given ``pairs``), every
    frame t of i: the spec's cycle, then the mean of the per-frame terms over all of them."""
    if pairs is None:
        pairs = [(i, j) for i in range(len(seqs)) for j in range(len(seqs)) if i != j]

    def sim(u: list[float], v: list[float]) -> float:
        if similarity == "l2":
            value = -sum((a - b) ** 2 for a, b in zip(u, v))
        else:
            value = sum(a * b for a, b in zip(u, v))
        return value / len(u) / temperature

    def softmax(values: list[float]) -> list[float]:
        top = max(values)
        exps = [math.exp(v - top) for v in values]
        return [e / sum(exps) for e in exps]

    terms = []
    for i, j in pairs:
        seq_i, seq_j = seqs[i], seqs[j]
        n_i = len(seq_i)
        for t, u in enumerate(seq_i):
            alpha = softmax([sim(u, v) for v in seq_j])
            nearest = [sum(a * v[c] for a, v in zip(alpha, seq_j)) for c in range(len(u))]
            logits = [sim(nearest, w) for w in seq_i]
            labels = [
                (1 - n_i * label_smoothing / (n_i - 1)) * (s == t)
                + label_smoothing / (n_i - 1)
                for s in range(n_i)
            ]
            if loss_type == "classification":
                top = max(logits)
                lse = top + math.log(sum(math.exp(v - top) for v in logits))
                terms.append(-sum(y * (v - lse) for y, v in zip(labels, logits)))
                continue
            idx = [s / lens[i] if normalize_indices else s for s in steps[i]]
            beta = softmax(logits)
            true = sum(x * y for x, y in zip(idx, labels))
            pred = sum(x * p for x, p in zip(idx, beta))
            if loss_type == "regression_mse_var":
                var = sum((x - pred) ** 2 * p for x, p in zip(idx, beta))
                terms.append(
                    math.exp(-math.log(var)) * (true - pred) ** 2
                    + variance_lambda * math.log(var)
                )
            elif loss_type == "regression_mse":
                terms.append((pred - true) ** 2)
            else:
                err = abs(pred - true)
                d = huber_delta
                terms.append(0.5 * err**2 if err < d else d * (err - 0.5 * d))
    return sum(terms) / len(terms)


def make_inputs(b: int = 2, t: int = 5, d: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    embs = torch.randn(b, 2, t, d, generator=g, dtype=torch.float64)
    lens = torch.randint(t + 2, 40, (b, 2), generator=g)
    steps = torch.stack(
        [torch.sort(torch.randperm(int(n), generator=g)[:t]).values for n in lens.flatten()]
    ).view(b, 2, t)
    masks = torch.ones(b, 2, t, dtype=torch.bool)
    return embs, steps, lens, masks


def as_lists(embs, steps, lens, masks):
    """Each view as the list of its valid frames (the reference's input, masks applied)."""
    seqs, seq_steps, seq_lens = [], [], []
    for b in range(embs.shape[0]):
        for v in range(2):
            keep = masks[b, v]
            seqs.append(embs[b, v][keep].tolist())
            seq_steps.append([float(s) for s in steps[b, v][keep]])
            seq_lens.append(float(lens[b, v]))
    return seqs, seq_steps, seq_lens


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("similarity", ["l2", "cosine"])
def test_equals_spec_definition_with_full_masks(loss_type, similarity):
    inputs = make_inputs(b=2, t=5, d=3)
    ours = temporal_cycle_consistency_loss(*inputs, loss_type=loss_type, similarity=similarity)
    expected = reference_tcc(*as_lists(*inputs), loss_type=loss_type, similarity=similarity)
    assert ours.dtype == torch.float64
    assert float(ours) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    "settings",
    [
        {"normalize_indices": False, "temperature": 0.5},
        {"label_smoothing": 0.0, "variance_lambda": 0.1},
        {"loss_type": "regression_huber", "normalize_indices": False, "huber_delta": 0.3},
        {"loss_type": "classification", "label_smoothing": 0.25, "similarity": "cosine"},
    ],
)
def test_equals_spec_definition_with_other_settings(settings):
    inputs = make_inputs(b=1, t=6, d=4, seed=3)
    ours = temporal_cycle_consistency_loss(*inputs, **settings)
    assert float(ours) == pytest.approx(reference_tcc(*as_lists(*inputs), **settings), rel=1e-9)


def test_huber_with_delta_one_is_the_references_smooth_l1():
    inputs = make_inputs(b=2, t=4, d=2, seed=5)
    ours = temporal_cycle_consistency_loss(*inputs, loss_type="regression_huber",
                                           normalize_indices=False)
    # The regressed indices are raw frame numbers here: errors above 1 use the linear branch.
    seqs, steps, lens = as_lists(*inputs)
    smooth_l1 = reference_tcc(seqs, steps, lens, loss_type="regression_huber",
                              normalize_indices=False, huber_delta=1.0)
    assert float(ours) == pytest.approx(smooth_l1, rel=1e-9)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_masked_frames_are_left_out(loss_type):
    embs, steps, lens, masks = make_inputs(b=2, t=6, d=3, seed=7)
    masks[0, 1, 4:] = False
    masks[1, 0, 0] = False
    ours = temporal_cycle_consistency_loss(embs, steps, lens, masks, loss_type=loss_type)
    expected = reference_tcc(*as_lists(embs, steps, lens, masks), loss_type=loss_type)
    assert float(ours) == pytest.approx(expected, rel=1e-9)
    # Masked frames' contents do not matter.
    noisy = embs.clone()
    noisy[0, 1, 4:] = 1e3
    again = temporal_cycle_consistency_loss(noisy, steps, lens, masks, loss_type=loss_type)
    assert float(again) == pytest.approx(float(ours), rel=1e-12)


def test_views_without_enough_valid_frames_anchor_nothing_and_keep_gradients_finite():
    embs, steps, lens, masks = make_inputs(b=2, t=5, d=3, seed=2)
    masks[0, 0] = False  # no valid frame: neither anchor nor target
    masks[1, 1, 1:] = False  # one valid frame: a target, never an anchor
    embs = embs.float().requires_grad_()
    loss = temporal_cycle_consistency_loss(embs, steps, lens, masks)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(embs.grad).all()
    assert torch.count_nonzero(embs.grad[0, 0]) == 0
    # Anchors: the views with >= 2 valid frames; targets: those with >= 1 (flattened order).
    expected = reference_tcc(
        *as_lists(embs.detach().double(), steps, lens, masks),
        pairs=[(i, j) for i in (1, 2) for j in (1, 2, 3) if i != j],
    )
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)


def test_float32_under_autocast_and_module_wrapper():
    embs, steps, lens, masks = make_inputs(b=1, t=8, d=16, seed=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = TCC(views=2)(embs.float(), steps, lens, masks)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    expected = temporal_cycle_consistency_loss(embs, steps, lens, masks)
    assert float(loss) == pytest.approx(float(expected), rel=1e-4)


@pytest.mark.parametrize(
    ("arg", "bad", "message"),
    [
        ("loss_type", "regression", "loss_type must be one of .*'regression'"),
        ("similarity", "dot", "similarity must be one of .*'dot'"),
        ("temperature", 0.0, "temperature must be > 0"),
        ("label_smoothing", 1.0, r"label_smoothing must be in \[0, 1\)"),
        ("variance_lambda", -1.0, "variance_lambda must be >= 0"),
        ("huber_delta", 0.0, "huber_delta must be > 0"),
    ],
)
def test_bad_settings_name_the_value(arg, bad, message):
    with pytest.raises(ValueError, match=message):
        temporal_cycle_consistency_loss(*make_inputs(), **{arg: bad})
    with pytest.raises(ValueError, match=message):
        TCC(**{arg: bad})


def test_bad_shapes_are_named():
    embs, steps, lens, masks = make_inputs(b=2, t=5)
    with pytest.raises(ValueError, match=r"steps must have shape \[B, V, T\] = \[2, 2, 5\]"):
        temporal_cycle_consistency_loss(embs, steps[:, :, :4], lens, masks)
    with pytest.raises(ValueError, match="at least 2 frames"):
        temporal_cycle_consistency_loss(embs[:, :, :1], steps[:, :, :1], lens, masks[:, :, :1])


def test_aligned_views_score_lower_than_shuffled_ones():
    """The loss rewards what it should: two views whose frames follow the same path in the
    same order cycle back better than views whose order disagrees."""
    t = 10
    path = torch.stack([torch.cos(torch.linspace(0, 3, t)), torch.sin(torch.linspace(0, 3, t))], 1)
    steps = torch.arange(t).repeat(1, 2, 1)
    lens = torch.full((1, 2), t)
    masks = torch.ones(1, 2, t, dtype=torch.bool)
    aligned = torch.stack([path, path]).unsqueeze(0).double()
    order = torch.randperm(t, generator=torch.Generator().manual_seed(0))
    shuffled = torch.stack([path, path[order]])
    loss_aligned = temporal_cycle_consistency_loss(aligned, steps, lens, masks)
    loss_shuffled = temporal_cycle_consistency_loss(shuffled.unsqueeze(0).double(), steps, lens,
                                                    masks)
    assert float(loss_aligned) < float(loss_shuffled)
