"""Learning digits from their sums: the digit labels are latent and summed out exactly.

    from probdl.bnn import BayesianCNN, evaluate
    from probdl.data import load_digits, split
    from probdl.hybrid import sum_pairs, train_on_sums
    train, val, test = split(load_digits(), val=0.15, test=0.2, seed=0)
    pairs = sum_pairs(train, seed=0, repeats=8)   # 8 random pairings, labelled only by d1 + d2
    model = BayesianCNN(in_channels=1, num_classes=10, image_size=(8, 8))
    history = train_on_sums(model, pairs, epochs=5)
    evaluate(model, test)["accuracy"]             # digit accuracy, never having seen a digit label

Learning from sums is ``probdl.bnn.train`` with another likelihood: :class:`SumLikelihood`
takes two images per example, runs the Bayesian CNN on both under one weight draw, and scores
the pair's sum as ``Categorical(P(S | x1, x2, w))`` with

    P(S = s | x1, x2, w) = sum over d1 + d2 = s of p(d1 | x1, w) p(d2 | x2, w),

computed in log space over the 100 digit pairs. The ELBO is therefore the evidence lower bound
of the sums, with the digits marginalized exactly rather than sampled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pyro.distributions as dist
import torch

from probdl.bnn import ELBO, BayesianCNN, Inputs, Optim, train
from probdl.errors import DataError, ModelError

__all__ = [
    "SumLikelihood",
    "SumPairs",
    "pair_indices",
    "sum_guide",
    "sum_log_likelihood",
    "sum_model",
    "sum_pairs",
    "train_on_sums",
]


@dataclass
class SumPairs:
    """Images in pairs, each pair labelled only by the sum of its two digits.

    Attributes
    ----------
    first, second : (P, C, H, W) float tensors, the two images of each pair.
    sums : (P,) int64, the sum of the two digits.
    first_index, second_index : (P,) positions of the images in the dataset they came from
        (for evaluation; training never looks at the digits).
    num_digits : how many digit classes there are (sums range over 0 .. 2 * (num_digits - 1)).
    """

    first: torch.Tensor
    second: torch.Tensor
    sums: torch.Tensor
    first_index: np.ndarray
    second_index: np.ndarray
    num_digits: int

    def __len__(self) -> int:
        return len(self.sums)


def pair_indices(n: int, seed: int = 0, cyclic: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Random disjoint pairs of ``range(n)``, or with ``cyclic=True`` n pairs in which every index
    appears exactly twice (once first, once second): ``perm[i]`` with ``perm[(i + 1) % n]``."""
    if n < 2:
        raise DataError(f"pairing needs at least 2 images, got {n}.")
    perm = np.random.default_rng(seed).permutation(n)
    if cyclic:
        return perm, np.roll(perm, -1)
    half = n // 2
    return perm[:half], perm[half : 2 * half]


def sum_pairs(dataset: Any, seed: int = 0, repeats: int = 1) -> SumPairs:
    """Pair the images of ``dataset`` at random and keep only the sum of each pair's labels.

    Parameters
    ----------
    dataset : ImageDataset (or anything with ``.images`` and ``.labels``) of digits 0..K-1.
    seed : seed of the pairing.
    repeats : how many independent pairings to stack; each image appears in ``repeats`` pairs
        (``1``: every image exactly once, ``len(dataset) // 2`` pairs).
    """
    if not (hasattr(dataset, "images") and hasattr(dataset, "labels")):
        raise DataError(
            f"sum_pairs: need an ImageDataset with .images and .labels, got "
            f"{type(dataset).__name__}."
        )
    if repeats < 1:
        raise DataError(f"sum_pairs: repeats must be >= 1, got {repeats}.")
    images = torch.as_tensor(dataset.images, dtype=torch.float32)
    labels = torch.as_tensor(dataset.labels).long()
    k = len(dataset.classes) if hasattr(dataset, "classes") else int(labels.max()) + 1
    pairings = [pair_indices(len(images), seed + r) for r in range(repeats)]
    i1 = np.concatenate([first for first, _ in pairings])
    i2 = np.concatenate([second for _, second in pairings])
    t1, t2 = torch.as_tensor(i1), torch.as_tensor(i2)
    return SumPairs(images[t1], images[t2], labels[t1] + labels[t2], i1, i2, k)


@lru_cache(maxsize=8)
def _pair_index(k: int, device: str) -> torch.Tensor:
    """(2k - 1, k) flat indices d1 * k + d2 of the digit pairs with d1 + d2 = s; the slots a sum
    has fewer pairs than k point at index k * k, a padding column of -inf."""
    index = torch.full((2 * k - 1, k), k * k, dtype=torch.long)
    for s in range(2 * k - 1):
        for d1 in range(max(0, s - k + 1), min(s, k - 1) + 1):
            index[s, d1] = d1 * k + (s - d1)
    return index.to(device)


def sum_log_likelihood(log_p1: torch.Tensor, log_p2: torch.Tensor) -> torch.Tensor:
    """log P(S = s | x1, x2) for every sum s: (B, 2K - 1) from digit log-probabilities (B, K).

    Exact: ``logsumexp`` over the digit pairs (d1, d2) with d1 + d2 = s of
    ``log p(d1 | x1) + log p(d2 | x2)``; rows sum to one in probability space.
    """
    if log_p1.shape != log_p2.shape or log_p1.ndim != 2:
        raise DataError(
            f"sum_log_likelihood: need two (B, K) arrays of one shape, got "
            f"{tuple(log_p1.shape)} and {tuple(log_p2.shape)}."
        )
    b, k = log_p1.shape
    joint = (log_p1[:, :, None] + log_p2[:, None, :]).reshape(b, k * k)
    padded = torch.cat([joint, joint.new_full((b, 1), -math.inf)], dim=1)
    # Gathering only the pairs of each sum (k per sum) keeps the work at B x (2k - 1) x k.
    return torch.logsumexp(padded[:, _pair_index(k, str(joint.device))], dim=-1)


class SumLikelihood:
    """The likelihood of a pair of images labelled by the sum of their digits.

    An objective's likelihood (see ``probdl.bnn.objectives.Likelihood``): two images per
    example, the logits arrive as (..., B, 2, K), the distribution is
    ``Categorical(log P(S | x1, x2, w))`` over the 2K - 1 sums.
    """

    images_per_example = 2
    class_labels = False
    site = "sum"

    def __init__(self, num_digits: int) -> None:
        self.num_digits = int(num_digits)

    def targets(self, y: Any, model: Any, n: int, where: str) -> torch.Tensor:
        k = self.num_digits
        s = torch.as_tensor(y)
        if s.ndim != 1 or len(s) != n:
            raise DataError(f"{where}: need {n} sums in a 1-D array, got {tuple(s.shape)}.")
        if n and (s.is_floating_point() or int(s.min()) < 0 or int(s.max()) > 2 * (k - 1)):
            raise DataError(
                f"train_on_sums: sums must be whole numbers in 0..{2 * (k - 1)}, found "
                f"{s.min().item()}..{s.max().item()}."
            )
        return s.long()

    def distribution(self, logits: torch.Tensor, y: torch.Tensor | None):
        log_p = torch.log_softmax(logits, dim=-1)  # (..., B, 2, K)
        lead = log_p.shape[:-2]
        flat = log_p.reshape(-1, 2, log_p.shape[-1])
        log_ps = sum_log_likelihood(flat[:, 0], flat[:, 1]).reshape(*lead, -1)
        return dist.Categorical(logits=log_ps, validate_args=False), y


def sum_objective(num_digits: int) -> ELBO:
    """The ELBO of the sums: without the CNN's noise-contrastive prior and dropout masks,
    which are set for its own per-image likelihood."""
    return ELBO(noise_prior=0.0, dropout_masks=1, likelihood=SumLikelihood(num_digits))


def sum_model(cnn: BayesianCNN, first: torch.Tensor, second: torch.Tensor,
              sums: torch.Tensor | None = None, index: torch.Tensor | None = None,
              size: int | None = None) -> torch.Tensor:
    """Pyro model: the CNN's prior and network, with each pair's sum as the observed site.

    :func:`sum_objective`'s model on the stacked pairs: ``"sum"`` is
    ``Categorical(P(S | x1, x2, w))``, scaled by ``size / len(first)`` through a subsampled
    plate. Images must already be prepared (``cnn.prepare``).
    Returns log P(S = s | x1, x2, w) for every s, (B, 2K - 1).
    """
    k = cnn.architecture.num_classes
    logits = sum_objective(k).model(cnn, torch.stack([first, second], 1), sums, index, size)
    log_p = torch.log_softmax(logits, dim=-1)
    return sum_log_likelihood(log_p[:, 0], log_p[:, 1])


def sum_guide(cnn: BayesianCNN, first: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """Pyro guide of :func:`sum_model`: the CNN's own mean-field guide over its weights."""
    return cnn.guide(first)


def _check_pairs(model: BayesianCNN, pairs: SumPairs) -> None:
    if not isinstance(model, BayesianCNN):
        raise ModelError(
            f"train_on_sums trains a BayesianCNN (its Pyro model and guide); got "
            f"{type(model).__name__}."
        )
    k = model.architecture.num_classes
    if k != pairs.num_digits or model.architecture.num_outputs == 1:
        raise ModelError(
            f"the model has {k} classes but the pairs hold digits 0..{pairs.num_digits - 1}; "
            f"build the model with num_classes={pairs.num_digits}."
        )
    if len(pairs) == 0:
        raise DataError("train_on_sums: no pairs to train on.")


def train_on_sums(
    model: BayesianCNN,
    pairs: SumPairs,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    *,
    standardize: bool = True,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Fit a :class:`~probdl.bnn.BayesianCNN` by SVI on pairs of images labelled by their sum.

    ``probdl.bnn.train`` with :func:`sum_objective` on the stacked pairs (N, 2, C, H, W): the
    negative ELBO per pair, Adam with a cosine schedule and no averaging, no augmentation.
    Returns the history: one dict per epoch with ``epoch``, ``loss`` and ``seconds``.
    """
    _check_pairs(model, pairs)
    x = torch.stack([torch.as_tensor(pairs.first), torch.as_tensor(pairs.second)], 1)
    k = model.architecture.num_classes
    result = train(
        model, (x, pairs.sums), None, epochs=epochs, objective=sum_objective(k), seed=seed,
        optim=Optim(lr=lr, batch_size=batch_size, schedule="cosine", ema_decay=0.0),
        inputs=Inputs(standardize=standardize, augment=None), progress=progress,
    )  # fmt: skip
    model.classes_ = [str(i) for i in range(k)]
    return result.history
