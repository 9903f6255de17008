"""The bridge: a classifier's predictive distribution enters a Bayesian network as evidence.

    from probdl.hybrid import HybridModel, digit_sum_network
    # hm = HybridModel(digit_sum_network(), {"D1": cnn, "D2": cnn}, class_prior=train_set)
    # hm.query(["D1"], images={"D1": x1, "D2": x2}, evidence={"S": sums})

:mod:`~probdl.hybrid.bridge` holds :class:`HybridModel` (images as soft evidence, divided by the
classifier's training class prior); :mod:`~probdl.hybrid.sums` learns a classifier from sums of
pairs of its labels (the labels latent, summed out exactly); :mod:`~probdl.hybrid.digit_sums` is
the digit-sum task built on those public names. This package is where graph and bnn meet: it
imports both, neither imports it.
"""

from __future__ import annotations

from probdl.hybrid.bridge import HybridModel
from probdl.hybrid.digit_sums import digit_sum_accuracy, digit_sum_network, digit_sum_pairs
from probdl.hybrid.sums import (
    SumLikelihood,
    SumPairs,
    pair_indices,
    sum_guide,
    sum_log_likelihood,
    sum_model,
    sum_pairs,
    train_on_sums,
)

__all__ = [
    "HybridModel",
    "SumLikelihood",
    "SumPairs",
    "digit_sum_accuracy",
    "digit_sum_network",
    "digit_sum_pairs",
    "pair_indices",
    "sum_guide",
    "sum_log_likelihood",
    "sum_model",
    "sum_pairs",
    "train_on_sums",
]
