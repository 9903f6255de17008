"""MeanFieldELBO: the same loss and gradients as Pyro's TraceMeanField_ELBO, fewer densities."""

from __future__ import annotations

from functools import partial

import pyro
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO

from probdl.bnn import ELBO, BayesianCNN
from probdl.bnn.elbo import MeanFieldELBO
from tests.bnn.conftest import TINY


def _loss_and_grads(elbo, model, x, y, validation=False):
    model.zero_grad()
    pyro.set_rng_seed(11)
    objective = ELBO(noise_prior=0.1)  # the full training model: noise images, dropout masks
    with pyro.validation_enabled(validation):
        loss = elbo.differentiable_loss(
            partial(objective.model, model), partial(objective.guide, model), x, y, None, 300
        )
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # Normal prior: the KL is closed-form and the weight densities are skipped
        {"bayesian_layers": "last", "batch_norm": True},
        {"prior": "mixture"},  # no closed-form KL: falls back to the sampled estimate
        {"components": 3},  # a (3, D) weights site, rows shared out among the components
        {"components": 2, "prior": "mixture"},
    ],
)
@pytest.mark.parametrize("particles", [1, 2])
def test_same_loss_and_gradients_as_trace_mean_field_elbo(kwargs, particles):
    model = BayesianCNN(1, 10, (8, 8), **TINY, **kwargs).train()
    with torch.no_grad():
        model.variational.rho.uniform_(-5, -2)
    x, y = torch.rand(12, 1, 8, 8), torch.randint(0, 10, (12,))
    lean, grads = _loss_and_grads(MeanFieldELBO(num_particles=particles, max_plate_nesting=1),
                                  model, x, y)  # fmt: skip
    ref, ref_grads = _loss_and_grads(
        TraceMeanField_ELBO(num_particles=particles, max_plate_nesting=1), model, x, y
    )
    torch.testing.assert_close(lean, ref)
    assert len(grads) == len(ref_grads)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r)


def test_with_pyro_validation_on_it_is_the_parent_path():
    model = BayesianCNN(1, 10, (8, 8), **TINY).eval()
    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 10, (6,))
    lean, _ = _loss_and_grads(MeanFieldELBO(max_plate_nesting=1), model, x, y, validation=True)
    ref, _ = _loss_and_grads(TraceMeanField_ELBO(max_plate_nesting=1), model, x, y)
    torch.testing.assert_close(lean, ref)


@pytest.mark.parametrize(
    "objective, kwargs",
    [
        (ELBO(noise_prior=0.1), {}),  # noise images and 4 dropout masks
        (ELBO(num_particles=2, kl_annealing=4), {"bayesian_layers": "last"}),
        (ELBO(local_reparam="dense", noise_prior=0.0), {"batch_norm": True}),
        (ELBO(noise_prior=0.1), {"components": 3}),
        (ELBO(local_reparam=True, noise_prior=0.1), {"components": 2, "bayesian_layers": "last"}),
    ],
)
def test_the_direct_loss_is_the_pyro_loss_with_the_same_draws(objective, kwargs):
    """ELBO.loss skips Pyro's tracing for the closed-form KL: same value, same gradients."""
    model = BayesianCNN(1, 10, (8, 8), **TINY, **kwargs).train()
    with torch.no_grad():
        model.variational.rho.uniform_(-5, -2)
    x, y, size = torch.rand(12, 1, 8, 8), torch.randint(0, 10, (12,)), 300
    model.zero_grad()
    pyro.set_rng_seed(5)
    direct = objective.loss(model, x, y, torch.arange(12), size, epoch=0)
    direct.backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    pyro.set_rng_seed(5)
    elbo = TraceMeanField_ELBO(num_particles=objective.num_particles, max_plate_nesting=1)
    ref = elbo.differentiable_loss(partial(objective.model, model), partial(objective.guide, model),
                                   x, y, torch.arange(12), size, objective.kl_weight(0)) / size
    ref.backward()
    torch.testing.assert_close(direct, ref)
    for g, r in zip(grads, [p.grad for p in model.parameters() if p.grad is not None], strict=True):
        torch.testing.assert_close(g, r)
