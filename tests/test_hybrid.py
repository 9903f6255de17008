"""probdl.hybrid against brute-force enumeration over the 100 digit pairs."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from probdl.bnn import ELBO, BayesianCNN, DeterministicCNN, predict, train
from probdl.data import ImageDataset, load_digits, split
from probdl.errors import DataError, InferenceError, ModelError, ProbdlError
from probdl.graph import BayesNet
from probdl.hybrid import (
    HybridModel,
    digit_sum_accuracy,
    digit_sum_network,
    digit_sum_pairs,
    pair_indices,
    sum_guide,
    sum_log_likelihood,
    sum_model,
    sum_pairs,
    train_on_sums,
)

TINY = {"filters": (4,), "dense": (8,)}


@pytest.fixture(scope="module")
def digits():
    return split(load_digits(), val=0.15, test=0.2, seed=0)


def tiny_cnn(kind=DeterministicCNN, seed=0, **kwargs):
    return kind(in_channels=1, num_classes=10, image_size=(8, 8), seed=seed, **{**TINY, **kwargs})


def brute_force(p1, p2, prior1, prior2, pi1, pi2, sums=None):
    """P(D1, D2 | x1, x2[, s]) per row by enumerating the 100 pairs: (B, 10, 10)."""
    b = len(p1)
    joint = np.zeros((b, 10, 10))
    for row, d1, d2 in itertools.product(range(b), range(10), range(10)):
        if sums is not None and d1 + d2 != sums[row]:
            continue
        joint[row, d1, d2] = (prior1[d1] * prior2[d2] * p1[row, d1] / pi1[d1]
                              * p2[row, d2] / pi2[d2])
    return joint / joint.sum(axis=(1, 2), keepdims=True)


# ---------------------------------------------------------------------------- the network
def test_digit_sum_network_is_the_deterministic_sum():
    bn = digit_sum_network()
    assert bn.states["D1"] == [str(d) for d in range(10)]
    assert bn.states["S"] == [str(s) for s in range(19)]
    cpt = bn.cpd("S")
    for s, d1, d2 in itertools.product(range(19), range(10), range(10)):
        assert cpt[s, d1, d2] == (1.0 if d1 + d2 == s else 0.0)
    # P(S) under uniform digits: the triangular distribution (10 - |s - 9|) / 100
    prior_s = bn.query(["S"])["S"].to_numpy()
    np.testing.assert_allclose(prior_s, (10 - np.abs(np.arange(19) - 9)) / 100, atol=1e-12)


def test_pair_indices_disjoint_and_cyclic():
    a, b = pair_indices(11, seed=3)
    assert len(a) == len(b) == 5 and not set(a) & set(b)
    a, b = pair_indices(11, seed=3, cyclic=True)
    assert sorted(a) == sorted(b) == list(range(11)) and (a != b).all()
    with pytest.raises(DataError):
        pair_indices(1)


# ---------------------------------------------------------------------------- exact posterior
def test_posterior_equals_brute_force(digits):
    train_set, _, test = digits
    model = tiny_cnn()  # MAP: deterministic predictions, so the reference sees the same numbers
    digit_prior = np.arange(1, 11.0)
    bn = digit_sum_network(digit_prior=digit_prior)
    hm = HybridModel(bn, {"D1": model, "D2": model}, class_prior=train_set)
    x1, x2 = test.images[:12], test.images[12:24]
    sums = (test.labels[:12] + test.labels[12:24]).numpy()
    post = hm.query(["D1", "D2", "S"], images={"D1": x1, "D2": x2}, evidence={"S": sums})

    p1, p2 = predict(model, x1).probs.double().numpy(), predict(model, x2).probs.double().numpy()
    pi = np.bincount(train_set.labels.numpy(), minlength=10) / len(train_set)
    prior = digit_prior / digit_prior.sum()
    ref = brute_force(p1, p2, prior, prior, pi, pi, sums)
    np.testing.assert_allclose(post["D1"], ref.sum(2), rtol=0, atol=1e-10)
    np.testing.assert_allclose(post["D2"], ref.sum(1), rtol=0, atol=1e-10)
    np.testing.assert_allclose(post["S"], np.eye(19)[sums], atol=1e-12)

    # Without the sum: S is predicted from the two images.
    free = hm.query("S", images={"D1": x1, "D2": x2})["S"]
    joint = brute_force(p1, p2, prior, prior, pi, pi)
    ref_s = np.stack([[joint[r][np.add.outer(range(10), range(10)) == s].sum()
                       for s in range(19)] for r in range(12)])
    np.testing.assert_allclose(free, ref_s, atol=1e-10)


def test_per_sample_averages_the_posterior_over_weight_draws(digits):
    model = tiny_cnn(BayesianCNN, init_scale=0.3)  # wide posterior: the draws disagree
    hm = HybridModel(digit_sum_network(), {"D1": model, "D2": model})
    _, _, test = digits
    x1, x2 = test.images[:6], test.images[6:12]
    sums = np.array([3, 9, 0, 18, 7, 12])
    torch.manual_seed(7)
    post = hm.query(["D1"], {"D1": x1, "D2": x2}, evidence={"S": sums}, per_sample=True,
                    num_samples=5)["D1"]
    torch.manual_seed(7)
    s1 = predict(model, x1, num_samples=5).sample_probs.double().numpy()
    s2 = predict(model, x2, num_samples=5).sample_probs.double().numpy()
    u = np.full(10, 0.1)
    ref = np.mean([brute_force(s1[k], s2[k], u, u, u, u, sums).sum(2) for k in range(5)], axis=0)
    np.testing.assert_allclose(post, ref, atol=1e-10)
    # ... which is not the posterior under the mean prediction
    mean = brute_force(s1.mean(0), s2.mean(0), u, u, u, u, sums).sum(2)
    assert np.abs(post - mean).max() > 1e-3


def test_class_names_are_matched_to_states_by_name(digits):
    _, _, test = digits
    model = tiny_cnn()
    reordered = tiny_cnn()
    reordered.load_state_dict(model.state_dict())
    reordered.classes_ = [str(d) for d in range(10)]
    bn = digit_sum_network()
    # A network whose D1 lists its states backwards: the classifier's columns must follow.
    states = {"D1": bn.states["D1"][::-1], "D2": bn.states["D2"], "S": bn.states["S"]}
    cpts = {"D1": bn.cpd("D1")[::-1], "D2": bn.cpd("D2"), "S": bn.cpd("S")[:, ::-1, :]}
    flipped = BayesNet(states, {"S": ["D1", "D2"]}, cpts)
    x = {"D1": test.images[:5], "D2": test.images[5:10]}
    sums = {"S": np.array([4, 5, 6, 7, 8])}
    a = HybridModel(bn, {"D1": model, "D2": model}).query("D1", x, sums)["D1"]
    b = HybridModel(flipped, {"D1": reordered, "D2": reordered}).query("D1", x, sums)["D1"]
    np.testing.assert_allclose(a, b[:, ::-1], atol=1e-12)


def test_mixed_classifiers_evidence_frame_and_nodes_without_images(digits):
    _, _, test = digits
    map_model, bayes = tiny_cnn(), tiny_cnn(BayesianCNN, init_scale=0.3)
    bayes.train()  # the query must leave the model's mode alone
    hm = HybridModel(digit_sum_network(), {"D1": map_model, "D2": bayes})
    x1, x2 = test.images[:4], test.images[4:8]
    frame = pd.DataFrame({"S": [5, np.nan, 9, 12]})
    torch.manual_seed(3)
    post = hm.query("D1", {"D1": x1, "D2": x2}, evidence=frame, per_sample=True,
                    num_samples=3)["D1"]
    assert bayes.training
    # the MAP classifier's single draw is shared by all three of the Bayesian one's
    torch.manual_seed(3)
    p1 = predict(map_model, x1, 3).sample_probs.double().numpy()[0]
    s2 = predict(bayes, x2, 3).sample_probs.double().numpy()
    u = np.full(10, 0.1)
    ref = []
    for k in range(3):
        with_sum = brute_force(p1, s2[k], u, u, u, u, np.array([5, 0, 9, 12])).sum(2)
        with_sum[1] = brute_force(p1[1:2], s2[k][1:2], u, u, u, u).sum(2)[0]  # S unobserved
        ref.append(with_sum)
    np.testing.assert_allclose(post, np.mean(ref, axis=0), atol=1e-10)
    # only D1's image: D2 gets no soft evidence, so D1's posterior given S is the formula
    # with a flat likelihood for D2
    only = hm.query("D1", {"D1": x1}, evidence={"S": 9})["D1"]
    np.testing.assert_allclose(only, brute_force(p1, np.ones((4, 10)), u, u, u, u,
                                                 np.full(4, 9)).sum(2), atol=1e-10)


def test_a_batch_is_one_engine_pass(digits, monkeypatch):
    calls = []
    original = BayesNet.marginals

    def counting(self, rows, soft_evidence=None):
        calls.append(len(rows))
        return original(self, rows, soft_evidence)

    monkeypatch.setattr(BayesNet, "marginals", counting)
    model = tiny_cnn(BayesianCNN)
    hm = HybridModel(digit_sum_network(), {"D1": model, "D2": model})
    x = {"D1": digits[2].images[:7], "D2": digits[2].images[7:14]}
    hm.query(["D1", "D2", "S"], x, evidence={"S": 9})
    hm.query("D1", x, per_sample=True, num_samples=5)
    assert calls == [7, 5 * 7]


# ---------------------------------------------------------------------------- class priors
def test_class_prior_sources(digits):
    train_set = digits[0]
    bn = digit_sum_network()
    model, other = tiny_cnn(), tiny_cnn(seed=1)
    hm = HybridModel(bn, {"D1": model, "D2": other})
    assert hm.prior_sources_ == {"D1": "uniform", "D2": "uniform"}
    np.testing.assert_allclose(hm.class_priors_["D1"], 0.1)

    stored = np.arange(1, 11.0)
    model.class_prior_ = torch.tensor(stored)
    hm = HybridModel(bn, {"D1": model, "D2": other})
    assert hm.prior_sources_ == {"D1": "model", "D2": "uniform"}
    np.testing.assert_allclose(hm.class_priors_["D1"], stored / stored.sum())

    # an explicit argument wins over the stored prior; a dict sets it per node
    hm = HybridModel(bn, {"D1": model, "D2": other}, class_prior={"D2": train_set})
    freq = np.bincount(train_set.labels.numpy(), minlength=10) / len(train_set)
    assert hm.prior_sources_ == {"D1": "model", "D2": "argument"}
    np.testing.assert_allclose(hm.class_priors_["D2"], freq)
    hm = HybridModel(bn, {"D1": model, "D2": other}, class_prior="uniform")
    np.testing.assert_allclose(hm.class_priors_["D1"], 0.1)

    # dividing by the prior: a classifier trained on skewed data is corrected
    x = {"D1": digits[2].images[:4], "D2": digits[2].images[4:8]}
    lik = HybridModel(bn, {"D1": model, "D2": other}, class_prior=stored).likelihoods(x)
    probs = predict(model, x["D1"]).probs.double().numpy()
    np.testing.assert_allclose(lik["D1"], probs / (stored / stored.sum()), rtol=1e-12)


def test_bad_class_priors_raise(digits):
    bn, model = digit_sum_network(), tiny_cnn()
    no_nines = ImageDataset(torch.zeros(9, 1, 8, 8), torch.arange(9), [str(d) for d in range(10)])
    with pytest.raises(ModelError, match="never occur"):
        HybridModel(bn, {"D1": model}, class_prior=no_nines)
    with pytest.raises(ModelError, match="10 states"):
        HybridModel(bn, {"D1": model}, class_prior=np.ones(9))
    with pytest.raises(ModelError, match="positive"):
        HybridModel(bn, {"D1": model}, class_prior=np.r_[0.0, np.ones(9)])


# ---------------------------------------------------------------------------- bad input
def test_bad_input_raises_clear_errors(digits):
    bn, model = digit_sum_network(), tiny_cnn()
    images = digits[2].images
    with pytest.raises(ModelError, match="not a node"):
        HybridModel(bn, {"X": model})
    three = DeterministicCNN(in_channels=1, num_classes=3, image_size=(8, 8), **TINY)
    with pytest.raises(ModelError, match="predicts 3 classes but the node has 10"):
        HybridModel(bn, {"D1": three})
    with pytest.raises(ModelError):
        HybridModel(bn, {})
    with pytest.raises(ModelError, match="HybridModel takes probdl's BayesianCNN"):
        HybridModel(bn, {"D1": torch.nn.Linear(64, 10)})
    hm = HybridModel(bn, {"D1": model, "D2": model})
    with pytest.raises(DataError, match="differ in size"):
        hm.query("D1", {"D1": images[:4], "D2": images[:5]})
    with pytest.raises(InferenceError, match="no classifier"):
        hm.query("D1", {"S": images[:4]})
    with pytest.raises(InferenceError, match="unknown target"):
        hm.query("Z", {"D1": images[:4]})
    with pytest.raises(InferenceError, match="unknown variable"):
        hm.query("D1", {"D1": images[:4]}, evidence={"Q": "1"})
    with pytest.raises(DataError, match="one state per case"):
        hm.query("D1", {"D1": images[:4]}, evidence={"S": [1, 2, 3]})
    with pytest.raises(ProbdlError):
        hm.query("D1", {"D1": images[:4]}, evidence={"S": "42"})
    with pytest.raises(DataError):
        hm.query("D1", {"D1": torch.zeros(4, 3, 8, 8)})


# ---------------------------------------------------------------------------- the demonstration
def test_sum_raises_digit_accuracy_on_the_test_split(digits):
    train_set, val, test = digits
    model = BayesianCNN(in_channels=1, num_classes=10, image_size=(8, 8), filters=(16,),
                        dense=(64,))
    train(model, train_set, val, epochs=4, progress=False)  # lr 3e-3, train's default
    hm = HybridModel(digit_sum_network(), {"D1": model, "D2": model}, class_prior=train_set)
    scores = digit_sum_accuracy(hm, test, num_samples=8)
    assert scores["pairs"] == len(test)
    out = digit_sum_pairs(hm, test, num_samples=8)
    assert sorted(out["first"]) == sorted(out["second"]) == list(range(len(test)))
    assert (out["truth"].sum(1) == out["sums"]).all()
    np.testing.assert_allclose(out["S"], np.eye(19)[out["sums"]], atol=1e-12)
    assert 0.3 < scores["cnn_accuracy"] < scores["hybrid_accuracy"]
    # the CNN-alone figure is the classifier's own accuracy on the whole split
    alone = (predict(model, test.images, 8).labels == test.labels).float().mean()
    assert abs(scores["cnn_accuracy"] - float(alone)) < 0.05


# ---------------------------------------------------------------------------- learning from sums
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
    model = tiny_cnn(BayesianCNN, init_scale=1e-12).eval()  # weight draw = posterior mean
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
