"""Figures as PNG files; the only module of probdl that imports matplotlib.

    from probdl import load_digits
    from probdl.plots import image_grid
    image_grid(load_digits().images[:32], "digits.png")

Every function takes data and a path, writes the PNG atomically and returns the path.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from probdl._io import atomic_write

__all__ = ["image_grid", "network_posteriors", "save_figure"]


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 120) -> Path:
    """Render ``fig`` to PNG and write it atomically to ``path``; closes the figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
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


def network_posteriors(
    bn,  # probdl.graph.BayesNet; untyped to keep plots free of a graph import at load time
    posteriors: dict[str, np.ndarray],
    path: str | Path,
    observed: set[str] | None = None,
) -> Path:
    """Draw the network's graph, each node with a bar chart of its posterior.

    Nodes are laid out in layers by topological generation (parents above children); observed
    variables are drawn in orange, the rest in blue.
    """
    import networkx as nx

    graph = bn.graph
    observed = observed or set()
    layers = list(nx.topological_generations(graph))
    pos: dict[str, tuple[float, float]] = {}
    for depth, layer in enumerate(layers):
        for i, node in enumerate(sorted(layer)):
            pos[node] = ((i + 0.5) / len(layer), 1.0 - (depth + 0.5) / len(layers))
    width = max(6.0, 1.6 * max(len(layer) for layer in layers))
    fig = plt.figure(figsize=(width, 1.6 * len(layers) + 0.5))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    box_w, box_h = 0.8 / width * 1.4, 0.55 / len(layers)
    for parent, child in graph.edges:
        (x0, y0), (x1, y1) = pos[parent], pos[child]
        # from the bottom of the parent's box to just above the child's title
        ax.annotate("", xy=(x1, y1 + box_h * 0.62), xytext=(x0, y0 - box_h / 2),
                    arrowprops={"arrowstyle": "-|>", "color": "0.55", "lw": 0.8})
    for node, (x, y) in pos.items():
        inset = fig.add_axes((x - box_w / 2, y - box_h / 2, box_w, box_h))
        probs = np.asarray(posteriors[node], dtype=float)
        labels = [str(s) for s in bn.states[node]]
        colour = "tab:orange" if node in observed else "tab:blue"
        inset.barh(range(len(probs)), probs, color=colour)
        inset.set_xlim(0, 1)
        inset.set_yticks(range(len(probs)), [lab[:10] for lab in labels], fontsize=5)
        inset.set_xticks([])
        inset.invert_yaxis()
        inset.set_title(node[:18], fontsize=6, pad=1)
        inset.tick_params(length=0)
    return save_figure(fig, path)


# Figures of the two halves, written beside their code while it grew; plots is their one face.
from probdl._bnn_plots import (  # noqa: E402
    reliability_diagram,
    risk_coverage_curve,
    training_curves,
    uncertainty_histograms,
)
from probdl._em_plots import calibration_curve, em_history  # noqa: E402

__all__ += [
    "calibration_curve",
    "em_history",
    "reliability_diagram",
    "risk_coverage_curve",
    "training_curves",
    "uncertainty_histograms",
]
