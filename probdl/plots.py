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

__all__ = ["image_grid", "save_figure"]


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
