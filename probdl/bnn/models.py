"""The Bayesian CNN: a Pyro model and a mean-field guide over every weight of the CNN.

    import torch
    from probdl.bnn import BayesianCNN
    model = BayesianCNN(in_channels=1, num_classes=10, image_size=(8, 8))
    x = model.prepare(torch.rand(5, 1, 8, 8))   # checked (and standardized once trained)
    logits = model.sample_logits(x, num_samples=4)   # (4, 5, 10)

``BayesianCNN.model`` and ``BayesianCNN.guide`` are an ordinary Pyro model and guide: every
Bayesian weight sits in one flat ``"weights"`` sample site with a Normal prior, and the guide is
a hand-written mean-field Normal over the same vector, q(w) = prod_i N(w_i; mu_i, sigma_i^2).
One site instead of one per tensor keeps Pyro's per-step bookkeeping small; with
``TraceMeanField_ELBO`` the KL of that site is the closed-form sum over all weights,

    KL(q || p) = sum_i [log(s / sigma_i) + (sigma_i^2 + mu_i^2) / (2 s^2) - 1/2],

counted once per step, while the likelihood is scaled by dataset size / batch size through a
subsampled plate. The objectives in :mod:`probdl.bnn.objectives` build on these pieces.

Components. With ``components=K`` the posterior is the uniform mixture q = (1/K) sum_k q_k of
K mean-field Normals. Since KL(q || p) <= (1/K) sum_k KL(q_k || p) (convexity), the mean of the
components' ELBOs, (1/K) sum_k (E_qk log p(D | w) - KL(q_k || p)), is a lower bound on
log p(D) too, and it is what is fitted: in a batch of B rows, row i is scored by component
k(i) = (i + o) mod K alone, o uniform per batch, so (N / B) sum_i log p(y_i | x_i, w_k(i))
estimates the mean likelihood term without bias, and each component learns from its 1/K share
of every batch. K components thus cost what one does per step (an ensemble trained in the time
of one member); prediction draws an equal share of its samples from each.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine

from probdl.bnn.architecture import Architecture
from probdl.bnn.base import CNNBase, batch_norms, check_positive
from probdl.errors import ModelError

__all__ = ["BayesianCNN", "class_likelihood", "class_observation"]

PRIORS = ("normal", "mixture")


def class_likelihood(logits: torch.Tensor) -> dist.Distribution:
    """p(y | logits): Categorical over K classes, or Bernoulli where there is one logit."""
    if logits.shape[-1] == 1:
        return dist.Bernoulli(logits=logits.squeeze(-1), validate_args=False)
    return dist.Categorical(logits=logits, validate_args=False)


def class_observation(y: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor | None:
    """Class indices as :func:`class_likelihood` scores them (a Bernoulli wants floats)."""
    if y is None or logits.shape[-1] != 1:
        return y
    return y.to(logits.dtype)


def _is_rate(value: Any, top: float) -> bool:
    """Whether value is a dropout rate from 0 to ``top`` (the training rate)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= value <= top


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


INIT_KINDS = ("conv", "dense")


def _init_scales(init_scale: Any) -> dict[str, float]:
    """``init_scale`` as {"conv": sd, "dense": sd}; a ModelError for anything else."""
    if not isinstance(init_scale, Mapping):
        check_positive(init_scale=init_scale)
        return dict.fromkeys(INIT_KINDS, float(init_scale))
    if set(init_scale) != set(INIT_KINDS):
        raise ModelError(
            f"init_scale as a dict needs exactly the keys {list(INIT_KINDS)} (the output "
            f"layer counts as dense), got {list(init_scale)}."
        )
    for kind in INIT_KINDS:
        check_positive(**{f"init_scale[{kind!r}]": init_scale[kind]})
    return {kind: float(init_scale[kind]) for kind in INIT_KINDS}


class BayesianCNN(CNNBase):
    """A CNN whose weights have a mean-field Normal posterior, fitted by Pyro SVI.

    The model holds the architecture, the prior and the variational family only; how it is
    fitted (particles, KL annealing, the noise-contrastive prior, dropout masks, local
    reparameterization) is the objective's business (:class:`probdl.bnn.objectives.ELBO`).

    Parameters
    ----------
    in_channels, num_classes : int
    image_size : (int, int)
    filters, dense, pooling, batch_norm, dropout
        Architecture, see :class:`probdl.bnn.architecture.Architecture`.
    bayesian_layers : {"all", "last"}
        Which layers have distributions over their weights; with ``"last"`` the others are
        point estimates (MAP under the same prior).
    prior_sigma : float
        Standard deviation of the Normal(0, sigma) prior on every weight.
    prior : {"normal", "mixture"}
        ``"mixture"``: the scale mixture ``pi N(0, sigma1) + (1 - pi) N(0, sigma2)`` of
        Blundell et al. (its KL has no closed form; SVI estimates it by sampling).
    mixture : (pi, sigma1, sigma2)
    init_scale : float or {"conv": float, "dense": float}
        Initial posterior standard deviation of every weight, or of the convolutions' and the
        dense layers' (the output layer included); the means start as a Kaiming-initialized
        network. Within a ``train`` call the scales move little from where they start (Adam
        moves each log-scale by about the learning rate per step), so this sets how much
        the weights vary in the fitted posterior.
    predict_dropout : float
        Dropout rate after the dense layers when drawing from the predictive (the fitted
        temperature and ``predict``; ``train`` picks its best epoch without the masks), from
        0 to ``dropout``. The ELBO is fitted with
        dropout on, its likelihood averaged over masks as well as weights; predicting with
        part of that rate keeps some of the masks' spread, which the mean-field posterior,
        narrow after a short fit, lacks. It lowers the NLL under shift; the default stays 0
        until it wins on every dataset (docs/tuning-log.md, issue 16, sixth and seventh rounds).
    components : int
        K > 1: the posterior is a uniform mixture of K mean-field Normals, each started from
        its own initialization (an ensemble inside one model; see "Components" below).
    seed : int
        Seed of the initialization.
    """

    kind = "BayesianCNN"

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        filters: tuple[int, ...] = (32, 64),
        dense: tuple[int, ...] = (128,),
        pooling: str = "avg",
        batch_norm: bool = False,
        dropout: float = 0.5,
        bayesian_layers: str = "all",
        prior_sigma: float = 1.0,
        prior: str = "normal",
        mixture: tuple[float, float, float] = (0.5, 1.0, 0.0025),
        init_scale: float | Mapping[str, float] = 1e-3,
        predict_dropout: float = 0.0,
        components: int = 1,
        seed: int = 0,
    ) -> None:
        arch = Architecture(
            in_channels, num_classes, image_size, filters, dense, pooling, batch_norm, dropout
        )
        super().__init__(arch, seed)
        if bayesian_layers not in ("all", "last"):
            raise ModelError(f"bayesian_layers must be 'all' or 'last', got {bayesian_layers!r}.")
        if prior not in PRIORS:
            raise ModelError(f"prior must be one of {PRIORS}, got {prior!r}.")
        check_positive(prior_sigma=prior_sigma)
        scales = _init_scales(init_scale)
        try:
            pi, s1, s2 = (float(m) for m in mixture)
        except (TypeError, ValueError):
            raise ModelError(
                f"mixture must be three numbers (pi, sigma1, sigma2), got {mixture!r}."
            ) from None
        if not (0 < pi < 1 and s1 > 0 and s2 > 0):
            raise ModelError(f"mixture must be (pi in (0, 1), sigma1 > 0, sigma2 > 0): {mixture}")
        self.bayesian_layers = bayesian_layers
        self.prior_sigma = float(prior_sigma)
        self.prior = prior
        self.mixture = (pi, s1, s2)
        self.init_scale = scales if isinstance(init_scale, Mapping) else float(init_scale)
        if not _is_rate(predict_dropout, arch.dropout):
            raise ModelError(
                f"predict_dropout must be a number from 0 to the training dropout "
                f"({arch.dropout}), got {predict_dropout!r}."
            )
        self.predict_dropout = float(predict_dropout)
        if isinstance(components, bool) or not isinstance(components, numbers.Integral) or (
            components < 1
        ):
            raise ModelError(f"components must be a whole number >= 1, got {components!r}.")
        self.components = int(components)
        if self.components > 1 and batch_norm and bayesian_layers == "all":
            raise ModelError(
                "components > 1 with batch_norm=True needs bayesian_layers='last': the "
                "components' convolutions differ, and one set of batch-norm statistics cannot "
                "serve them all."
            )

        gen = torch.Generator().manual_seed(self.seed)
        self.bayes_names = arch.names(bayesian_layers)
        self.det_names = [n for n in arch.names() if n not in self.bayes_names]
        loc = arch.init_weights(gen, self.bayes_names)
        det = arch.init_weights(gen, self.det_names) if self.det_names else torch.zeros(0)
        shapes = dict(arch.layer_shapes)
        rho = torch.cat([
            torch.full((math.prod(shapes[n]),), _inverse_softplus(
                scales["conv" if n.startswith("conv") else "dense"]))
            for n in self.bayes_names
        ])  # fmt: skip
        if self.components > 1:  # (K, D); one component keeps the flat (D,) of old checkpoints
            others = [arch.init_weights(gen, self.bayes_names) for _ in range(1, self.components)]
            loc = torch.stack([loc, *others])
            rho = rho.expand(self.components, -1).clone()
        # Variational parameters live in a plain nn.Module: a PyroModule attribute would turn
        # every access into a pyro.param site, bookkeeping the one-site design avoids.
        self.variational = torch.nn.Module()
        self.variational.loc = torch.nn.Parameter(loc)
        self.variational.rho = torch.nn.Parameter(rho)
        self.variational.det = torch.nn.Parameter(det)
        self.variational.norms = batch_norms(arch)

    def _extra_config(self) -> dict[str, Any]:
        return {
            "bayesian_layers": self.bayesian_layers,
            "prior_sigma": self.prior_sigma,
            "prior": self.prior,
            "mixture": list(self.mixture),
            "init_scale": self.init_scale,
            "predict_dropout": self.predict_dropout,
            "components": self.components,
        }

    # ---- the variational family -------------------------------------------------------------
    @property
    def _v(self) -> torch.nn.Module:
        return self._modules["variational"]

    def posterior_loc(self) -> torch.Tensor:
        """Means of the Bayesian weights: (D,), or (K, D) with K components."""
        return self._v.loc

    def posterior_scale(self) -> torch.Tensor:
        """Standard deviations, shaped as :meth:`posterior_loc`."""
        return F.softplus(self._v.rho)

    def prior_distribution(self) -> dist.Distribution:
        """The prior over the Bayesian weights, every component's (shaped as the means)."""
        loc = self._v.loc
        if self.prior == "normal":
            zero = torch.zeros((), device=loc.device)
            base = dist.Normal(zero, torch.full((), self.prior_sigma, device=loc.device))
            return base.expand(loc.shape).to_event(loc.dim())
        pi, s1, s2 = self.mixture
        mix = dist.Categorical(torch.tensor([pi, 1 - pi], device=loc.device).expand(*loc.shape, 2))
        comp = dist.Normal(
            torch.zeros(*loc.shape, 2, device=loc.device), torch.tensor([s1, s2], device=loc.device)
        )
        return dist.MixtureSameFamily(mix, comp).to_event(loc.dim())

    def kl_divergence(self) -> torch.Tensor:
        """Closed-form KL(q || prior) over every Bayesian weight, averaged over components.

        The average is what the ELBO of a mixture posterior uses: see "Components" in the
        module docstring. Normal prior only.
        """
        if self.prior != "normal":
            raise ModelError("the scale-mixture prior has no closed-form KL.")
        q = dist.Normal(self._v.loc, self.posterior_scale())
        p = dist.Normal(torch.zeros_like(self._v.loc), self.prior_sigma)
        return torch.distributions.kl_divergence(q, p).sum() / self.components

    def component_rows(self, n: int, device: Any = None) -> tuple[list, torch.Tensor]:
        """Which rows of a training batch of n each component scores, and how to undo it.

        Row i goes to component (i + o) mod K with o drawn uniformly for each batch, so every
        row is equally likely to meet each component whatever n is (the likelihood term stays
        unbiased when K does not divide the batch, or exceeds it). Returns (component, rows)
        pairs for the components that got rows, and the permutation that puts their
        concatenated rows back in the batch's order.
        """
        k = self.components
        o = int(torch.randint(k, ()))
        pairs = [(c, torch.arange((c - o) % k, n, k, device=device)) for c in range(k)]
        pairs = [(c, rows) for c, rows in pairs if len(rows)]
        return pairs, torch.argsort(torch.cat([rows for _, rows in pairs]))

    def _params(self, bayes: torch.Tensor) -> dict[str, torch.Tensor]:
        params = self.architecture.unflatten(bayes, self.bayes_names)
        if self.det_names:
            params.update(self.architecture.unflatten(self._v.det, self.det_names))
        return params

    # ---- the pieces objectives compose ------------------------------------------------------
    def sample_weights(self, kl_weight: float = 1.0) -> torch.Tensor:
        """The ``"weights"`` sample site under the prior (and the MAP layers' log prior)."""
        with poutine.scale(scale=kl_weight / self.components):  # the components' mean KL
            w = pyro.sample("weights", self.prior_distribution())
        if self.det_names:  # MAP layers, shared by the components: their log prior as a factor
            det = self._v.det
            with poutine.scale(scale=kl_weight):
                pyro.factor("map_prior", -0.5 * (det * det).sum() / self.prior_sigma**2)
        return w

    def network(
        self,
        x: torch.Tensor,
        weights: torch.Tensor,
        *,
        masks: int = 1,
        stats_rows: int | None = None,
        local_reparam: bool | str = False,
        component: int = 0,
    ) -> torch.Tensor:
        """Logits of prepared images under one weight vector; dropout is on in training mode.

        ``masks``, ``stats_rows``: see :meth:`Architecture.forward`. ``local_reparam``: the
        layers it names (True: all, ``"dense"``: the dense ones) draw their pre-activations
        from the Gaussian the posterior implies (of ``component``, with several), instead of
        using ``weights``.
        """
        params, variances = self._params(weights), None
        if local_reparam:
            loc, scale = self._v.loc, self.posterior_scale()
            if self.components > 1:
                loc, scale = loc[component], scale[component]
            variances = self.architecture.unflatten(scale * scale, self.bayes_names)
            drawn, params = params, self._params(loc)
            if local_reparam == "dense":  # convolutions keep the drawn weights
                variances = {k: v for k, v in variances.items() if not k.startswith("conv")}
                params.update({k: v for k, v in drawn.items() if k.startswith("conv")})
        return self.architecture.forward(
            x, params, self._v.norms, dropout=self.training, variances=variances,
            stats_rows=stats_rows, masks=masks,
        )  # fmt: skip

    # ---- Pyro model and guide ---------------------------------------------------------------
    def model(self, x, y=None, index=None, size=None, kl_weight=1.0):
        """p(weights) p(y | x, weights), the likelihood scaled by ``size / len(x)``.

        The plain model: objectives (:mod:`probdl.bnn.objectives`) compose richer ones from
        :meth:`sample_weights` and :meth:`network`. Returns the logits (len(x), outputs).
        """
        w = self.sample_weights(kl_weight)
        if self.components == 1:
            logits = self.network(x, w)
        else:  # each row scored by one component (module docstring, "Components")
            parts, inverse = self.component_rows(len(x), x.device)
            logits = torch.cat([self.network(x[r], w[c], component=c)
                                for c, r in parts])[inverse]  # fmt: skip
        size = len(x) if size is None else size
        if index is None:
            index = torch.arange(len(x), device=x.device)
        with pyro.plate("data", size=size, subsample=index):
            pyro.sample("obs", class_likelihood(logits), obs=class_observation(y, logits))
        return logits

    def draw_weights(self) -> torch.Tensor:
        """One reparameterized draw of every component's weights from the guide, outside Pyro."""
        return dist.Normal(self._v.loc, self.posterior_scale(), validate_args=False).rsample()

    def guide(self, x=None, y=None, index=None, size=None, kl_weight=1.0):
        """Mean-field Normal over the flat weight vector (each component's, with several)."""
        loc, scale = self._v.loc, self.posterior_scale()
        with poutine.scale(scale=kl_weight / self.components):
            q = dist.Normal(loc, scale, validate_args=False).to_event(loc.dim())
            return pyro.sample("weights", q)

    forward = model

    @torch.no_grad()
    def sample_logits(self, x: torch.Tensor, num_samples: int) -> torch.Tensor:
        """Logits (S, N, outputs) under S weight draws from the posterior, vectorized.

        ``x``: prepared images (``model.prepare(images)``: checked and standardized), as
        ``predict`` passes them.
        """
        return self._at_rates(x, num_samples, (self.predict_dropout,))[0]

    @torch.no_grad()
    def sample_logits_at_rates(
        self, x: torch.Tensor, num_samples: int, rates: Sequence[float]
    ) -> torch.Tensor:
        """Logits (R, S, N, outputs): the same S weight draws with dropout at each rate.

        ``x``: prepared images (``model.prepare(images)``); ``rates`` from 0 to the training
        dropout. Run as at prediction (eval mode: batch-norm statistics left as they are).
        The convolutions run once for all rates (the masks act after the dense layers).
        """
        top = self.architecture.dropout
        if isinstance(rates, str | bytes) or not isinstance(rates, Sequence) or not rates \
                or not all(_is_rate(p, top) for p in rates):  # fmt: skip
            raise ModelError(
                f"rates must be a non-empty list of numbers from 0 to the training dropout "
                f"({top}), got {rates!r}."
            )
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ModelError(f"num_samples must be a whole number >= 1, got {num_samples!r}.")
        was_training = self.training
        self.eval()
        try:
            return self._at_rates(x, num_samples, [float(p) for p in rates])
        finally:
            self.train(was_training)

    def _at_rates(self, x: torch.Tensor, num_samples: int, rates: Sequence[float]) -> torch.Tensor:
        loc, scale = self._v.loc, self.posterior_scale()
        if self.components > 1:  # draw s from component (s + o) mod K: an equal share of each
            k = self.components
            which = (torch.arange(num_samples, device=loc.device) + int(torch.randint(k, ()))) % k
            loc, scale = loc[which], scale[which]
        eps = torch.randn(num_samples, loc.shape[-1], device=loc.device, dtype=loc.dtype)
        params = self._params(loc + scale * eps)
        arch = self.architecture
        h = arch.features_samples(x, params, num_samples, self._v.norms)
        return torch.stack([arch.head_samples(h, params, dropout=p > 0, rate=p) for p in rates])
