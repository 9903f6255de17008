"""The noise-contrastive prior: shuffled images, the divergence from uniform, the ELBO factor."""

from __future__ import annotations

import pyro
import pytest
import torch
from pyro import poutine

from probdl import metrics
from probdl.bnn import ELBO, BayesianCNN, Optim, predict, train
from probdl.bnn import objectives as objectives_module
from probdl.bnn.contrast import divergence_from_uniform, shuffled_pixels
from probdl.errors import ModelError
from tests.bnn.conftest import TINY


def test_shuffled_images_keep_their_pixels_and_share_one_order_across_channels():
    images = torch.rand(6, 3, 5, 4)
    out = shuffled_pixels(images, count=4)
    assert out.shape == (4, 3, 5, 4)
    for i in range(4):
        for c in range(3):  # the same multiset of values per channel
            torch.testing.assert_close(out[i, c].flatten().sort().values,
                                       images[i, c].flatten().sort().values)  # fmt: skip
        # one permutation for all channels: a pixel keeps its colour
        src = images[i].reshape(3, -1).T
        dst = out[i].reshape(3, -1).T
        matched = (dst[:, None, :] == src[None, :, :]).all(-1).any(-1)
        assert matched.all()
    assert not torch.equal(out, images[:4])


def test_divergence_from_uniform_matches_the_categorical_and_bernoulli_kl():
    logits = torch.randn(7, 5, dtype=torch.float64)
    uniform = torch.distributions.Categorical(probs=torch.full((7, 5), 0.2, dtype=torch.float64))
    expected = torch.distributions.kl_divergence(
        uniform, torch.distributions.Categorical(logits=logits)
    )
    torch.testing.assert_close(divergence_from_uniform(logits), expected)
    one = torch.randn(9, 1, dtype=torch.float64)
    half = torch.distributions.Bernoulli(probs=torch.full((9,), 0.5, dtype=torch.float64))
    expected = torch.distributions.kl_divergence(
        half, torch.distributions.Bernoulli(logits=one.squeeze(-1))
    )
    torch.testing.assert_close(divergence_from_uniform(one), expected)
    assert divergence_from_uniform(torch.zeros(3, 4)).abs().max() < 1e-6


@pytest.mark.parametrize("batch_norm", [False, True])
def test_training_loss_adds_the_weighted_divergence_on_the_noise_images(monkeypatch, batch_norm):
    """loss(prior on) - loss(prior off) = weight * size * mean KL(uniform || p(noise image))."""
    flipped = lambda x, count: x[:count].flip(-1)  # noqa: E731 - a known, deterministic "shuffle"
    monkeypatch.setattr(objectives_module, "shuffled_pixels", flipped)
    kw = {**TINY, "dropout": 0.0, "batch_norm": batch_norm}
    on = BayesianCNN(1, 10, (8, 8), **kw).train()
    off = BayesianCNN(1, 10, (8, 8), **kw).train()
    off.load_state_dict(on.state_dict())
    x, y, size = torch.rand(12, 1, 8, 8), torch.randint(0, 10, (12,)), 500
    losses = {}
    for name, model, objective in (("on", on, ELBO(noise_prior=0.3, noise_images=3)),
                                   ("off", off, ELBO(noise_prior=0.0))):  # fmt: skip
        pyro.set_rng_seed(4)
        losses[name] = objective.loss(model, x, y, None, size) * size
    pyro.set_rng_seed(4)
    w = poutine.trace(on.guide).get_trace(x, y, None, size).nodes["weights"]["value"]
    noise = flipped(x, 3)
    norms = on.variational.norms  # batch norm: statistics from the 12 real rows only
    logits = on.architecture.forward(torch.cat([x, noise]), on._params(w), norms, stats_rows=12)
    expected = 0.3 * size * divergence_from_uniform(logits[12:]).mean()
    torch.testing.assert_close(losses["on"] - losses["off"], expected, rtol=1e-4, atol=1e-3)


def test_batch_norm_statistics_come_from_the_real_rows_only():
    norm = torch.nn.BatchNorm2d(4).train()
    twin = torch.nn.BatchNorm2d(4).train()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
        norm.bias.uniform_(-1, 1)
    twin.load_state_dict(norm.state_dict())
    h = torch.randn(10, 4, 3, 3)
    noise = 5 + 3 * torch.randn(6, 4, 3, 3)
    from probdl.bnn.architecture import _batch_norm

    out = _batch_norm(norm, torch.cat([h, noise]), stats_rows=10)
    torch.testing.assert_close(out[:10], twin(h))  # as if the noise rows were not there
    torch.testing.assert_close(norm.running_mean, twin.running_mean)
    torch.testing.assert_close(norm.running_var, twin.running_var)
    mean = h.mean(dim=(0, 2, 3), keepdim=True)
    var = h.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    expected = (noise - mean) / torch.sqrt(var + norm.eps) * norm.weight.view(1, -1, 1, 1)
    torch.testing.assert_close(out[10:], expected + norm.bias.view(1, -1, 1, 1))


def test_trained_with_the_prior_the_network_is_unsure_about_uniform_noise(small_digits):
    """Trained on shuffled digits only, the prior flattens predictions on unseen uniform noise."""
    tr, va, te = small_digits
    noise = torch.rand(len(te.images), 1, 8, 8, generator=torch.Generator().manual_seed(5))
    found = {}
    for weight in (0.0, 0.5):
        model = BayesianCNN(1, 10, (8, 8), seed=0, bayesian_layers="last",
                            filters=(8, 16), dense=(32,), dropout=0.0)  # fmt: skip
        train(model, tr, va, epochs=10, objective=ELBO(noise_prior=weight), seed=0,
              optim=Optim(batch_size=32, lr=1e-2), calibrate=False, progress=False)  # fmt: skip
        torch.manual_seed(0)
        on_digits = metrics.entropy(predict(model, te.images, 4).probs)
        on_noise = metrics.entropy(predict(model, noise, 4).probs)
        found[weight] = (float(on_noise.mean()), metrics.auroc(on_noise, on_digits))
    (noise_off, auroc_off), (noise_on, auroc_on) = found[0.0], found[0.5]
    assert noise_on > noise_off + 0.5  # measured 1.98 against 1.02 nats
    assert auroc_on > auroc_off + 0.05  # measured .988 against .858


@pytest.mark.parametrize(
    "kwargs", [{"noise_prior": -0.1}, {"noise_prior": float("nan")}, {"noise_images": 0}]
)
def test_bad_noise_prior_settings(kwargs):
    with pytest.raises(ModelError, match="noise_"):
        ELBO(**kwargs)
