"""Tiny models and data shared by the probdl.bnn tests (kept small: the suite has a time budget)."""

from __future__ import annotations

import pytest
import torch

from probdl.data import ImageDataset, load_digits, split

TINY = {"filters": (8, 16), "dense": (32,), "dropout": 0.1}


@pytest.fixture(scope="session")
def digits_splits():
    return split(load_digits(), val=0.15, test=0.2, seed=0)


@pytest.fixture(scope="session")
def small_digits(digits_splits):
    """Subsets of the digits split: 400 train, 120 val, 150 test."""
    tr, va, te = digits_splits
    return (
        ImageDataset(tr.images[:400], tr.labels[:400], tr.classes),
        ImageDataset(va.images[:120], va.labels[:120], va.classes),
        ImageDataset(te.images[:150], te.labels[:150], te.classes),
    )


def random_images(n: int, c: int = 1, h: int = 8, w: int = 8) -> torch.Tensor:
    return torch.rand(n, c, h, w)
