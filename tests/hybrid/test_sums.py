"""probdl.hybrid.sums: the sum likelihood against enumeration, and learning digits from sums."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from probdl.bnn import ELBO, BayesianCNN, predict
from probdl.errors import DataError, ModelError
from probdl.hybrid import (
    pair_indices,
    sum_guide,
    sum_log_likelihood,
    sum_model,
    sum_pairs,
    train_on_sums,
)
from tests.hybrid.helpers import TINY, tiny_cnn


def test_pair_indices_disjoint_and_cyclic():
    a, b = pair_indices(11, seed=3)
    assert len(a) == len(b) == 5 and not set(a) & set(b)
    a, b = pair_indices(11, seed=3, cyclic=True)
    assert sorted(a) == sorted(b) == list(range(11)) and (a != b).all()
    with pytest.raises(DataError):
        pair_indices(1)


def test_sum_likelihood_equals_brute_force():
    gen = torch.Generator().manual_seed(0)
    log_p1 = torch.log_softmax(torch.randn(7, 10, generator=gen, dtype=torch.float64), -1)
    log_p2 = torch.log_softmax(torch.randn(7, 10, generator=gen, dtype=torch.float64), -1)
    got = sum_log_likelihood(log_p1, log_p2).exp().numpy()
    p1, p2 = log_p1.exp().numpy(), log_p2.exp().numpy()
    ref = np.zeros((7, 19))
    for row, d1, d2 in itertools.product(range(7), range(10), range(10)):
        ref[row, d1 + d2] += p1[row, d1] * p2[row, d2]
    np.testing.assert_allclose(got, ref, atol=1e-14)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-12)
    with pytest.raises(DataError):
        sum_log_likelihood(log_p1, log_p2[:, :5])


def test_sum_pairs_hold_only_sums(digits):
    train_set = digits[0]
    pairs = sum_pairs(train_set, seed=0, repeats=2)
    assert len(pairs) == 2 * (len(train_set) // 2)
    labels = train_set.labels
    assert torch.equal(pairs.sums, labels[pairs.first_index] + labels[pairs.second_index])
    assert torch.equal(pairs.first, train_set.images[pairs.first_index])
    half = len(train_set) // 2
    assert not set(pairs.first_index[:half]) & set(pairs.second_index[:half])
    assert not hasattr(pairs, "labels")


def sum_nll(model, pairs):
    """Mean -log P(s | x1, x2) under the model's predictive probabilities, by enumeration."""
    p1 = predict(model, pairs.first, 4).probs.double().numpy()
    p2 = predict(model, pairs.second, 4).probs.double().numpy()
    lik = [sum(p1[r, d] * p2[r, s - d] for d in range(10) if 0 <= s - d < 10)
           for r, s in enumerate(pairs.sums.tolist())]
    return -np.mean(np.log(lik))


def test_elbo_likelihood_site_is_the_exact_sum_likelihood(digits):
    from pyro import poutine

    pairs = sum_pairs(digits[0], seed=0)
    # weight draw = posterior mean, and no dropout masks in the predictive: the trace has none
    model = tiny_cnn(BayesianCNN, init_scale=1e-12, predict_dropout=0.0).eval()
    a, b, s = pairs.first[:9], pairs.second[:9], pairs.sums[:9]
    guide = poutine.trace(sum_guide).get_trace(model, a, b, s)
    traced = poutine.trace(poutine.replay(sum_model, trace=guide)).get_trace(
        model, a, b, s, torch.arange(9), 90)
    site = traced.nodes["sum"]
    assert site["is_observed"] and "obs" not in traced.nodes
    log_lik = site["fn"].log_prob(site["value"]).detach().double().numpy()
    p1 = predict(model, a, 1).probs.double().numpy()
    p2 = predict(model, b, 1).probs.double().numpy()
    ref = [np.log(sum(p1[r, d] * p2[r, t - d] for d in range(10) if 0 <= t - d < 10))
           for r, t in enumerate(s.tolist())]
    np.testing.assert_allclose(log_lik, ref, atol=1e-5)
    assert site["scale"] == pytest.approx(10.0)  # size / batch: the plate scales the likelihood


def test_the_sum_model_leaves_out_the_cnn_noise_contrastive_factor(digits):
    """The CNN's noise prior is scaled for its own likelihood; the sum ELBO does not take it."""
    from pyro import poutine

    pairs = sum_pairs(digits[0], seed=0)
    model = tiny_cnn(BayesianCNN).train()
    a, b, s = pairs.first[:6], pairs.second[:6], pairs.sums[:6]
    guide = poutine.trace(sum_guide).get_trace(model, a, b, s)
    traced = poutine.trace(poutine.replay(sum_model, trace=guide)).get_trace(
        model, a, b, s, torch.arange(6), 60)
    assert "noise_prior" not in traced.nodes and "sum" in traced.nodes
    # while the CNN's own objective, in training, does carry it
    own = poutine.trace(poutine.replay(ELBO(noise_prior=0.5).model, trace=guide)).get_trace(
        model, a, None)
    assert "noise_prior" in own.nodes


def test_train_on_sums_decreases_the_loss(digits):
    pairs = sum_pairs(digits[0], seed=0)
    model = tiny_cnn(BayesianCNN, filters=(8,), dense=(32,))
    model.set_standardization(pairs.first.mean().reshape(1), pairs.first.std().reshape(1))
    before = sum_nll(model, pairs)
    history = train_on_sums(model, pairs, epochs=4, batch_size=64, lr=3e-3, progress=False)
    losses = [row["loss"] for row in history]
    assert len(losses) == 4 and all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    # the sums' own likelihood rose, not only the KL term fell
    assert sum_nll(model, pairs) < before
    with pytest.raises(ModelError, match="BayesianCNN"):
        train_on_sums(tiny_cnn(), pairs, epochs=1, progress=False)
    with pytest.raises(ModelError, match="num_classes=10"):
        train_on_sums(BayesianCNN(1, 3, (8, 8), **TINY), pairs, epochs=1, progress=False)
