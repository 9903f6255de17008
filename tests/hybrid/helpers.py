"""Shared by the hybrid tests: a tiny CNN and the brute-force posterior over digit pairs."""

from __future__ import annotations

import itertools

import numpy as np

from probdl.bnn import DeterministicCNN

TINY = {"filters": (4,), "dense": (8,)}


def tiny_cnn(kind=DeterministicCNN, seed=0, **kwargs):
    return kind(in_channels=1, num_classes=10, image_size=(8, 8), seed=seed, **{**TINY, **kwargs})


def brute_force(p1, p2, prior1, prior2, pi1, pi2, sums=None):
    """P(D1, D2 | x1, x2[, s]) per row by enumerating the 100 pairs: (B, 10, 10)."""
    b = len(p1)
    joint = np.zeros((b, 10, 10))
    for row, d1, d2 in itertools.product(range(b), range(10), range(10)):
        if sums is not None and d1 + d2 != sums[row]:
            continue
        joint[row, d1, d2] = (prior1[d1] * prior2[d2] * p1[row, d1] / pi1[d1]
                              * p2[row, d2] / pi2[d2])
    return joint / joint.sum(axis=(1, 2), keepdims=True)
