"""What `train` minimizes: the ELBO for the Bayesian CNN, the log posterior for the baselines.

    from probdl.bnn import BayesianCNN, train
    from probdl.bnn.objectives import ELBO
    model = BayesianCNN(in_channels=1, num_classes=10, image_size=(8, 8))
    train(model, tr, va, objective=ELBO(num_particles=2, kl_annealing=5, noise_prior=0.1))

As Pyro composes ``SVI(model, guide, optim, loss)``, probdl keeps the model (architecture, prior
and variational family: ``BayesianCNN.model`` and ``.guide``) apart from the objective (this
module) and the trainer (:func:`probdl.bnn.train`). An objective turns a minibatch into a loss
per training example:

    ELBO:  -(1/N) [ (N/B) sum_b E_q log p(y_b | x_b, w) - beta_t KL(q || p)
                    - lambda N mean_j KL(uniform || p(y | x~_j, w)) ]
    MAP:   -(1/B) sum_b log p(y_b | x_b, w) - beta_t log p(w) / N

with N the dataset size, B the batch, beta_t the KL-annealing weight of epoch t and the last
ELBO term the noise-contrastive prior on pixel-shuffled copies x~ of some batch images
(:mod:`probdl.bnn.contrast`). The likelihood p(y | ., w) is an object too: :class:`Likelihood`
(one label per image: Categorical, or Bernoulli with one logit) by default, or any object with
the same three members, such as the sum likelihood of ``probdl.hybrid`` (pairs of images
labelled by the sum of their digits), so that learning from sums is the same trainer.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.infer.util import is_validation_enabled

from probdl.bnn.base import CNNBase, check_labels
from probdl.bnn.contrast import divergence_from_uniform, shuffled_pixels
from probdl.bnn.elbo import MeanFieldELBO
from probdl.bnn.models import BayesianCNN, class_likelihood, class_observation
from probdl.errors import ModelError

__all__ = ["ELBO", "MAP", "Likelihood", "default_objective"]


class Likelihood:
    """One class label per image: Categorical over the logits, Bernoulli for one logit.

    The members an objective uses, for writing other likelihoods:
    ``images_per_example`` (the images one example holds: the network's logits arrive as
    (..., B, outputs) for 1, (..., B, m, outputs) for m), ``targets(y, model, n, where)``
    (check and return the targets) and ``distribution(logits, y)`` (the distribution with
    batch shape (..., B) and the observation to score under it).
    """

    images_per_example = 1
    #: the targets are the model's classes (train records the class prior from them)
    class_labels = True
    #: the name of the observed Pyro sample site
    site = "obs"

    def targets(self, y: Any, model: CNNBase, n: int, where: str) -> torch.Tensor:
        return check_labels(y, model.architecture.num_classes, n, where=where)

    def distribution(self, logits: torch.Tensor, y: torch.Tensor | None):
        return class_likelihood(logits), class_observation(y, logits)


def _check_count(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ModelError(f"{name} must be an integer >= {low}, got {value!r}.")
    return int(value)


def _annealed(kl_annealing: int, epoch: int) -> float:
    """The KL (or prior) weight of a 0-based epoch: linear from 1/T up to 1 over T epochs."""
    return min(1.0, (epoch + 1) / kl_annealing) if kl_annealing > 0 else 1.0


def _flat_images(x: torch.Tensor, m: int) -> torch.Tensor:
    return x.flatten(0, 1) if m > 1 else x


def _per_example(logits: torch.Tensor, rows: int, m: int) -> torch.Tensor:
    return logits.unflatten(-2, (rows, m)) if m > 1 else logits


@dataclass
class ELBO:
    """The negative evidence lower bound of the Bayesian CNN, per training example.

    Parameters
    ----------
    num_particles : weight draws per step, their ELBOs averaged.
    analytic_kl : the closed-form KL of the mean-field posterior (``TraceMeanField_ELBO``, as
        :class:`probdl.bnn.elbo.MeanFieldELBO`); False estimates it from the drawn weights
        (``Trace_ELBO``), as it must for the scale-mixture prior anyway.
    kl_annealing : epochs over which the KL weight grows linearly to 1 (0: always 1).
    noise_prior : weight lambda of the noise-contrastive prior (Hafner et al. 2019; 0: off).
        ``noise_images`` images of each batch are shown again with their pixels shuffled, and
        the ELBO gains ``-lambda KL(uniform || p(y | shuffled image, w))`` for each, scaled to
        the dataset like the likelihood, so the predictive goes flat on images without the
        structure of the training images. Prediction is unchanged.
    noise_images : shuffled images per batch (about ``noise_images / batch`` more work).
    dropout_masks : dropout masks per example (multi-sample dropout, Inoue 2019): the first
        dense layer's output is copied that many times, each copy with its own mask, and the
        log-likelihood and the noise-contrastive term are averaged over the copies. The same
        ELBO with less dropout noise, for little more than the cost of the dense layers.
    local_reparam : False, True or ``"dense"``: sample pre-activations instead of weights
        (lower-variance gradients at about twice the convolution cost; ``"dense"``: only in the
        dense layers, where most weights are).
    likelihood : :class:`Likelihood` (the default) or another object with its members.
    """

    num_particles: int = 1
    analytic_kl: bool = True
    kl_annealing: int = 0
    noise_prior: float = 0.05
    noise_images: int = 4
    dropout_masks: int = 4
    local_reparam: bool | str = False
    likelihood: Any = field(default_factory=Likelihood)

    def __post_init__(self) -> None:
        self.num_particles = _check_count("num_particles", self.num_particles, 1)
        self.kl_annealing = _check_count("kl_annealing", self.kl_annealing, 0)
        self.noise_images = _check_count("noise_images", self.noise_images, 1)
        self.dropout_masks = _check_count("dropout_masks", self.dropout_masks, 1)
        lam = self.noise_prior
        if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not (
            lam >= 0 and math.isfinite(lam)
        ):
            raise ModelError(f"noise_prior must be a finite weight >= 0 (0: off), got {lam!r}.")
        if self.local_reparam not in (True, False, "dense"):
            raise ModelError(
                f"local_reparam must be True, False or 'dense', got {self.local_reparam!r}."
            )
        cls = MeanFieldELBO if self.analytic_kl else Trace_ELBO
        self._pyro_elbo = cls(num_particles=self.num_particles, max_plate_nesting=1)

    def check(self, model: CNNBase) -> None:
        if not isinstance(model, BayesianCNN):
            raise ModelError(
                f"the ELBO fits a BayesianCNN's posterior; a {type(model).__name__} is fitted "
                "by MAP: pass objective=MAP() or None."
            )

    def kl_weight(self, epoch: int) -> float:
        return _annealed(self.kl_annealing, epoch)

    def _forward(self, cnn: BayesianCNN, x: torch.Tensor, w: torch.Tensor, size: int) -> tuple:
        """Logits (..., B, [m,] outputs), the noise-contrastive penalty (None: off), masks.

        With several components, each row is scored by one component (``component_rows``), the
        batch's noise images are shared out among them, and the penalty is the components'
        mean, as the KL is (:mod:`probdl.bnn.models`, "Components").
        """
        if cnn.components == 1:
            return self._forward_one(cnn, x, w, size, 0, self.noise_images)
        parts, inverse = cnn.component_rows(len(x), x.device)
        noise = math.ceil(self.noise_images / len(parts))
        outs = [self._forward_one(cnn, x[r], w[c], size, c, noise) for c, r in parts]
        dim = -3 if self.likelihood.images_per_example > 1 else -2
        logits = torch.cat([o[0] for o in outs], dim=dim).index_select(dim, inverse)
        penalty = None if outs[0][1] is None else torch.stack([o[1] for o in outs]).mean()
        return logits, penalty, outs[0][2]

    def _forward_one(self, cnn, x, w, size, component, noise_images) -> tuple:
        """:meth:`_forward` for one weight vector (of ``component``)."""
        m = self.likelihood.images_per_example
        rows = len(x)
        images = _flat_images(x, m)
        arch = cnn.architecture
        masks = self.dropout_masks if cnn.training and arch.dropout > 0 and arch.dense else 1
        contrast = cnn.training and self.noise_prior > 0
        if contrast:
            images = torch.cat([images, shuffled_pixels(images, noise_images)])
        logits = cnn.network(images, w, masks=masks, stats_rows=rows * m, component=component,
                             local_reparam=self.local_reparam if cnn.training else False)
        penalty = None
        if contrast:
            logits, noise_logits = logits[..., : rows * m, :], logits[..., rows * m :, :]
            penalty = self.noise_prior * size * divergence_from_uniform(noise_logits).mean()
        return _per_example(logits, rows, m), penalty, masks

    def model(self, cnn: BayesianCNN, x, y=None, index=None, size=None, kl_weight=1.0):
        """The Pyro model: prior, network, the noise-contrastive factor and the likelihood.

        ``x``: prepared images (B, C, H, W), or (B, m, C, H, W) for a likelihood over m images
        per example. Returns the logits (..., B, [m,] outputs).
        """
        w = cnn.sample_weights(kl_weight)
        rows = len(x)
        size = rows if size is None else size
        logits, penalty, masks = self._forward(cnn, x, w, size)
        if penalty is not None:
            pyro.factor("noise_prior", -penalty)
        if index is None:
            index = torch.arange(rows, device=x.device)
        fn, obs = self.likelihood.distribution(logits, y)
        # The masks axis sits left of the data plate; scaling by 1 / masks makes the summed
        # log-likelihood their mean.
        with pyro.plate("data", size=size, subsample=index), poutine.scale(scale=1.0 / masks):
            pyro.sample(self.likelihood.site, fn, obs=obs)
        return logits

    def guide(self, cnn: BayesianCNN, x, y=None, index=None, size=None, kl_weight=1.0):
        return cnn.guide(x, y, index, size, kl_weight)

    def loss(self, cnn: BayesianCNN, x, y, index, size: int, epoch: int = 0) -> torch.Tensor:
        """The negative ELBO of the batch, divided by the dataset size.

        With the closed-form KL of a Normal prior, the loss that
        ``TraceMeanField_ELBO().differentiable_loss(model, guide, ...)`` computes is evaluated
        directly: the same draws in the same order, the same terms, without tracing the two
        programs (Pyro's bookkeeping was a fixed cost per step that dominated small images;
        tested equal to the Pyro path, loss and gradients). Otherwise the Pyro ELBO runs.
        """
        kl_weight = self.kl_weight(epoch)
        if not (self.analytic_kl and cnn.prior == "normal") or is_validation_enabled():
            loss = self._pyro_elbo.differentiable_loss(
                partial(self.model, cnn), partial(self.guide, cnn), x, y, index, size, kl_weight
            )
            return loss / size
        total = torch.zeros((), device=x.device)
        for _ in range(self.num_particles):
            w = cnn.draw_weights()
            logits, penalty, masks = self._forward(cnn, x, w, size)
            fn, obs = self.likelihood.distribution(logits, y)
            total = total - (size / len(x)) * fn.log_prob(obs).sum() / masks
            if penalty is not None:
                total = total + penalty
        kl = cnn.kl_divergence()
        if cnn.det_names:  # the MAP layers' Gaussian log prior, as the model's factor
            kl = kl + 0.5 * (cnn.variational.det**2).sum() / cnn.prior_sigma**2
        return (total / self.num_particles + kl_weight * kl) / size


@dataclass
class MAP:
    """The negative log posterior per example, for the deterministic and MC-dropout CNNs.

    ``kl_annealing``: epochs over which the prior's weight grows linearly to 1 (0: always 1).
    """

    kl_annealing: int = 0
    likelihood: Any = field(default_factory=Likelihood)

    def __post_init__(self) -> None:
        self.kl_annealing = _check_count("kl_annealing", self.kl_annealing, 0)

    def check(self, model: CNNBase) -> None:
        if not hasattr(model, "log_prior"):
            raise ModelError(
                f"MAP fits point-estimate weights; a {type(model).__name__} is fitted by its "
                "ELBO: pass objective=ELBO() or None."
            )

    def kl_weight(self, epoch: int) -> float:
        return _annealed(self.kl_annealing, epoch)

    def loss(self, cnn: CNNBase, x, y, index, size: int, epoch: int = 0) -> torch.Tensor:
        m = self.likelihood.images_per_example
        logits = _per_example(cnn.network(_flat_images(x, m)), len(x), m)
        fn, obs = self.likelihood.distribution(logits, y)
        nll = -fn.log_prob(obs).mean()
        return nll - self.kl_weight(epoch) * cnn.log_prior() / size


def default_objective(model: CNNBase) -> ELBO | MAP:
    """``ELBO()`` for a Bayesian CNN, ``MAP()`` for the baselines."""
    return ELBO() if isinstance(model, BayesianCNN) else MAP()
