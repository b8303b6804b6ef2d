"""Learnable Spatial Token Pooling against hand-written attention."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mvf_lightning.models.spatial_pooling import LearnableSpatialTokenPooling

N, S, C, K, P = 4, 7, 12, 3, 8


def _manual(pool: LearnableSpatialTokenPooling, tokens, queries):
    """softmax(q k^T / sqrt(P)) v with q given explicitly ``[N, Q, P]``."""
    k = tokens @ pool.key.weight.T + pool.key.bias
    v = tokens @ pool.value.weight.T + pool.value.bias
    if pool.normalize_keys:
        k = k / k.norm(dim=-1, keepdim=True)
    attn = torch.softmax(queries @ k.transpose(1, 2) / math.sqrt(pool.dim), dim=-1)
    return attn @ v, attn


def _static_queries(pool: LearnableSpatialTokenPooling) -> torch.Tensor:
    # Query i = row i of the learned [1, K, P] tensor plus the shared P-vector.
    return (pool.queries[0] + pool.query_bias).unsqueeze(0).expand(N, -1, -1)


@pytest.mark.parametrize("normalize_keys", [False, True])
def test_matches_manual_attention(normalize_keys):
    pool = LearnableSpatialTokenPooling(C, K, P, normalize_keys=normalize_keys)
    assert pool.queries.shape == (1, K, P) and pool.query_bias.shape == (P,)
    tokens = torch.randn(N, S, C)
    out, attn = pool(tokens, return_attention=True)
    want_out, want_attn = _manual(pool, tokens, _static_queries(pool))
    assert out.shape == (N, K, P) and attn.shape == (N, K, S)
    torch.testing.assert_close(attn, want_attn)
    torch.testing.assert_close(out, want_out)
    torch.testing.assert_close(attn.sum(-1), torch.ones(N, K))


def test_normalize_keys_changes_the_result():
    pool = LearnableSpatialTokenPooling(C, K, P)
    tokens = 5 * torch.randn(N, S, C)
    plain, _ = pool(tokens)
    pool.normalize_keys = True
    normed, _ = pool(tokens)
    assert not torch.allclose(plain, normed)


def test_fast_path_equals_explicit_path():
    pool = LearnableSpatialTokenPooling(C, K, P, normalize_keys=True)
    tokens = torch.randn(N, S, C)
    fast, none = pool(tokens, return_attention=False)
    slow, attn = pool(tokens, return_attention=True)
    assert none is None and attn is not None
    torch.testing.assert_close(fast, slow)


def test_dynamic_queries_come_from_the_cls_token():
    pool = LearnableSpatialTokenPooling(C, K, P, num_dynamic_tokens=2, cls_dim=C)
    assert pool.num_tokens == K + 2
    tokens, cls = torch.randn(N, S, C), torch.randn(N, C)
    out, attn = pool(tokens, cls, return_attention=True)
    dynamic = (cls @ pool.dynamic.weight.T + pool.dynamic.bias).view(N, 2, P)
    queries = torch.cat([_static_queries(pool), dynamic], dim=1)
    want_out, want_attn = _manual(pool, tokens, queries)
    assert out.shape == (N, K + 2, P)
    torch.testing.assert_close(attn, want_attn)
    torch.testing.assert_close(out, want_out)
    fast, _ = pool(tokens, cls)
    torch.testing.assert_close(fast, want_out)


def test_dynamic_queries_need_a_cls_token():
    with pytest.raises(ValueError, match="CLS"):
        LearnableSpatialTokenPooling(C, K, P, num_dynamic_tokens=1, cls_dim=None)
    pool = LearnableSpatialTokenPooling(C, K, P, num_dynamic_tokens=1, cls_dim=C)
    with pytest.raises(ValueError, match="CLS"):
        pool(torch.randn(N, S, C))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"num_tokens": 0}, "num_tokens must be >= 1"),
    ({"num_dynamic_tokens": -1, "cls_dim": C}, "num_dynamic_tokens must be >= 0"),
])
def test_invalid_token_counts(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LearnableSpatialTokenPooling(C, **{"num_tokens": K, **kwargs})


def _check_disjoint(pool, tokens):
    """The reference's definition: softmax over the spatial tokens, then each token keeps its
    probability only in the query where it is largest; no renormalisation."""
    s = tokens.shape[1]
    out, attn = pool(tokens, return_attention=True)
    logits = (
        _static_queries(pool)
        @ F.linear(tokens, pool.key.weight, pool.key.bias).transpose(1, 2)
        / math.sqrt(P)
    )
    probs = torch.softmax(logits, dim=-1)
    winner = probs.argmax(dim=1)  # [N, S]: the query giving each spatial token most weight
    v = F.linear(tokens, pool.value.weight, pool.value.bias)
    for n in range(N):
        for q in range(K):
            want = torch.zeros(s)
            won = winner[n] == q
            want[won] = probs[n, q, won]
            torch.testing.assert_close(attn[n, q], want)
    torch.testing.assert_close(out, attn @ v)
    return attn, winner


def test_disjoint_tokens_feed_only_their_strongest_query():
    pool = LearnableSpatialTokenPooling(C, K, P, disjoint=True)
    tokens = torch.randn(N, 40, C)
    attn, winner = _check_disjoint(pool, tokens)
    # With 40 tokens every query wins some here: each token has weight in exactly one query.
    assert all(len(set(w.tolist())) == K for w in winner)
    assert ((attn > 0).sum(dim=1) == 1).all()
    assert (attn.sum(-1) < 1 - 1e-3).all()  # not renormalised
    # The disjoint variant always runs the explicit path, even without return_attention.
    fast, _ = pool(tokens)
    torch.testing.assert_close(fast, attn @ F.linear(tokens, pool.value.weight, pool.value.bias))


def test_disjoint_picks_by_probability_and_does_not_renormalise():
    """Hand-computed. Sample 0: token 3's largest LOGIT is in query 2, but its largest
    PROBABILITY in query 0 (query 2's mass sits on tokens 0-2), so query 0 wins it and keeps
    1/4 there, not 1. Sample 1: query 2 wins no token, so its weights are all zero."""
    pool = LearnableSpatialTokenPooling(C, K, P, disjoint=True)
    logits = torch.tensor(
        [
            [[0.0, 0.0, 0.0, 0.0], [10.0, 0.0, 0.0, 0.0], [5.0, 5.0, 5.0, 1.0]],
            [[0.0, 0.0, 0.0, 0.0], [10.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0]],
        ]
    )
    p = torch.softmax(logits, dim=-1)
    want = torch.zeros(2, 3, 4)
    want[0, 0, 3] = 0.25
    want[0, 1, 0] = p[0, 1, 0]
    want[0, 2, 1:3] = p[0, 2, 1:3]
    want[1, 0, 1:] = 0.25
    want[1, 1, 0] = p[1, 1, 0]
    torch.testing.assert_close(pool._attention(logits), want, rtol=0, atol=0)


def test_disjoint_query_that_wins_nothing_pools_zero():
    pool = LearnableSpatialTokenPooling(C, K, P, disjoint=True)
    with torch.no_grad():
        # Query 1 is the all-ones vector, queries 0 and 2 are zero: every spatial token gets
        # weight 1/S from queries 0 and 2 and more from query 1 wherever its key is largest.
        pool.queries.zero_()
        pool.query_bias.zero_()
        pool.queries[0, 1] = 1.0
    tokens = torch.randn(N, S, C)
    out, attn = pool(tokens, return_attention=True)
    assert torch.isfinite(out).all()
    _, winner = _check_disjoint(pool, tokens)
    assert not (winner == 2).any()  # query 2 ties query 0 and loses every token
    torch.testing.assert_close(attn[:, 2], torch.zeros(N, S), rtol=0, atol=0)
    torch.testing.assert_close(out[:, 2], torch.zeros(N, P), rtol=0, atol=0)


def test_static_queries_initialised_kaiming_uniform_over_k_times_p():
    """mvformer.md: bound 1/sqrt(K P) (about 0.0295 for K = 3, P = 384), for the [1, K, P]
    tensor and the P-vector; K P + P parameters, as many as an nn.Linear(K, P)."""
    torch.manual_seed(0)
    pool = LearnableSpatialTokenPooling(C, 3, 384)
    bound = 1 / math.sqrt(3 * 384)
    assert bound == pytest.approx(0.0295, abs=1e-4)
    for t in (pool.queries, pool.query_bias):
        assert t.abs().max().item() <= bound
        assert t.abs().max().item() > 0.95 * bound
    assert pool.queries.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
    # PyTorch's own Kaiming-uniform with a = sqrt(5) has the same bound on this tensor.
    reference = torch.empty(1, 3, 384)
    torch.nn.init.kaiming_uniform_(reference, a=math.sqrt(5))
    assert reference.abs().max().item() <= bound
    assert pool.queries.numel() + pool.query_bias.numel() == 3 * 384 + 384
