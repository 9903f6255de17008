"""probdl.metrics against scikit-learn and brute-force definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from probdl import metrics
from probdl.errors import DataError


def _random_problem(n=300, k=5, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.where(rng.random(n) < 0.7, probs.argmax(1), rng.integers(0, k, n))
    return probs, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_metrics_match_sklearn(seed):
    probs, labels = _random_problem(seed=seed)
    pred = probs.argmax(1)
    assert metrics.accuracy(probs, labels) == pytest.approx(skm.accuracy_score(labels, pred))
    p, r, f1 = metrics.precision_recall_f1(probs, labels)
    sp, sr, sf, _ = skm.precision_recall_fscore_support(
        labels, pred, average="macro", zero_division=0
    )
    assert (p, r, f1) == pytest.approx((sp, sr, sf))
    np.testing.assert_array_equal(
        metrics.confusion_matrix(probs, labels), skm.confusion_matrix(labels, pred, labels=range(5))
    )
    assert metrics.nll(probs, labels) == pytest.approx(skm.log_loss(labels, probs, labels=range(5)))


def test_macro_scores_skip_classes_never_seen_like_sklearn():
    probs = np.eye(4)[[0, 0, 1, 1, 1]] * 0.9 + 0.025
    labels = np.array([0, 1, 1, 1, 0])
    sp, sr, sf, _ = skm.precision_recall_fscore_support(
        labels, probs.argmax(1), average="macro", zero_division=0
    )
    assert metrics.precision_recall_f1(probs, labels) == pytest.approx((sp, sr, sf))


def test_brier_multiclass_and_binary_against_sklearn():
    probs, labels = _random_problem(k=2)
    # sklearn's binary Brier is mean (p1 - y)^2; the two-class sum counts both classes: twice it
    assert metrics.brier(probs, labels) == pytest.approx(
        2 * skm.brier_score_loss(labels, probs[:, 1])
    )
    probs, labels = _random_problem(k=4)
    onehot = np.eye(4)[labels]
    assert metrics.brier(probs, labels) == pytest.approx(np.mean(((probs - onehot) ** 2).sum(1)))


def _ece_loop(probs, labels, bins):
    total = 0.0
    conf, pred = probs.max(1), probs.argmax(1)
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = [i for i in range(len(conf)) if lo < conf[i] <= hi]
        if inside:
            acc = np.mean([pred[i] == labels[i] for i in inside])
            total += abs(acc - np.mean(conf[inside])) * len(inside) / len(conf)
    return total


@pytest.mark.parametrize("bins", [1, 10, 15])
def test_ece_matches_a_loop_over_bins(bins):
    probs, labels = _random_problem(seed=bins)
    assert metrics.ece(probs, labels, bins) == pytest.approx(_ece_loop(probs, labels, bins))


def test_ece_of_a_calibrated_predictor_is_small_and_of_an_overconfident_one_large():
    rng = np.random.default_rng(0)
    p1 = rng.uniform(0.5, 1.0, 20000)
    y = (rng.random(20000) < p1).astype(int)  # class 1 with exactly the stated probability
    probs = np.stack([1 - p1, p1], 1)
    assert metrics.ece(probs, y) < 0.01
    assert metrics.ece(np.stack([1 - p1**0.1, p1**0.1], 1), y) > 0.1


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    pos = rng.integers(0, 5, 40).astype(float)
    neg = rng.integers(0, 4, 60).astype(float)
    expected = skm.roc_auc_score(np.r_[np.ones(40), np.zeros(60)], np.r_[pos, neg])
    assert metrics.auroc(pos, neg) == pytest.approx(expected)
    assert metrics.auroc(torch.tensor([3.0]), torch.tensor([1.0, 2.0])) == 1.0


@pytest.mark.parametrize("ties", [False, True])
def test_aupr_and_fpr95_match_sklearn(ties):
    rng = np.random.default_rng(3)
    pos, neg = rng.normal(1.0, 1.0, 70), rng.normal(0.0, 1.0, 130)
    if ties:
        pos, neg = pos.round(), neg.round()
    truth, scores = np.r_[np.ones(70), np.zeros(130)], np.r_[pos, neg]
    assert metrics.aupr(pos, neg) == pytest.approx(skm.average_precision_score(truth, scores))
    fpr, tpr, _ = skm.roc_curve(truth, scores, drop_intermediate=False)
    expected = fpr[np.searchsorted(tpr, 0.95, side="left")]
    assert metrics.fpr_at_tpr(pos, neg, 0.95) == pytest.approx(expected)
    # separable: everything found before any negative is flagged
    assert metrics.fpr_at_tpr([5.0, 6.0], [1.0, 2.0]) == 0.0
    assert metrics.aupr([5.0, 6.0], [1.0, 2.0]) == 1.0
    with pytest.raises(DataError):
        metrics.aupr([], [1.0])


def test_entropy_and_mutual_information_closed_forms():
    assert metrics.entropy(np.full(4, 0.25)) == pytest.approx(np.log(4))
    # two confident samples that disagree: predictive entropy log 2, expected entropy ~0
    sample_probs = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    assert metrics.mutual_information(sample_probs)[0] == pytest.approx(np.log(2))
    agree = np.array([[[0.5, 0.5]], [[0.5, 0.5]]])
    assert metrics.mutual_information(agree)[0] == pytest.approx(0.0)


def test_risk_coverage_by_brute_force():
    rng = np.random.default_rng(1)
    conf = rng.random(50)
    correct = rng.random(50) < conf
    rc = metrics.risk_coverage(conf, correct)
    for k in (1, 10, 50):
        kept = np.argsort(-conf)[:k]
        assert rc["risk"][k - 1] == pytest.approx(1 - correct[kept].mean())
    assert rc["coverage"][-1] == 1.0
    assert rc["aurc"] == pytest.approx(rc["risk"].mean())


def test_reliability_bins_count_every_example():
    probs, labels = _random_problem()
    r = metrics.reliability_bins(probs, labels, 15)
    assert r["count"].sum() == len(labels)
    report = metrics.classification_report(probs, labels)
    assert set(report) >= {"accuracy", "precision", "recall", "f1", "nll", "ece", "brier"}


@pytest.mark.parametrize(
    "probs, labels",
    [
        (np.full((3, 2), 0.5), np.array([0, 1, 2])),
        (np.full((3, 2), 0.5), np.array([0, 1])),
        (np.full((3,), 0.5), np.array([0, 1, 1])),
        (np.full((3, 2), 0.5), np.array([0.5, 1, 1])),
        (np.zeros((0, 2)), np.zeros(0, dtype=int)),
    ],
)
def test_bad_inputs_raise_data_error(probs, labels):
    with pytest.raises(DataError):
        metrics.accuracy(probs, labels)
