"""Sequence contrastive loss against a loop-by-loop reading of the spec and hand derivations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mvf_lightning.losses import SCL, sequence_contrastive_loss
from mvf_lightning.losses.sequence_contrastive import NEGATIVES


def reference_scl(
    embs: torch.Tensor,
    steps: torch.Tensor,
    seq_lens: torch.Tensor,
    masks: torch.Tensor,
    temperature: float,
    label_variance: float,
    negatives: str,
) -> float:
    """The spec's definition with explicit loops over frames, in Python float64."""
    b_size, _, t_size, _ = embs.shape
    frames = []  # (video, view, z, s, L, m)
    for b in range(b_size):
        for v in range(2):
            for t in range(t_size):
                frames.append(
                    (
                        b,
                        v,
                        [float(x) for x in embs[b, v, t]],
                        float(steps[b, v, t]),
                        float(seq_lens[b, v]),
                        bool(masks[b, v, t]),
                    )
                )
    n = len(frames)

    def logit(i: int, j: int) -> float:
        return sum(a * c for a, c in zip(frames[i][2], frames[j][2])) / temperature

    def dist(i: int, j: int) -> float:
        _, _, _, s_i, len_i, m_i = frames[i]
        _, _, _, s_j, len_j, m_j = frames[j]
        if not (m_i and m_j):
            return 1e6
        return abs(s_i / len_i * len_j - s_j)

    def weight(i: int, k: int) -> float:
        if not (frames[i][5] and frames[k][5]):
            return 1e-6
        same_video = frames[i][0] == frames[k][0]
        same_view = same_video and frames[i][1] == frames[k][1]
        if negatives.startswith("single") and not same_video:
            return 0.0
        if negatives.endswith("_noself") and same_view:
            return 0.0
        return 1.0

    targets = [[0.0] * n for _ in range(n)]
    for i in range(n):
        partners = [
            j for j in range(n) if frames[j][0] == frames[i][0] and frames[j][1] != frames[i][1]
        ]
        raw = {j: math.exp(-(dist(i, j) ** 2) / (2 * label_variance)) for j in partners}
        total = sum(raw.values())
        for j in partners:
            targets[i][j] = raw[j] / total if total > 0 else 0.0

    loss = 0.0
    for i in range(n):
        denom = sum(weight(i, k) * math.exp(logit(i, k)) for k in range(n))
        for j in range(n):
            t_ij = targets[i][j]
            m_ij = float(frames[i][5] and frames[j][5])
            if t_ij > 0 and m_ij:
                p_ij = math.exp(logit(i, j)) / denom
                loss += m_ij * t_ij * (math.log(t_ij) - math.log(p_ij + 1e-6))
    return loss / sum(f[5] for f in frames)


def make_inputs(
    b: int, t: int, d: int = 8, seed: int = 0, mask_prob: float = 0.25, dtype=torch.float64
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random normalised embeddings, sorted clamped steps, per-video lengths, some masked frames."""
    gen = torch.Generator().manual_seed(seed)
    embs = F.normalize(torch.randn(b, 2, t, d, generator=gen, dtype=dtype), dim=-1)
    lens = torch.randint(t, 3 * t, (b, 1), generator=gen).expand(b, 2).clone()
    raw = (torch.rand(b, 2, t, generator=gen) * lens[..., None]).floor().long()
    steps = raw.sort(dim=-1).values.clamp(max=lens[..., None] - 1)
    masks = torch.rand(b, 2, t, generator=gen) > mask_prob
    masks[:, :, 0] = True
    return embs, steps, lens, masks


@pytest.mark.parametrize("negatives", NEGATIVES)
@pytest.mark.parametrize(
    ("b", "t", "seed", "temperature", "label_variance"),
    [(2, 4, 0, 0.1, 10.0), (3, 5, 1, 0.5, 2.0), (2, 6, 2, 0.1, 10.0)],
)
def test_matches_loop_reference(negatives, b, t, seed, temperature, label_variance):
    embs, steps, lens, masks = make_inputs(b, t, seed=seed)
    assert not masks.all()
    got = sequence_contrastive_loss(
        embs,
        steps,
        lens,
        masks,
        temperature=temperature,
        label_variance=label_variance,
        negatives=negatives,
    )
    want = reference_scl(embs, steps, lens, masks, temperature, label_variance, negatives)
    assert got.dtype == torch.float64 and got.dim() == 0
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_float32_matches_reference_even_with_large_logits():
    # tau = 0.01 gives logits up to 100: exp overflows float32, the log-sum-exp form does not.
    embs, steps, lens, masks = make_inputs(2, 5, seed=3)
    got = sequence_contrastive_loss(embs.float(), steps, lens, masks, temperature=0.01)
    want = reference_scl(embs, steps, lens, masks, 0.01, 10.0, "single_noself")
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(want, rel=1e-4)


def _hand_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """B=1, T=2: both views are frames s=0 with z=(1,0) and s=1 with z=(0,1); L=2."""
    view = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    embs = torch.stack([view, view])[None]
    steps = torch.tensor([[[0, 1], [0, 1]]])
    lens = torch.tensor([[2, 2]])
    masks = torch.ones(1, 2, 2, dtype=torch.bool)
    return embs, steps, lens, masks


@pytest.mark.parametrize(
    ("negatives", "expected"),
    [
        ("single_noself", 0.08260465874340966),
        ("batch_noself", 0.08260465874340966),
        ("single", 0.7757487531718892),
        ("batch", 0.7757487531718892),
    ],
)
def test_hand_computed_tiny_case(negatives, expected):
    # tau = 0.5 and sigma^2 = 0.5. Every frame (by symmetry) sees the other view as: a matching
    # frame (d = 0, logit 2) and a neighbour (d = 1, logit 0). Targets exp(-d^2): t = (e, 1)/(e+1).
    # noself: p = (e^2, 1)/(e^2+1); with self (B=1 so single = batch) the denominator also holds
    # the own view, again logits 2 and 0, so p halves. Loss = one row's sum t (log t - log(p+1e-6)).
    e = math.e
    t = [e / (e + 1), 1 / (e + 1)]
    p = [e**2 / (e**2 + 1), 1 / (e**2 + 1)]
    if not negatives.endswith("_noself"):
        p = [x / 2 for x in p]
    derived = sum(a * (math.log(a) - math.log(c + 1e-6)) for a, c in zip(t, p))
    assert derived == pytest.approx(expected, rel=1e-12)
    got = sequence_contrastive_loss(
        *_hand_inputs(), temperature=0.5, label_variance=0.5, negatives=negatives
    )
    assert got.item() == pytest.approx(expected, rel=1e-9)


def test_hand_computed_tiny_case_with_masked_frame():
    # As above with view 2's s=1 frame (index 3) masked; 3 valid frames. A masked partner gets
    # denominator weight 1e-6 even where the mode would exclude it (here its own view).
    # Row 0 (s=0, z=(1,0)): one target, frame 2, t=1; denominator e^2 + 1e-6 e^0.
    # Row 1 (s=1, z=(0,1)): one target, frame 2 (logit 0), t=1; denominator 1 + 1e-6 e^2.
    # Row 2 (s=0, z=(1,0)): targets as unmasked, denominator e^2 + 1 + 1e-6 e^0 (frame 3).
    # Row 3 is masked and contributes nothing.
    e = math.e
    row0 = -math.log(e**2 / (e**2 + 1e-6) + 1e-6)
    row1 = -math.log(1 / (1 + 1e-6 * e**2) + 1e-6)
    t = [e / (e + 1), 1 / (e + 1)]
    p = [e**2 / (e**2 + 1 + 1e-6), 1 / (e**2 + 1 + 1e-6)]
    row2 = sum(a * (math.log(a) - math.log(c + 1e-6)) for a, c in zip(t, p))
    expected = (row0 + row1 + row2) / 3
    assert expected == pytest.approx(0.02753676743450215, rel=1e-12)
    embs, steps, lens, masks = _hand_inputs()
    masks[0, 1, 1] = False
    got = sequence_contrastive_loss(embs, steps, lens, masks, temperature=0.5, label_variance=0.5)
    assert got.item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("negatives", NEGATIVES)
def test_masked_frames_do_not_influence_loss(negatives):
    embs, steps, lens, masks = make_inputs(3, 5, seed=4)
    base = sequence_contrastive_loss(embs, steps, lens, masks, negatives=negatives)
    gen = torch.Generator().manual_seed(9)
    # Steps of masked frames are overwritten by the 1e6 distance: no influence at all.
    other_steps = torch.where(masks, steps, torch.randint(0, 5, steps.shape, generator=gen))
    same = sequence_contrastive_loss(embs, other_steps, lens, masks, negatives=negatives)
    assert same.item() == base.item()
    # Masked embeddings only enter denominators with weight 1e-6: a negligible influence.
    noise = F.normalize(torch.randn(embs.shape, generator=gen, dtype=embs.dtype), dim=-1)
    other_embs = torch.where(masks[..., None], embs, noise)
    moved = sequence_contrastive_loss(other_embs, steps, lens, masks, negatives=negatives)
    assert moved.item() == pytest.approx(base.item(), rel=1e-4)


@pytest.mark.parametrize("negatives", NEGATIVES)
def test_fully_masked_video_barely_matters(negatives):
    # Its frames still enter every denominator with weight 1e-6 (as the spec says), so the
    # loss is close to, not equal to, that of the other video alone.
    embs, steps, lens, masks = make_inputs(2, 4, seed=5)
    alone = sequence_contrastive_loss(embs[:1], steps[:1], lens[:1], masks[:1], negatives=negatives)
    masks[1] = False
    both = sequence_contrastive_loss(embs, steps, lens, masks, negatives=negatives)
    assert both.item() == pytest.approx(alone.item(), rel=1e-4)
    want = reference_scl(embs, steps, lens, masks, 0.1, 10.0, negatives)
    assert both.item() == pytest.approx(want, rel=1e-6)


def test_all_masked_gives_zero_not_nan():
    embs, steps, lens, masks = make_inputs(2, 4, seed=6)
    loss = sequence_contrastive_loss(embs, steps, lens, torch.zeros_like(masks))
    assert loss.item() == 0.0


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_autocast_and_half_inputs_stay_finite_and_close(half):
    embs, steps, lens, masks = make_inputs(2, 6, seed=7, dtype=torch.float32)
    low = embs.to(half)
    want = sequence_contrastive_loss(low.float(), steps, lens, masks, temperature=0.05)
    try:
        with torch.autocast("cpu", dtype=half):
            got = sequence_contrastive_loss(low, steps, lens, masks, temperature=0.05)
            got_fp32_in = sequence_contrastive_loss(embs, steps, lens, masks, temperature=0.05)
    except RuntimeError:  # CPU autocast without this dtype in some torch builds
        got = sequence_contrastive_loss(low, steps, lens, masks, temperature=0.05)
        got_fp32_in = sequence_contrastive_loss(embs, steps, lens, masks, temperature=0.05)
    assert got.dtype == torch.float32 and torch.isfinite(got)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    exact = sequence_contrastive_loss(embs, steps, lens, masks, temperature=0.05)
    assert got_fp32_in.item() == pytest.approx(exact.item(), rel=1e-6)


@pytest.mark.parametrize("negatives", NEGATIVES)
def test_gradients_flow_and_are_finite(negatives):
    embs, steps, lens, masks = make_inputs(2, 5, seed=8, dtype=torch.float32)
    raw = embs.clone().requires_grad_(True)
    loss = sequence_contrastive_loss(
        F.normalize(raw, dim=-1), steps, lens, masks, negatives=negatives
    )
    loss.backward()
    grad = raw.grad
    assert grad is not None and torch.isfinite(grad).all()
    assert grad[masks].abs().sum() > 0
    # Masked frames reach the loss only through the 1e-6 denominator weight.
    assert grad[~masks].abs().max() < 1e-3 * grad[masks].abs().max()


def test_loss_decreases_under_sgd():
    embs, steps, lens, masks = make_inputs(2, 6, seed=10, dtype=torch.float32)
    param = embs.clone().requires_grad_(True)
    history = []
    for _ in range(10):
        loss = sequence_contrastive_loss(F.normalize(param, dim=-1), steps, lens, masks)
        (grad,) = torch.autograd.grad(loss, param)
        with torch.no_grad():
            param -= 0.5 * grad
        history.append(loss.item())
    assert history[-1] < 0.8 * history[0]


@pytest.mark.parametrize(
    ("arg", "bad", "message"),
    [
        ("embs", torch.zeros(2, 3, 4, 8), "embs must have shape"),
        ("embs", torch.zeros(2, 2, 4), "embs must have shape"),
        ("steps", torch.zeros(2, 2, 5, dtype=torch.long), "steps must have shape"),
        ("seq_lens", torch.zeros(2, dtype=torch.long), "seq_lens must have shape"),
        ("masks", torch.ones(2, 4, dtype=torch.bool), "masks must have shape"),
    ],
)
def test_bad_shapes_raise(arg, bad, message):
    embs, steps, lens, masks = make_inputs(2, 4)
    kwargs = {"embs": embs, "steps": steps, "seq_lens": lens, "masks": masks, arg: bad}
    with pytest.raises(ValueError, match=message):
        sequence_contrastive_loss(**kwargs)


def test_bad_negatives_and_hyperparameters_raise():
    inputs = make_inputs(2, 4)
    with pytest.raises(ValueError, match=r"negatives.*single_noself.*batch_noself.*'nope'"):
        sequence_contrastive_loss(*inputs, negatives="nope")
    with pytest.raises(ValueError, match="temperature"):
        sequence_contrastive_loss(*inputs, temperature=0.0)
    with pytest.raises(ValueError, match="label_variance"):
        sequence_contrastive_loss(*inputs, label_variance=-1.0)


def test_scl_class_computes_the_function_with_its_settings():
    embs, steps, lens, masks = make_inputs(2, 4)
    loss = SCL(temperature=0.3, label_variance=4.0, negatives="batch")
    expected = sequence_contrastive_loss(
        embs, steps, lens, masks, temperature=0.3, label_variance=4.0, negatives="batch"
    )
    assert torch.equal(loss(embs, steps, lens, masks), expected)
    with pytest.raises(ValueError, match=r"negatives.*'nope'"):
        SCL(negatives="nope")
