"""probdl.hybrid.digit_sums: the network is the sum, and the sum corrects the classifier."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from probdl.bnn import BayesianCNN, predict, train
from probdl.errors import ModelError
from probdl.hybrid import (
    HybridModel,
    digit_sum_accuracy,
    digit_sum_network,
    digit_sum_pairs,
)


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


def test_digit_prior_is_checked_like_a_class_prior():
    bn = digit_sum_network(num_digits=3, digit_prior=[1, 2, 1])
    np.testing.assert_allclose(bn.cpd("D1"), [0.25, 0.5, 0.25])
    with pytest.raises(ModelError, match="digit_prior has 2 entries but the node has 3 states"):
        digit_sum_network(num_digits=3, digit_prior=[1, 2])
    with pytest.raises(ModelError, match=r"digit_prior must be positive and finite.*every digit"):
        digit_sum_network(num_digits=3, digit_prior=[1, 0, 1])
    with pytest.raises(ModelError, match="digit_prior is not numeric"):
        digit_sum_network(num_digits=3, digit_prior=["a", "b", "c"])
