"""Classification and uncertainty metrics over predicted class probabilities.

    import numpy as np
    from probdl import metrics
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    labels = np.array([0, 1, 1])
    metrics.accuracy(probs, labels), metrics.nll(probs, labels), metrics.ece(probs, labels)

Every function takes ``probs`` of shape (N, K) (rows sum to one) and integer ``labels`` (N,), as
numpy arrays or torch tensors, and returns plain floats or numpy arrays computed in float64.
Shared by ``probdl.bnn`` and ``probdl.hybrid``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from probdl.errors import DataError

__all__ = [
    "accuracy",
    "aupr",
    "auroc",
    "brier",
    "classification_report",
    "confusion_matrix",
    "ece",
    "entropy",
    "fpr_at_tpr",
    "mutual_information",
    "nll",
    "precision_recall_f1",
    "reliability_bins",
    "risk_coverage",
]

_EPS = 1e-12


def _np(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _check(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    p = _np(probs).astype(np.float64)
    y = _np(labels)
    if p.ndim != 2 or y.ndim != 1 or len(p) != len(y):
        raise DataError(f"metrics: need probs (N, K) and labels (N,), got {p.shape} and {y.shape}.")
    if len(y) == 0:
        raise DataError("metrics: no examples to score.")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise DataError("metrics: labels must be whole class indices.")
        y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise DataError(
            f"metrics: labels must lie in 0..{p.shape[1] - 1} for {p.shape[1]} classes, found "
            f"{y.min()}..{y.max()}."
        )
    return p, y.astype(np.int64)


def accuracy(probs: Any, labels: Any) -> float:
    """Fraction of examples whose most probable class is the label."""
    p, y = _check(probs, labels)
    return float(np.mean(p.argmax(1) == y))


def nll(probs: Any, labels: Any) -> float:
    """Mean negative log-probability of the true class (natural log)."""
    p, y = _check(probs, labels)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], _EPS, None))))


def brier(probs: Any, labels: Any) -> float:
    """Mean over examples of the squared distance between probs and the one-hot label."""
    p, y = _check(probs, labels)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def confusion_matrix(probs: Any, labels: Any) -> np.ndarray:
    """(K, K) counts: row = true class, column = predicted class (scikit-learn's layout)."""
    p, y = _check(probs, labels)
    k = p.shape[1]
    return np.bincount(y * k + p.argmax(1), minlength=k * k).reshape(k, k)


def precision_recall_f1(probs: Any, labels: Any) -> tuple[float, float, float]:
    """Macro-averaged precision, recall and F1 over the classes present in labels or
    predictions (as scikit-learn's ``average="macro"``; 0 where undefined)."""
    cm = confusion_matrix(probs, labels).astype(np.float64)
    tp = np.diag(cm)
    predicted, actual = cm.sum(0), cm.sum(1)
    present = (predicted + actual) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
    return (
        float(precision[present].mean()),
        float(recall[present].mean()),
        float(f1[present].mean()),
    )


def reliability_bins(probs: Any, labels: Any, bins: int = 15) -> dict[str, np.ndarray]:
    """Equal-width confidence bins: per bin the mean confidence, accuracy and count."""
    p, y = _check(probs, labels)
    if bins < 1:
        raise DataError(f"metrics: bins must be >= 1, got {bins}.")
    conf = p.max(1)
    correct = (p.argmax(1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # bin b holds confidences in (edges[b], edges[b+1]]; confidence 0 cannot occur for K >= 1
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore"):
        mean_conf = np.bincount(which, conf, minlength=bins) / count
        mean_acc = np.bincount(which, correct, minlength=bins) / count
    return {"edges": edges, "confidence": mean_conf, "accuracy": mean_acc, "count": count}


def ece(probs: Any, labels: Any, bins: int = 15) -> float:
    """Expected calibration error: sum over bins of |accuracy - confidence| * share of examples."""
    r = reliability_bins(probs, labels, bins)
    full = r["count"] > 0
    gap = np.abs(r["accuracy"][full] - r["confidence"][full])
    return float(np.sum(gap * r["count"][full]) / r["count"].sum())


def entropy(probs: Any) -> np.ndarray:
    """Shannon entropy (nats) of each row of ``probs`` (..., K)."""
    p = _np(probs).astype(np.float64)
    return -np.sum(p * np.log(np.clip(p, _EPS, None)), axis=-1)


def mutual_information(sample_probs: Any) -> np.ndarray:
    """Epistemic uncertainty from (S, N, K) per-sample probs: H[mean p] - mean H[p]."""
    sp = _np(sample_probs).astype(np.float64)
    if sp.ndim != 3:
        raise DataError(f"metrics: sample_probs must be (S, N, K), got {sp.shape}.")
    return np.clip(entropy(sp.mean(0)) - entropy(sp).mean(0), 0.0, None)


def auroc(scores_positive: Any, scores_negative: Any) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties count 1/2.

    With uncertainty scores, pass the out-of-distribution examples' scores as positives.
    """
    pos = _np(scores_positive).astype(np.float64).ravel()
    neg = _np(scores_negative).astype(np.float64).ravel()
    if len(pos) == 0 or len(neg) == 0:
        raise DataError("metrics: auroc needs at least one positive and one negative score.")
    both = np.concatenate([pos, neg])
    order = both.argsort(kind="mergesort")
    ranks = np.empty(len(both))
    sorted_scores = both[order]
    # average ranks over ties (Mann-Whitney U)
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(both)]
    avg = (starts + ends - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, ends - starts)
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


def _ranked(scores_positive: Any, scores_negative: Any) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives at each distinct threshold, highest score first."""
    pos = _np(scores_positive).astype(np.float64).ravel()
    neg = _np(scores_negative).astype(np.float64).ravel()
    if len(pos) == 0 or len(neg) == 0:
        raise DataError("metrics: need at least one positive and one negative score.")
    scores = np.concatenate([pos, neg])
    truth = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    order = np.argsort(-scores, kind="mergesort")
    scores, truth = scores[order], truth[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # end of each tie group
    tps = np.cumsum(truth)[last]
    return tps, (last + 1) - tps


def aupr(scores_positive: Any, scores_negative: Any) -> float:
    """Area under the precision-recall curve with the positives as the class to find.

    Average precision, sum_k (R_k - R_{k-1}) P_k over the distinct thresholds (scikit-learn's
    ``average_precision_score``); with OOD scores as positives this is "AUPR-out".
    """
    tps, fps = _ranked(scores_positive, scores_negative)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def fpr_at_tpr(scores_positive: Any, scores_negative: Any, tpr: float = 0.95) -> float:
    """False-positive rate at the first threshold whose true-positive rate reaches ``tpr``.

    With OOD scores as positives, "FPR95": the share of in-distribution examples flagged when
    95% of the out-of-distribution ones are.
    """
    if not 0.0 < tpr <= 1.0:
        raise DataError(f"metrics: tpr must lie in (0, 1], got {tpr}.")
    tps, fps = _ranked(scores_positive, scores_negative)
    rates = tps / tps[-1]
    k = int(np.searchsorted(rates, tpr - 1e-12, side="left"))
    return float(fps[k] / fps[-1]) if fps[-1] > 0 else 0.0


def risk_coverage(confidence: Any, correct: Any) -> dict[str, np.ndarray | float]:
    """Selective prediction: keep the most confident examples first.

    Returns ``coverage`` (k/N for k = 1..N), ``risk`` (error rate among the k kept),
    ``threshold`` (the k-th highest confidence) and ``aurc`` (mean risk over coverages).
    """
    c = _np(confidence).astype(np.float64).ravel()
    ok = _np(correct).astype(np.float64).ravel()
    if len(c) != len(ok) or len(c) == 0:
        raise DataError("metrics: risk_coverage needs equal, non-empty confidence and correct.")
    order = np.argsort(-c, kind="mergesort")
    errors = np.cumsum(1.0 - ok[order])
    k = np.arange(1, len(c) + 1)
    risk = errors / k
    return {"coverage": k / len(c), "risk": risk, "threshold": c[order], "aurc": float(risk.mean())}


def classification_report(probs: Any, labels: Any, bins: int = 15) -> dict[str, Any]:
    """accuracy, precision, recall, f1 (macro), confusion_matrix, nll, ece, brier in one dict."""
    precision, recall, f1 = precision_recall_f1(probs, labels)
    return {
        "accuracy": accuracy(probs, labels),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "nll": nll(probs, labels),
        "ece": ece(probs, labels, bins),
        "brier": brier(probs, labels),
        "confusion_matrix": confusion_matrix(probs, labels),
    }
