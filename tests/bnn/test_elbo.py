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
