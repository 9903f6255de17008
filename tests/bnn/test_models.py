"""The Pyro model and guide: closed-form KL counted once, likelihood scaled by N / batch."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from probdl.bnn import ELBO, MAP, BayesianCNN, DeterministicCNN, MCDropoutCNN
from probdl.errors import ModelError
from tests.bnn.conftest import TINY


def _closed_form_kl(mu, sigma, prior_sigma):
    return (torch.log(prior_sigma / sigma) + (sigma**2 + mu**2) / (2 * prior_sigma**2) - 0.5).sum()


@pytest.mark.parametrize("layers", ["all", "last"])
def test_kl_is_the_closed_form_sum_over_all_weights(layers):
    model = BayesianCNN(1, 10, (8, 8), bayesian_layers=layers, prior_sigma=0.5, **TINY)
    with torch.no_grad():
        model.variational.rho.uniform_(-6, -1)
    mu, sigma = model.posterior_loc(), model.posterior_scale()
    expected = _closed_form_kl(mu.double(), sigma.double(), 0.5)
    torch.testing.assert_close(model.kl_divergence().double(), expected, rtol=1e-4, atol=1e-3)
    n_expected = model.architecture.num_weights if layers == "all" else 10 * TINY["dense"][-1] + 10
    assert mu.numel() == n_expected


def _manual_loss(model, x, y, size, kl_weight):
    """-(size / B) * sum log p(y | x, w) + kl_weight * KL, with w from the guide's trace."""
    guide_trace = poutine.trace(model.guide).get_trace(x, y, None, size, kl_weight)
    w = guide_trace.nodes["weights"]["value"]
    logits = model.architecture.forward(x, model._params(w), None)
    loglik = dist.Categorical(logits=logits).log_prob(y).sum()
    kl = model.kl_divergence()
    extra = 0.0
    if model.det_names:
        det = model.variational.det
        extra = 0.5 * (det * det).sum() / model.prior_sigma**2
    return -(size / len(x)) * loglik + kl_weight * (kl + extra)


@pytest.mark.parametrize("layers", ["all", "last"])
@pytest.mark.parametrize("kl_weight", [1.0, 0.25])
def test_pyro_loss_is_scaled_likelihood_plus_kl_once(layers, kl_weight):
    model = BayesianCNN(1, 10, (8, 8), bayesian_layers=layers, **TINY).eval()
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    size = 1000
    elbo = TraceMeanField_ELBO(max_plate_nesting=1)
    pyro.set_rng_seed(3)
    loss = elbo.differentiable_loss(
        model.model, model.guide, x, y, torch.arange(16), size, kl_weight
    )
    pyro.set_rng_seed(3)
    expected = _manual_loss(model, x, y, size, kl_weight)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-2)
    # per-example loss used by train(): the same divided by the dataset size (the ELBO
    # objective without its extras; in eval mode there is no noise image nor dropout)
    pyro.set_rng_seed(3)
    objective = ELBO(kl_annealing=round(1 / kl_weight) if kl_weight < 1 else 0)  # 1/4 at epoch 0
    per_example = objective.loss(model, x, y, torch.arange(16), size, epoch=0)
    torch.testing.assert_close(per_example * size, expected, rtol=1e-5, atol=1e-2)


def test_kl_does_not_grow_with_dataset_size_but_the_likelihood_does():
    model = BayesianCNN(1, 10, (8, 8), **TINY).eval()
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    elbo = TraceMeanField_ELBO(max_plate_nesting=1)
    losses = {}
    for size in (100, 200):
        pyro.set_rng_seed(0)
        losses[size] = elbo.differentiable_loss(model.model, model.guide, x, y, None, size).item()
    kl = model.kl_divergence().item()
    # loss(N) = N * a + KL  =>  2 * loss(100) - loss(200) = KL
    assert 2 * losses[100] - losses[200] == pytest.approx(kl, rel=1e-4)


def test_trace_elbo_uses_the_sampled_log_density_ratio_instead():
    """Without analytic KL (analytic_kl=False) the same draw gives log q(w) - log p(w)."""
    model = BayesianCNN(1, 3, (8, 8), filters=(2,), dense=(), bayesian_layers="last").eval()
    x, y = torch.rand(4, 1, 8, 8), torch.randint(0, 3, (4,))
    pyro.set_rng_seed(0)
    loss = Trace_ELBO(max_plate_nesting=1).differentiable_loss(
        model.model, model.guide, x, y, None, 40
    )
    pyro.set_rng_seed(0)
    trace = poutine.trace(model.guide).get_trace(x, y, None, 40)
    w = trace.nodes["weights"]["value"]
    q = dist.Normal(model.posterior_loc(), model.posterior_scale()).log_prob(w).sum()
    p = dist.Normal(0.0, 1.0).log_prob(w).sum() - 0.5 * (model.variational.det**2).sum()
    logits = model.architecture.forward(x, model._params(w))
    loglik = dist.Categorical(logits=logits).log_prob(y).sum()
    torch.testing.assert_close(loss, -(10 * loglik) + q - p, rtol=1e-5, atol=1e-3)


def test_binary_problems_use_one_logit_and_a_bernoulli_likelihood():
    model = BayesianCNN(1, 2, (8, 8), **TINY).eval()
    assert model.architecture.num_outputs == 1
    x, y = torch.rand(5, 1, 8, 8), torch.tensor([0, 1, 1, 0, 1])
    trace = poutine.trace(model.model).get_trace(x, y)
    trace.compute_log_prob()  # integer labels are scored as Bernoulli floats
    site = trace.nodes["obs"]
    assert isinstance(site["fn"], dist.Bernoulli)
    logits = model.network(x, trace.nodes["weights"]["value"]).squeeze(-1)
    expected = -torch.nn.functional.binary_cross_entropy_with_logits(
        logits, y.float(), reduction="none"
    )
    torch.testing.assert_close(site["log_prob"], expected)
    probs = model.logits_to_probs(model.sample_logits(x, 3))
    assert probs.shape == (3, 5, 2)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 5))


def test_scale_mixture_prior_log_density():
    model = BayesianCNN(1, 3, (8, 8), prior="mixture", mixture=(0.25, 1.0, 0.1), **TINY)
    prior = model.prior_distribution()
    w = torch.randn(model.posterior_loc().shape) * 0.3
    n1, n2 = torch.distributions.Normal(0, 1.0), torch.distributions.Normal(0, 0.1)
    expected = torch.log(0.25 * n1.log_prob(w).exp() + 0.75 * n2.log_prob(w).exp()).sum()
    torch.testing.assert_close(prior.log_prob(w), expected, rtol=1e-5, atol=1e-3)
    with pytest.raises(ModelError, match="closed-form"):
        model.kl_divergence()


def test_guide_means_start_kaiming_and_scales_small():
    model = BayesianCNN(1, 10, (8, 8), init_scale=2e-3)
    torch.testing.assert_close(
        model.posterior_scale(), torch.full_like(model.posterior_loc(), 2e-3)
    )
    conv1 = model.architecture.unflatten(model.posterior_loc())["conv1.weight"]
    assert conv1.std().item() == pytest.approx((2 / 288) ** 0.5, rel=0.05)


def test_init_scale_by_layer_kind_starts_each_layer_there_and_saves(tmp_path):
    model = BayesianCNN(1, 10, (8, 8), init_scale={"conv": 0.02, "dense": 3e-4}, **TINY)
    scales = model.architecture.unflatten(model.posterior_scale())
    for name, value in scales.items():  # the output layer counts as dense
        expected = 0.02 if name.startswith("conv") else 3e-4
        torch.testing.assert_close(value, torch.full_like(value, expected))
    back = BayesianCNN.load(model.save(tmp_path / "m.probdl"))
    assert back.init_scale == {"conv": 0.02, "dense": 3e-4}
    torch.testing.assert_close(back.posterior_scale(), model.posterior_scale())


def test_predict_dropout_masks_the_draws_at_its_rate():
    # weights fixed (a posterior of scale ~0): the draws differ by their dropout masks only,
    # and the dense layer's units are dropped at the rate asked, not the training rate
    x = torch.rand(64, 1, 8, 8)
    plain = BayesianCNN(1, 10, (8, 8), init_scale=1e-12, predict_dropout=0.0, **TINY).eval()
    assert plain.sample_logits(x, 3).std(0).max() < 1e-6
    model = BayesianCNN(1, 10, (8, 8), init_scale=1e-12, predict_dropout=0.1, **TINY).eval()
    model.load_state_dict(plain.state_dict())
    assert model.sample_logits(x, 3).std(0).max() > 1e-3
    seen = []
    arch = model.architecture
    real = torch.nn.functional.dropout
    def spy(h, p, training):
        seen.append((p, training))
        return real(h, p, training)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("probdl.bnn.architecture.F.dropout", spy)
        model.sample_logits(x, 2)
    assert seen == [(0.1, True)] * len(arch.dense)
    assert BayesianCNN(1, 10, (8, 8), **TINY).predict_dropout == 0.0  # the default: no masks


def test_logits_at_several_rates_share_the_weight_draws():
    # rate 0 is sample_logits itself (same seed, same draws); a rate p drops each dense unit
    # with probability p, rescaling the rest by 1 / (1 - p), so with the weights fixed the
    # mean logit over many masks returns to the unmasked one; rate 0.5 moves further than 0.05
    half = {**TINY, "dropout": 0.5}
    model = BayesianCNN(1, 10, (8, 8), init_scale=0.05, **half).eval()
    x = torch.rand(6, 1, 8, 8)
    torch.manual_seed(3)
    plain = model.sample_logits(x, 4)
    torch.manual_seed(3)
    rates = model.sample_logits_at_rates(x, 4, (0.0, 0.05, 0.5))
    assert rates.shape == (3, 4, 6, 10)
    torch.testing.assert_close(rates[0], plain, rtol=0, atol=0)
    gap = [float((rates[k] - rates[0]).abs().mean()) for k in (1, 2)]
    assert 0 < gap[0] < gap[1]
    fixed = BayesianCNN(1, 10, (8, 8), init_scale=1e-12, **half).eval()
    many = fixed.sample_logits_at_rates(x, 8000, (0.0, 0.5))
    assert float(many[1].std(0).mean()) > 0.2  # the masks move the logits ...
    torch.testing.assert_close(many[1].mean(0), many[0][0], atol=0.06, rtol=0)  # ... about it
    for bad in ((0.0, 0.6), (-0.1,), ("0.1",), (True,), 0.2, (), "0.1"):
        with pytest.raises(ModelError, match=r"rates must be .* training dropout \(0.5\)"):
            model.sample_logits_at_rates(x, 2, bad)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ModelError, match="num_samples must be"):
            model.sample_logits_at_rates(x, bad, (0.1,))
    # it predicts as predict does, in eval mode, leaving a training model's batch norm as it is
    normed = BayesianCNN(1, 10, (8, 8), batch_norm=True, **half).train()
    before = {k: v.clone() for k, v in normed.state_dict().items()}
    normed.sample_logits_at_rates(x, 2, (0.0, 0.2))
    assert normed.training
    for key, value in normed.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bayesian_layers": "first"},
        {"prior": "laplace"},
        {"prior_sigma": 0.0},
        {"init_scale": -1.0},
        {"init_scale": {"conv": 0.01}},
        {"init_scale": {"conv": 0.01, "dense": 0.0}},
        {"init_scale": {"conv": 0.01, "dense": 1e-3, "out": 1e-3}},
        {"predict_dropout": 0.2, "dropout": 0.1},
        {"predict_dropout": -0.1},
        {"predict_dropout": "0.1"},
        {"mixture": (1.5, 1.0, 0.1)},
        {"mixture": "wide"},
        {"prior_sigma": "1"},
        {"seed": 1.5},
    ],
)
def test_bad_bayesian_configurations(kwargs):
    with pytest.raises(ModelError):
        BayesianCNN(1, 10, (8, 8), **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"local_reparam": "conv"},
        {"dropout_masks": 0},
        {"dropout_masks": 2.5},
        {"dropout_masks": "4"},
        {"num_particles": 0},
        {"kl_annealing": -1},
    ],
)
def test_bad_objective_settings(kwargs):
    with pytest.raises(ModelError):
        ELBO(**kwargs)


def test_mc_dropout_needs_dropout():
    with pytest.raises(ModelError, match="dropout"):
        MCDropoutCNN(1, 10, (8, 8), dropout=0.0)


def test_map_loss_is_cross_entropy_plus_gaussian_prior():
    model = DeterministicCNN(1, 10, (8, 8), prior_sigma=0.7, **TINY).eval()
    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 10, (6,))
    w = model.weights.flat
    expected = torch.nn.functional.cross_entropy(model(x), y) + (w * w).sum() / (2 * 0.49 * 50)
    torch.testing.assert_close(MAP().loss(model, x, y, None, 50), expected)


def _set_scales(model, conv, dense):
    """Posterior scale ``conv`` on the convolutions' weights, ``dense`` on the dense layers'."""
    parts = []
    for name, size in zip(model.bayes_names, model.architecture.sizes, strict=True):
        scale = torch.tensor(conv if name.startswith("conv") else dense)
        parts.append(torch.full((size,), float(scale.expm1().log()) if scale > 1e-6 else -40.0))
    with torch.no_grad():
        model.variational.rho.copy_(torch.cat(parts))


def _logits(objective, model, x, y):
    trace = poutine.trace(model.guide).get_trace(x, y)
    return poutine.replay(objective.model, trace=trace)(model, x, y)


def test_dense_local_reparam_draws_conv_weights_and_samples_dense_preactivations():
    config = {**TINY, "dropout": 0.0}
    dense_lr = BayesianCNN(1, 10, (8, 8), **config)
    plain = BayesianCNN(1, 10, (8, 8), **config)
    lr_objective, plain_objective = ELBO(local_reparam="dense"), ELBO()
    x = torch.rand(1, 1, 8, 8).expand(4, 1, 8, 8).contiguous()  # one image, four times
    y = torch.zeros(4, dtype=torch.long)
    # Noisy convolutions, exact dense layers: the same draws give the same loss as sampling
    # every weight, so the convolutions use the drawn weights (not the means).
    _set_scales(dense_lr, conv=0.3, dense=0.0)
    _set_scales(plain, conv=0.3, dense=0.0)
    torch.manual_seed(1)
    a = lr_objective.loss(dense_lr.train(), x, y, None, 4)
    torch.manual_seed(1)
    b = plain_objective.loss(plain.train(), x, y, None, 4)
    torch.testing.assert_close(a, b)
    # Exact convolutions, noisy dense layers: one shared weight draw gives the four copies the
    # same logits; sampled pre-activations give each example its own noise.
    _set_scales(dense_lr, conv=0.0, dense=0.3)
    _set_scales(plain, conv=0.0, dense=0.3)
    shared = _logits(plain_objective, plain, x, y)
    assert torch.allclose(shared, shared[:1].expand_as(shared))
    per_example = _logits(lr_objective, dense_lr, x, y)
    assert not torch.allclose(per_example[0], per_example[1], atol=1e-3)


def test_dropout_masks_average_the_log_likelihood_over_masks_after_the_first_dense_layer():
    masks, size = 3, 500
    config = {**TINY, "dropout": 0.5}
    model = BayesianCNN(1, 10, (8, 8), **config).train()
    objective = ELBO(dropout_masks=masks, noise_prior=0.0)
    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 10, (6,))
    guide_trace = poutine.trace(model.guide).get_trace(x, y, None, size)
    pyro.set_rng_seed(5)
    replayed = poutine.replay(objective.model, trace=guide_trace)
    model_trace = poutine.trace(replayed).get_trace(model, x, y, None, size)
    model_trace.compute_log_prob()
    # By hand: features and the first dense layer once, then one dropout mask per copy.
    params = model._params(guide_trace.nodes["weights"]["value"])
    hidden = torch.relu(
        torch.nn.functional.linear(
            model.architecture._features(x, params, None), params["dense0.weight"],
            params["dense0.bias"],
        )
    )  # fmt: skip
    pyro.set_rng_seed(5)
    dropped = torch.nn.functional.dropout(hidden.expand(masks, *hidden.shape), 0.5)
    logits = torch.nn.functional.linear(dropped, params["out.weight"], params["out.bias"])
    assert not torch.allclose(logits[0], logits[1])  # the masks differ
    per_mask = torch.log_softmax(logits, -1).gather(-1, y.expand(masks, 6)[..., None]).sum((1, 2))
    expected = size / len(x) * per_mask.mean()
    torch.testing.assert_close(model_trace.nodes["obs"]["log_prob_sum"], expected)
    torch.testing.assert_close(model_trace.nodes["_RETURN"]["value"], logits)


def test_more_dropout_masks_estimate_the_same_loss_with_less_noise():
    config = {**TINY, "dropout": 0.5}
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    draws = {}
    for masks in (1, 8):
        model = BayesianCNN(1, 10, (8, 8), **config).train()
        objective = ELBO(dropout_masks=masks, noise_prior=0.0)
        torch.manual_seed(0)
        draws[masks] = torch.stack(
            [objective.loss(model, x, y, None, 1000).detach() for _ in range(300)]
        )
    # Same expectation (within the standard error of the difference), lower variance.
    se = (draws[1].var() / 300 + draws[8].var() / 300).sqrt()
    assert abs(draws[1].mean() - draws[8].mean()) < 4 * se
    assert draws[8].var() < 0.4 * draws[1].var()
