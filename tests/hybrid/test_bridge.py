"""probdl.hybrid.bridge: HybridModel against brute-force enumeration over the 100 digit pairs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from probdl.bnn import BayesianCNN, DeterministicCNN, predict
from probdl.data import ImageDataset
from probdl.errors import DataError, InferenceError, ModelError, ProbdlError
from probdl.graph import BayesNet
from probdl.hybrid import (
    HybridModel,
    digit_sum_network,
)
from tests.hybrid.helpers import TINY, brute_force, tiny_cnn


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
