"""Figures of the Bayesian CNN: reliability, uncertainty in vs out of distribution, selective
prediction, training curves. Re-exported by :mod:`probdl.plots`.

    from probdl.plots import reliability_diagram
    reliability_diagram(pred.probs, test.labels, "reliability.png")

Every function takes data and a path, writes the PNG atomically and returns the path.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from probdl import metrics
from probdl._io import atomic_write

__all__ = [
    "reliability_diagram",
    "risk_coverage_curve",
    "training_curves",
    "uncertainty_histograms",
]


def _np(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def _save(fig: plt.Figure, path: str | Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    with atomic_write(path) as fh:
        fh.write(buffer.getvalue())
    return Path(path)


def reliability_diagram(
    probs: Any, labels: Any, path: str | Path, bins: int = 15, title: str | None = None
) -> Path:
    """Accuracy against confidence per bin (bars), the diagonal, and the ECE in the title."""
    r = metrics.reliability_bins(probs, labels, bins)
    ece = metrics.ece(probs, labels, bins)
    edges = r["edges"]
    centers = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    full = r["count"] > 0
    fig, (ax, ax_count) = plt.subplots(
        2, 1, figsize=(4.5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.bar(centers[full], r["accuracy"][full], width=width * 0.95, color="tab:blue",
           edgecolor="black", label="accuracy")  # fmt: skip
    low = np.minimum(r["accuracy"], r["confidence"])[full]
    gap = np.abs(r["confidence"] - r["accuracy"])[full]
    ax.bar(centers[full], gap, bottom=low, width=width * 0.95, fill=False, hatch="//",
           edgecolor="tab:red", label="gap to mean confidence")  # fmt: skip
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title or f"Reliability (ECE {ece:.4f}, {bins} bins)")
    ax_count.bar(centers, r["count"], width=width * 0.95, color="gray")
    ax_count.set_yscale("log")
    ax_count.set_xlabel("confidence")
    ax_count.set_ylabel("examples")
    return _save(fig, path)


def uncertainty_histograms(
    in_scores: Any,
    out_scores: Any,
    path: str | Path,
    score: str = "predictive entropy (nats)",
    labels: Sequence[str] = ("in distribution", "out of distribution"),
    title: str | None = None,
) -> Path:
    """Overlaid histograms of an uncertainty score for in- and out-of-distribution inputs,
    with the AUROC of telling them apart by that score."""
    a, b = _np(in_scores).ravel(), _np(out_scores).ravel()
    auroc = metrics.auroc(b, a)
    hi = max(float(a.max()), float(b.max()), 1e-6)
    edges = np.linspace(0.0, hi, 40)
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.hist(a, bins=edges, alpha=0.6, color="tab:blue", label=f"{labels[0]} ({len(a)})")
    ax.hist(b, bins=edges, alpha=0.6, color="tab:orange", label=f"{labels[1]} ({len(b)})")
    ax.set_xlabel(score)
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    ax.set_title(title or f"Uncertainty in vs out of distribution (AUROC {auroc:.3f})")
    return _save(fig, path)


def risk_coverage_curve(
    confidence: Any, correct: Any, path: str | Path, title: str | None = None
) -> Path:
    """Error rate among the kept examples against the share kept, most confident first."""
    rc = metrics.risk_coverage(confidence, correct)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(rc["coverage"], rc["risk"], color="tab:blue")
    ax.axhline(rc["risk"][-1], color="gray", ls=":", lw=1, label="answer everything")
    ax.set_xlabel("coverage (share of examples answered)")
    ax.set_ylabel("risk (error rate among answered)")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.set_title(title or f"Risk-coverage (AURC {rc['aurc']:.4f})")
    return _save(fig, path)


def training_curves(
    history: Sequence[Mapping[str, float]], path: str | Path, title: str | None = None
) -> Path:
    """Training loss (negative ELBO or MAP loss per example) and validation NLL/accuracy."""
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(epochs, [h["loss"] for h in history], marker=".", color="tab:blue")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss per example")
    ax_loss.set_yscale("log")
    if history and "val_nll" in history[0]:
        ax_val.plot(epochs, [h["val_nll"] for h in history], marker=".", color="tab:red",
                    label="val NLL")  # fmt: skip
        ax_val.set_ylabel("validation NLL")
        ax_acc = ax_val.twinx()
        ax_acc.plot(epochs, [h["val_accuracy"] for h in history], marker=".", color="tab:green",
                    label="val accuracy")  # fmt: skip
        ax_acc.set_ylabel("validation accuracy")
        ax_val.legend(loc="upper center", fontsize=8)
        ax_acc.legend(loc="center right", fontsize=8)
    ax_val.set_xlabel("epoch")
    fig.suptitle(title or "Training")
    fig.tight_layout()
    return _save(fig, path)
