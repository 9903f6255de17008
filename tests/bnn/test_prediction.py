"""predict() and evaluate(): the uncertainty decomposition, baselines, selective prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from probdl.bnn import (
    BayesianCNN,
    DeterministicCNN,
    MCDropoutCNN,
    Prediction,
    evaluate,
    predict,
    train,
)
from probdl.errors import DataError, InferenceError
from tests.bnn.conftest import TINY


@pytest.fixture
def bayesian():
    model = BayesianCNN(1, 10, (8, 8), init_scale=0.05, **TINY)
    return model.eval()


def test_prediction_is_the_mean_of_weight_draws_and_decomposes_entropy(bayesian):
    x = torch.rand(20, 1, 8, 8)
    torch.manual_seed(5)
    pred = predict(bayesian, x, num_samples=16)
    assert pred.sample_probs.shape == (16, 20, 10)
    torch.testing.assert_close(pred.probs, pred.sample_probs.mean(0))
    # the same draws, one network at a time
    torch.manual_seed(5)
    loc, scale = bayesian.posterior_loc(), bayesian.posterior_scale()
    w = loc + scale * torch.randn(16, loc.shape[0])
    loop = torch.stack(
        [
            torch.softmax(bayesian.architecture.forward(x, bayesian._params(w[i])), -1)
            for i in range(16)
        ]
    )
    torch.testing.assert_close(pred.sample_probs, loop.detach(), rtol=1e-4, atol=1e-5)
    p = pred.sample_probs.double()
    entropy = -(p.mean(0) * p.mean(0).log()).sum(-1)
    expected_entropy = -(p * p.log()).sum(-1).mean(0)
    torch.testing.assert_close(pred.entropy.double(), entropy, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(pred.aleatoric.double(), expected_entropy, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(pred.entropy, pred.aleatoric + pred.epistemic, rtol=1e-4, atol=1e-5)
    assert (pred.epistemic >= 0).all()
    torch.testing.assert_close(pred.confidence, pred.probs.max(1).values)
    assert torch.equal(pred.labels, pred.probs.argmax(1))


def test_map_model_makes_one_pass_and_mc_dropout_many():
    x = torch.rand(7, 1, 8, 8)
    det = DeterministicCNN(1, 10, (8, 8), **TINY).eval()
    pred = predict(det, x, num_samples=8)
    assert pred.sample_probs.shape == (1, 7, 10)
    assert torch.count_nonzero(pred.epistemic) == 0
    torch.testing.assert_close(pred.probs, torch.softmax(det(x), -1).detach())
    mc = MCDropoutCNN(1, 10, (8, 8), **{**TINY, "dropout": 0.5}).eval()
    pred = predict(mc, x, num_samples=8)
    assert pred.sample_probs.shape == (8, 7, 10)
    assert not torch.allclose(pred.sample_probs[0], pred.sample_probs[1])
    assert (pred.epistemic > 0).all()


def test_binary_model_predicts_two_class_probabilities():
    model = BayesianCNN(1, 2, (8, 8), **TINY).eval()
    pred = predict(model, torch.rand(5, 1, 8, 8), 4)
    assert pred.probs.shape == (5, 2)
    torch.testing.assert_close(pred.probs.sum(1), torch.ones(5))


def test_abstain_and_risk_coverage(bayesian):
    pred = predict(bayesian, torch.rand(30, 1, 8, 8), 4)
    threshold = float(pred.confidence.median())
    assert torch.equal(pred.abstain(threshold), pred.confidence < threshold)
    truth = torch.randint(0, 10, (30,))
    rc = pred.risk_coverage(truth)
    kept = pred.confidence.argsort(descending=True)[:10]
    assert rc["risk"][9] == pytest.approx(float((pred.labels[kept] != truth[kept]).float().mean()))
    with pytest.raises(InferenceError):
        pred.abstain(1.5)


def test_evaluate_agrees_with_sklearn(small_digits):
    _, _, te = small_digits
    model = BayesianCNN(1, 10, (8, 8), init_scale=0.05, **TINY).eval()
    noise = torch.rand(40, 1, 8, 8)
    torch.manual_seed(0)
    scores = evaluate(model, te, num_samples=4, ood=noise)
    torch.manual_seed(0)
    probs = predict(model, te.images, 4).probs.double().numpy()
    probs /= probs.sum(1, keepdims=True)  # float32 rounding: sklearn wants exact sums
    y = te.labels.numpy()
    assert scores["accuracy"] == pytest.approx(skm.accuracy_score(y, probs.argmax(1)))
    assert scores["f1"] == pytest.approx(
        skm.f1_score(y, probs.argmax(1), average="macro", zero_division=0), abs=1e-6
    )
    assert scores["nll"] == pytest.approx(skm.log_loss(y, probs, labels=range(10)), rel=1e-4)
    np.testing.assert_array_equal(
        scores["confusion_matrix"], skm.confusion_matrix(y, probs.argmax(1), labels=range(10))
    )
    assert 0 <= scores["auroc_ood"] <= 1 and 0 <= scores["auroc_ood_mi"] <= 1
    assert {"precision", "recall", "ece", "brier"} <= set(scores)
    torch.manual_seed(0)
    pred = predict(model, te.images, 4)
    ood = predict(model, noise, 4)
    truth = np.r_[np.ones(40), np.zeros(len(y))]
    entropy = np.r_[ood.entropy.numpy(), pred.entropy.numpy()]
    assert scores["aupr_ood"] == pytest.approx(skm.average_precision_score(truth, entropy))
    fpr, tpr, _ = skm.roc_curve(truth, entropy, drop_intermediate=False)
    assert scores["fpr95_ood"] == pytest.approx(fpr[np.searchsorted(tpr, 0.95)])
    assert scores["auroc_ood"] == pytest.approx(skm.roc_auc_score(truth, entropy))
    # AURC by hand: error rates among the k most confident, averaged over k = 1..N
    wrong = (pred.labels.numpy() != y)[np.argsort(-pred.confidence.numpy(), kind="stable")]
    risks = np.cumsum(wrong) / np.arange(1, len(y) + 1)
    assert scores["aurc"] == pytest.approx(risks.mean())


def test_bad_prediction_input(bayesian):
    with pytest.raises(DataError, match=r"\(N, 1, 8, 8\)"):
        predict(bayesian, torch.rand(3, 3, 8, 8))
    with pytest.raises(DataError, match=r"\(N, 1, 8, 8\)"):
        predict(bayesian, torch.rand(3, 1, 28, 28))
    x = torch.rand(4, 1, 8, 8)
    x[2, 0, 1, 1] = float("nan")
    with pytest.raises(DataError, match="index 2"):
        predict(bayesian, x)
    for bad in (0, -3, 2.5):
        with pytest.raises(InferenceError, match="num_samples"):
            predict(bayesian, torch.rand(2, 1, 8, 8), num_samples=bad)
    with pytest.raises(DataError, match=r"0\.\.9"):
        evaluate(bayesian, (torch.rand(2, 1, 8, 8), torch.tensor([1, 10])))


def test_images_far_outside_the_training_range_are_refused(small_digits):
    tr, _, te = small_digits
    model = DeterministicCNN(1, 10, (8, 8), **TINY)
    train(model, tr, None, epochs=1, progress=False)
    assert model.pixel_range_ == (0.0, 1.0)
    with pytest.raises(DataError, match="divide by 255"):
        predict(model, te.images * 255)
    with pytest.raises(DataError, match="divide by 255"):
        evaluate(model, (te.images * 255, te.labels))
    with pytest.raises(DataError, match="far outside"):
        predict(model, te.images - 5)
    predict(model, te.images * 1.3)  # a little overshoot (resizing, contrast) is fine


def test_channels_last_images_are_named_as_such():
    model = BayesianCNN(3, 2, (8, 8), **TINY)
    with pytest.raises(DataError, match="channels-last"):
        predict(model, torch.rand(2, 8, 8, 3))


def test_grey_images_without_a_channel_axis_are_accepted(bayesian):
    pred = predict(bayesian, torch.rand(3, 8, 8), 2)
    assert isinstance(pred, Prediction) and len(pred) == 3
    assert pred.class_names == [bayesian.classes_[i] for i in pred.labels]
