"""Stratified, disjoint, reproducible train/validation/test splits.

    from probdl.data import load_digits, split
    train, val, test = split(load_digits(), val=0.15, test=0.2, seed=0)
"""

from __future__ import annotations

import hashlib

import numpy as np

from probdl.data.dataset import ImageDataset
from probdl.errors import DataError

__all__ = ["fingerprint", "split", "split_indices"]


def fingerprint(dataset: ImageDataset) -> str:
    """A short hash of a dataset's images, labels and class names: the same data, the same hash."""
    h = hashlib.sha256()
    h.update(str(tuple(dataset.images.shape)).encode())
    h.update(dataset.images.contiguous().numpy().tobytes())
    h.update(dataset.labels.contiguous().numpy().tobytes())
    h.update("\x1f".join(dataset.classes).encode())
    return h.hexdigest()[:16]


def split_indices(
    labels: np.ndarray, val: float = 0.15, test: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of a stratified split: each class is divided in the same proportions.

    Every class keeps at least one example in train; a class with too few examples for the
    validation or test share gives them none rather than emptying train.
    """
    if not (0.0 <= val < 1.0 and 0.0 <= test < 1.0 and val + test < 1.0):
        raise DataError(
            f"split: val={val} and test={test} must be fractions in [0, 1) that leave some "
            "data for training (val + test < 1)."
        )
    labels = np.asarray(labels)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise DataError(f"seed must be a whole number >= 0, got {seed!r}.")
    rng = np.random.default_rng(seed)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n = len(members)
        n_test = round(n * test)
        n_val = round(n * val)
        if n - n_test - n_val < 1:
            raise DataError(
                f"split: class {cls} has only {n} example(s); val={val}, test={test} would "
                "leave none of it in train. Lower the fractions or gather more examples."
            )
        parts[2].append(members[:n_test])
        parts[1].append(members[n_test : n_test + n_val])
        parts[0].append(members[n_test + n_val :])
    return tuple(np.sort(np.concatenate(p)).astype(np.int64) for p in parts)  # type: ignore[return-value]


def split(
    dataset: ImageDataset, val: float = 0.15, test: float = 0.2, seed: int = 0
) -> tuple[ImageDataset, ImageDataset, ImageDataset]:
    """Split into train, validation and test datasets, stratified by class.

    Each part carries ``split_info`` (``part``, ``seed``, ``val``, ``test`` and the whole
    dataset's :func:`fingerprint`): ``train`` stores the training part's with the model, and
    ``evaluate`` refuses a part of another split of the same data.

    Parameters
    ----------
    dataset : ImageDataset
    val, test : float
        Fractions of each class for validation and test; the rest is training data.
    seed : int
        The same seed always gives the same split.
    """
    if len(dataset) == 0:
        raise DataError("split: the dataset is empty.")
    train_idx, val_idx, test_idx = split_indices(dataset.labels.numpy(), val, test, seed)
    info = {"seed": int(seed), "val": float(val), "test": float(test),
            "fingerprint": fingerprint(dataset)}  # fmt: skip
    parts = tuple(dataset.subset(i) for i in (train_idx, val_idx, test_idx))
    for name, part in zip(("train", "val", "test"), parts, strict=True):
        part.split_info = {"part": name, **info}
    return parts  # type: ignore[return-value]
