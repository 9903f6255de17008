"""The noise-contrastive prior: what the network should say about images that are no digits.

    import torch
    from probdl.bnn.contrast import shuffled_pixels, divergence_from_uniform
    images = torch.rand(64, 1, 8, 8)
    noise = shuffled_pixels(images, count=8)           # (8, 1, 8, 8): same pixels, no shape
    penalty = divergence_from_uniform(torch.randn(8, 10)).mean()

A Gaussian prior on the weights says little about the functions it implies far from the data:
a network trained on digits labels a field of random pixels as a confident "8". Hafner et al.
(2019, "Noise contrastive priors for functional uncertainty") add a prior in function space
instead: on inputs made from the training inputs but outside their distribution, the
predictive should be the prior's (for classes: uniform). In the ELBO this is one more factor,
``-weight * KL(uniform || p(y | x_noise, w))`` per noise image, next to the likelihood.

The noise images here are training images with their pixel positions shuffled (one permutation
per image, shared by its channels): the same intensities, and so the same ink, as a real image,
with no spatial structure left. That is enough for the network to stop reading ink as a class;
benchmarks/bench_bnn.py checks it on out-of-distribution images that training never shows.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["divergence_from_uniform", "shuffled_pixels"]


def shuffled_pixels(images: torch.Tensor, count: int) -> torch.Tensor:
    """The first ``count`` images of a (N, C, H, W) batch with their pixel positions shuffled."""
    head = images[:count]
    n, c, h, w = head.shape
    order = torch.rand(n, h * w, device=head.device).argsort(dim=1)
    flat = head.reshape(n, c, h * w)
    return flat.gather(2, order[:, None, :].expand(n, c, h * w)).reshape(n, c, h, w)


def divergence_from_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(uniform || softmax(logits)) per row; one logit means a Bernoulli (two classes).

    Zero exactly when the prediction is uniform, ``log K`` plus the mean negative log
    probability otherwise.
    """
    if logits.shape[-1] == 1:
        z = logits.squeeze(-1)
        return -0.5 * (F.logsigmoid(z) + F.logsigmoid(-z)) - math.log(2.0)
    k = logits.shape[-1]
    return -torch.log_softmax(logits, dim=-1).mean(dim=-1) - math.log(k)
