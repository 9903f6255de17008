"""Datasets that need no download: scikit-learn's digits and procedural colour shapes.

    from probdl.data import load_digits, make_shapes
    digits = load_digits()                 # 1,797 real 8x8 grey digits
    shapes = make_shapes(300, size=32)     # circles, squares and triangles in colour
"""

from __future__ import annotations

import numpy as np

from probdl.data.dataset import ImageDataset
from probdl.errors import DataError

__all__ = ["SHAPE_CLASSES", "load_digits", "make_shapes"]

SHAPE_CLASSES = ["circle", "square", "triangle"]


def load_digits() -> ImageDataset:
    """scikit-learn's 1,797 handwritten 8x8 digits, scaled to [0, 1], shape (N, 1, 8, 8)."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]
    return ImageDataset(images, bunch.target, [str(d) for d in range(10)], source="digits")


def make_shapes(
    n: int, size: int = 32, channels: int = 3, seed: int = 0, noise: float = 0.05
) -> ImageDataset:
    """Procedural images of circles, squares and triangles.

    Each shape has a random centre, scale and colour on a darker random background, with a
    little pixel noise, so the classes are learnable but not trivial.

    Parameters
    ----------
    n : int
        Number of images; classes are balanced (cycled) and then shuffled.
    size : int
        Height and width in pixels (at least 8).
    channels : int
        1 (grey) or 3 (colour).
    seed : int
        Seed of the generator; the same seed gives the same images.
    noise : float
        Standard deviation of Gaussian pixel noise.
    """
    if n < 1:
        raise DataError(f"make_shapes: n must be at least 1, got {n}.")
    if size < 8:
        raise DataError(f"make_shapes: size must be at least 8 pixels, got {size}.")
    if channels not in (1, 3):
        raise DataError(f"make_shapes: channels must be 1 or 3, got {channels}.")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(SHAPE_CLASSES))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    images = np.empty((n, channels, size, size), dtype=np.float32)
    for i, label in enumerate(labels):
        radius = rng.uniform(0.18, 0.35) * size
        cy, cx = rng.uniform(radius, size - radius, size=2)
        dy, dx = yy - cy, xx - cx
        if label == 0:
            mask = dy**2 + dx**2 <= radius**2
        elif label == 1:
            half = radius * 0.85
            mask = (np.abs(dy) <= half) & (np.abs(dx) <= half)
        else:  # upward triangle: below the apex, above the base, inside both slanted edges
            mask = (dy <= radius * 0.8) & (dy >= -radius) & (np.abs(dx) <= (dy + radius) * 0.6)
        background = rng.uniform(0.0, 0.35, size=channels)
        colour = rng.uniform(0.55, 1.0, size=channels)
        img = np.where(mask[None], colour[:, None, None], background[:, None, None])
        img = img + rng.normal(0.0, noise, size=img.shape)
        images[i] = np.clip(img, 0.0, 1.0)
    return ImageDataset(images, labels, SHAPE_CLASSES, source="shapes")
