"""Figures for learning from missing data; re-exported by :mod:`probdl.plots`.

    from probdl.plots import em_history
    fitted = bn.fit(rows, latent={"H": 2})
    em_history(fitted.history_, "em.png")

Each function takes data and a path, writes the PNG atomically and returns the path.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from probdl._io import atomic_write

__all__ = ["calibration_curve", "em_history"]


def _save(fig: plt.Figure, path: str | Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    with atomic_write(path) as fh:
        fh.write(buffer.getvalue())
    return Path(path)


def em_history(
    history: np.ndarray | Mapping[str, np.ndarray], path: str | Path, title: str | None = None
) -> Path:
    """The EM objective (log-likelihood plus prior term) per iteration, and its gain per step.

    ``history`` is one ``fitted.history_`` or a dict label -> history (e.g. several networks or
    restarts). Left: the objective. Right: the gain of each iteration on a log scale; a gain
    below zero (EM going downhill, which must not happen) is marked with a red cross at 1e-16.
    """
    runs = dict(history) if isinstance(history, Mapping) else {"EM": history}
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    for label, values in runs.items():
        values = np.asarray(values, dtype=np.float64)
        steps = np.arange(len(values))
        left.plot(steps, values, marker="o", markersize=3, label=label)
        gain = np.diff(values)
        up = gain > 0
        right.semilogy(steps[1:][up], gain[up], marker="o", markersize=3, label=label)
        if (~up).any():
            right.plot(steps[1:][~up], np.full((~up).sum(), 1e-16), "x", color="red",
                       label=f"{label}: no gain / loss")
    left.set_xlabel("EM iteration")
    left.set_ylabel("log-likelihood + prior term")
    left.set_title(title or "EM objective per iteration")
    right.set_xlabel("EM iteration")
    right.set_ylabel("gain over the previous iteration")
    right.set_title("gain per iteration (log scale)")
    for ax in (left, right):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def calibration_curve(
    confidence: np.ndarray, correct: np.ndarray, path: str | Path, bins: int = 10,
    title: str | None = None,
) -> Path:
    """Reliability diagram of imputed cells: accuracy of the MAP state against its posterior."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
    filled = [b for b in range(bins) if (which == b).any()]
    ax.plot([confidence[which == b].mean() for b in filled],
            [correct[which == b].mean() for b in filled], marker="o", label="imputed cells")
    ax.set_xlabel("posterior of the imputed state")
    ax.set_ylabel("fraction imputed correctly")
    ax.set_title(title or "Calibration of imputed cells")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    return _save(fig, path)
