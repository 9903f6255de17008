"""BayesianCNN(components=K): a uniform mixture of K mean-field posteriors, checked by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from probdl.bnn import ELBO, BayesianCNN, Optim, evaluate, train
from probdl.errors import ModelError
from tests.bnn.conftest import TINY


def _near_point_mass(model: BayesianCNN) -> BayesianCNN:
    """Components with distinct means and scales of ~1e-13: every draw is its mean."""
    with torch.no_grad():
        model.variational.loc.add_(torch.randn_like(model.variational.loc) * 0.05)
        model.variational.rho.fill_(-30.0)
    return model


def test_kl_is_the_mean_of_the_components_closed_form_kls():
    model = BayesianCNN(1, 10, (8, 8), **TINY, components=3, prior_sigma=0.7)
    with torch.no_grad():
        model.variational.rho.uniform_(-6, -1)
    loc, scale = model.posterior_loc(), model.posterior_scale()
    assert loc.shape == (3, model.architecture.num_weights)
    # KL(N(m, s^2) || N(0, p^2)) = log(p / s) + (s^2 + m^2) / (2 p^2) - 1/2, per weight
    per = (torch.log(0.7 / scale) + (scale**2 + loc**2) / (2 * 0.7**2) - 0.5).sum(1)
    torch.testing.assert_close(model.kl_divergence(), per.mean())


def _expected_loss(model, x, y, size, o):
    """The loss by hand with row i scored by component (i + o) mod K's mean weights."""
    arch, loc, k = model.architecture, model.posterior_loc(), model.components
    nll = sum(F.cross_entropy(arch.forward(x[i : i + 1], arch.unflatten(loc[(i + o) % k])),
                              y[i : i + 1]) for i in range(len(x)))  # fmt: skip
    return ((size / len(x)) * nll + model.kl_divergence()) / size


@pytest.mark.parametrize(
    "k, rows, local_reparam",
    [(2, 7, False), (3, 2, False), (2, 5, True)],  # K not dividing the batch, K above it
)
def test_the_loss_scores_row_i_with_component_i_plus_a_random_offset(k, rows, local_reparam):
    # local_reparam draws pre-activations from the row's own component (its mean, here)
    model = _near_point_mass(BayesianCNN(1, 10, (8, 8), **{**TINY, "dropout": 0.0},
                                         components=k)).train()  # fmt: skip
    x, y, size = torch.rand(rows, 1, 8, 8), torch.randint(0, 10, (rows,)), 140
    expected = [_expected_loss(model, x, y, size, o) for o in range(k)]
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        objective = ELBO(noise_prior=0.0, local_reparam=local_reparam)
        loss = objective.loss(model, x, y, torch.arange(rows), size)
        match = [o for o in range(k) if torch.allclose(loss, expected[o], rtol=1e-5, atol=1e-6)]
        assert match, (loss, expected)
        seen.add(match[0])
    assert seen == set(range(k))  # every offset occurs: each row meets every component


def test_predictions_draw_an_equal_share_from_each_component():
    model = _near_point_mass(BayesianCNN(1, 10, (8, 8), **TINY, components=2)).eval()
    x = torch.rand(5, 1, 8, 8)
    logits = model.sample_logits(x, num_samples=4)
    arch, loc = model.architecture, model.posterior_loc()
    by_component = [arch.forward(x, arch.unflatten(loc[c])) for c in range(2)]
    o = 0 if torch.allclose(logits[0], by_component[0], rtol=1e-4, atol=1e-5) else 1
    for s in range(4):
        torch.testing.assert_close(logits[s], by_component[(s + o) % 2], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(logits[0], logits[1])


def test_batch_norm_on_bayesian_convolutions_is_refused_with_components():
    with pytest.raises(ModelError, match="bayesian_layers='last'"):
        BayesianCNN(1, 10, (8, 8), batch_norm=True, components=2)
    BayesianCNN(1, 10, (8, 8), batch_norm=True, components=2, bayesian_layers="last")


def test_one_component_is_the_plain_mean_field_model():
    one = BayesianCNN(1, 10, (8, 8), **TINY, components=1)
    plain = BayesianCNN(1, 10, (8, 8), **TINY)
    assert one.posterior_loc().shape == (one.architecture.num_weights,)
    assert torch.equal(one.posterior_loc(), plain.posterior_loc())
    two = BayesianCNN(1, 10, (8, 8), **TINY, components=2)
    assert torch.equal(two.posterior_loc()[0], plain.posterior_loc())  # the first is the same
    assert not torch.equal(two.posterior_loc()[1], plain.posterior_loc())


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_components_must_be_a_whole_number_of_at_least_one(bad):
    with pytest.raises(ModelError, match="components must be a whole number >= 1"):
        BayesianCNN(1, 10, (8, 8), components=bad)


def test_a_mixture_model_learns_digits(small_digits):
    tr, va, te = small_digits
    model = BayesianCNN(1, 10, (8, 8), **{**TINY, "dropout": 0.2}, components=2)
    result = train(model, tr, va, epochs=6, optim=Optim(lr=1e-2, batch_size=16), progress=False)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert evaluate(model, te, num_samples=4)["accuracy"] > 0.6  # chance is 0.1
    # each component learned from the data on its own: one fitted by the KL alone stays near
    # chance (0.1). Component 0 starts where a one-component model does, which learns slowly
    # from this seed (.77 with whole batches, .38 from half of each after 6 epochs).
    model.eval()
    x, arch = model.prepare(te.images), model.architecture
    for loc in model.posterior_loc().detach():
        pred = arch.forward(x, arch.unflatten(loc)).argmax(1)
        assert (pred == torch.as_tensor(te.labels)).float().mean() > 0.25


def test_pairs_of_images_go_to_one_component_each():
    """The sum likelihood's logits are (..., B, 2, K): rows are examples, not images."""
    from probdl.hybrid.sums import SumLikelihood

    model = _near_point_mass(BayesianCNN(1, 10, (8, 8), **{**TINY, "dropout": 0.0},
                                         components=2)).train()  # fmt: skip
    x, s, size = torch.rand(5, 2, 1, 8, 8), torch.randint(0, 19, (5,)), 50
    objective = ELBO(noise_prior=0.0, likelihood=SumLikelihood(10))
    torch.manual_seed(0)
    loss = objective.loss(model, x, s, torch.arange(5), size)
    arch, loc = model.architecture, model.posterior_loc()
    expected = []
    for o in range(2):  # example i by component (i + o) mod 2
        nll = torch.zeros(())
        for i in range(5):  # P(sum) = sum_d P(d1 = d) P(d2 = s - d)
            p = arch.forward(x[i], arch.unflatten(loc[(i + o) % 2])).softmax(-1)
            pairs = [p[0, d] * p[1, s[i] - d] for d in range(10) if 0 <= s[i] - d < 10]
            nll = nll - torch.log(sum(pairs))
        expected.append(((size / 5) * nll + model.kl_divergence()) / size)
    assert any(torch.allclose(loss, e, rtol=1e-5, atol=1e-6) for e in expected)
