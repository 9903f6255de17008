"""Figures as PNG, PDF or SVG files; the only module of probdl that imports matplotlib.

    from probdl import load_digits
    from probdl.plots import image_grid
    image_grid(load_digits().images[:32], "digits.png")

Every function takes data and a path, writes the figure atomically in the format the path's
suffix names (``.png``, ``.pdf`` or ``.svg``; any other suffix is a DataError) and returns the
path.
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
import torch

from probdl import metrics
from probdl.errors import DataError
from probdl.files import atomic_write, figure_format

__all__ = [
    "calibration_curve",
    "em_history",
    "image_grid",
    "network_posteriors",
    "reliability_diagram",
    "risk_coverage_curve",
    "save_figure",
    "training_curves",
    "uncertainty_histograms",
]


# the network drawing's text: font size (points) and the width of one character at it (inches,
# generous for capitals); labels and names longer than _LONGEST characters end in "…"
_FONT = 6.0
_CHAR_W = 0.062
_TITLE_CHAR_W = 0.068
_LONGEST = 40


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 120) -> Path:
    """Render ``fig`` in the format ``path``'s suffix names (png, pdf, svg) and write it
    atomically to ``path``; closes the figure."""
    try:
        fmt = figure_format(path)
    except DataError:
        plt.close(fig)
        raise
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    with atomic_write(path) as fh:
        fh.write(buffer.getvalue())
    return Path(path)


def image_grid(
    images: torch.Tensor | np.ndarray,
    path: str | Path,
    titles: Sequence[str] | None = None,
    columns: int = 8,
) -> Path:
    """A grid of images (N, C, H, W) with values in [0, 1] (clipped), one title each."""
    x = images.detach().cpu().numpy() if torch.is_tensor(images) else np.asarray(images)
    n = len(x)
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.1, rows * 1.2), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = np.clip(x[i], 0.0, 1.0)
        if img.shape[0] == 1:
            ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(img.transpose(1, 2, 0))
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=7)
    return save_figure(fig, path)


def _clip(text: str, most: int = _LONGEST) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


def network_posteriors(
    bn,  # probdl.graph.BayesNet; untyped to keep plots free of a graph import at load time
    posteriors: dict[str, np.ndarray],
    path: str | Path,
    observed: set[str] | None = None,
) -> Path:
    """Draw the network's graph, each node with a bar chart of its posterior.

    Nodes are laid out in layers by topological generation (parents above children); observed
    variables are drawn in orange, the rest in blue. Each panel writes its state labels and
    probabilities inside itself, and panels are as wide as the longest label and name need
    (up to 40 characters), so no text runs into a neighbour.
    """
    import networkx as nx

    graph = bn.graph
    observed = observed or set()
    states = {v: [_clip(str(s)) for s in bn.states[v]] for v in graph.nodes}
    layers = [sorted(layer) for layer in nx.topological_generations(graph)]
    # sizes in inches, from the text they must hold
    label_w = _CHAR_W * (max(len(s) for ss in states.values() for s in ss) + 1)
    number_w = _CHAR_W * 5  # "0.83" and a margin
    name_w = _TITLE_CHAR_W * max(len(_clip(v)) for v in graph.nodes)
    panel_w = max(label_w + number_w + 0.6, name_w, 1.2)
    panel_h = 0.08 + 0.16 * max(len(ss) for ss in states.values())
    layer_h = panel_h + 0.55  # the title above and room for the arrows
    width = max(6.0, max(len(layer) for layer in layers) * (panel_w + 0.3))
    height = len(layers) * layer_h + 0.2
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    box_w, box_h = panel_w / width, panel_h / height
    pos = {node: ((i + 0.5) / len(layer), 1.0 - (depth + 0.5) / len(layers))
           for depth, layer in enumerate(layers) for i, node in enumerate(layer)}
    title_h = 0.2 / height
    for parent, child in graph.edges:
        (x0, y0), (x1, y1) = pos[parent], pos[child]
        # from the bottom of the parent's panel to just above the child's title
        ax.annotate("", xy=(x1, y1 + box_h / 2 + title_h), xytext=(x0, y0 - box_h / 2),
                    arrowprops={"arrowstyle": "-|>", "color": "0.6", "lw": 0.7})
    split = label_w / panel_w  # where the bars start, in the panel's own coordinates
    bar_w = 1.0 - split - number_w / panel_w
    for node, (x, y) in pos.items():
        inset = fig.add_axes((x - box_w / 2, y - box_h / 2, box_w, box_h))
        probs = np.asarray(posteriors[node], dtype=float)
        colour = "tab:orange" if node in observed else "tab:blue"
        rows = np.arange(len(probs))
        inset.barh(rows, probs * bar_w, left=split, height=0.7, color=colour, alpha=0.85)
        for row, label, p in zip(rows, states[node], probs, strict=True):
            inset.text(split - 0.02, row, label, ha="right", va="center", fontsize=_FONT)
            inset.text(0.99, row, f"{p:.2f}", ha="right", va="center", fontsize=_FONT)
        inset.set_xlim(0, 1)
        inset.set_ylim(len(probs) - 0.5, -0.5)
        inset.set_xticks([])
        inset.set_yticks([])
        inset.set_title(_clip(node), fontsize=_FONT + 0.5, pad=2)
    return save_figure(fig, path)


# ---- learning from missing data ----------------------------------------------------------


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
    return save_figure(fig, path)


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
    return save_figure(fig, path)


# ---- the Bayesian CNN ---------------------------------------------------------------------


def _np(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


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
    return save_figure(fig, path)


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
    return save_figure(fig, path)


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
    return save_figure(fig, path)


def training_curves(
    history: Sequence[Mapping[str, float]], path: str | Path, title: str | None = None
) -> Path:
    """Training loss (negative ELBO or MAP loss per example) and validation NLL/accuracy."""
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    losses = np.array([h["loss"] for h in history], dtype=np.float64)
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(epochs, losses, marker=".", color="tab:blue")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss per example")
    # a log axis only where the loss spans a decade or more: over a small range it shows
    # no ticks, or ticks that say nothing
    if len(losses) and (losses > 0).all() and losses.max() >= 10 * losses.min():
        ax_loss.set_yscale("log")
    for ax in (ax_loss, ax_val):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # whole epochs
        if epochs:  # half an epoch either side: a short run still spans a whole number
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
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
    return save_figure(fig, path)
