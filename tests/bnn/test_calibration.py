"""Temperature scaling: the NLL-optimal T on held-out data, kept with the model, used by predict."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from probdl.bnn import BayesianCNN, DeterministicCNN, MCDropoutCNN, Optim, predict, train
from probdl.bnn.calibration import (
    _best_temperature,
    _generalizes,
    _image_nll,
    fit_temperature,
    temperature_nll,
)
from tests.bnn.conftest import TINY


def _nll_by_hand(logits, labels, t):
    """-mean_n mean_s log softmax(z_ns / t)[y_n], in numpy."""
    z = logits.numpy().astype(np.float64) / t
    if z.shape[-1] == 1:
        p1 = 1 / (1 + np.exp(-z[..., 0]))
        p = np.stack([1 - p1, p1], -1)
    else:
        p = np.exp(z - z.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
    return -np.log(p[:, np.arange(len(labels)), labels.numpy()]).mean()


@pytest.mark.parametrize("outputs", [1, 4])
def test_temperature_nll_is_the_mixture_nll_written_out(outputs):
    logits = torch.randn(3, 20, outputs) * 3
    labels = torch.randint(0, 2 if outputs == 1 else outputs, (20,))
    for t in (0.5, 1.0, 2.5):
        assert temperature_nll(logits, labels, t) == pytest.approx(_nll_by_hand(logits, labels, t))


def test_the_fit_minimizes_the_nll_and_is_kept_only_where_it_carries_over():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(1, 400, 5, generator=gen) * 2
    labels = torch.distributions.Categorical(logits=z[0]).sample()
    overconfident = 3 * z  # a systematic error: every half of the images asks for T near 3
    t = _best_temperature(overconfident, labels)
    grid = np.exp(np.linspace(math.log(0.05), math.log(20), 400))
    best = min(grid, key=lambda g: _nll_by_hand(overconfident, labels, g))
    assert abs(math.log(t) - math.log(best)) < 0.03  # the grid's own spacing
    assert 2 < t < 4 and _generalizes(overconfident, labels, seed=0)
    # 39 right and one confidently wrong image: the half without it asks for hard votes,
    # which the other half punishes; T stays 1
    right = torch.zeros(1, 40, 3)
    right[0, :, 0] = 2.0
    right[0, 7] = torch.tensor([0.0, 6.0, 0.0])
    assert not _generalizes(right, torch.zeros(40, dtype=torch.long), seed=0)
    # no error at all: sharpening would run to the search's bound; nothing bounds it, T = 1
    right[0, 7] = torch.tensor([2.0, 0.0, 0.0])
    assert temperature_nll(right, torch.zeros(40, dtype=torch.long), 0.05) < temperature_nll(
        right, torch.zeros(40, dtype=torch.long), 1.0
    )
    assert _best_temperature(right, torch.zeros(40, dtype=torch.long)) == 1.0



def test_a_fit_set_by_a_few_images_is_not_kept_even_where_it_crosses_over():
    """500 confident, right images, 8 right by a small margin and 5 wrong: the NLL-optimal
    T (.36) sharpens for the few, and on this split it also lowers the other half's NLL
    (the plain cross-fit the guard used to be), but by less than two standard errors of the
    per-image gains. T stays 1. The systematic case above keeps its fit."""
    gen = torch.Generator().manual_seed(1)
    z = torch.zeros(1, 500, 10)
    z[0, :, 0] = 10.0
    y = torch.zeros(500, dtype=torch.long)
    perm = torch.randperm(500, generator=gen)
    wrong, close = perm[:5], perm[5:13]
    z[0, wrong, 0] = 0.0
    z[0, wrong, 1] = 0.5 + torch.rand(5, generator=gen)
    z[0, close, 0] = 1.0 + torch.rand(8, generator=gen)
    z[0, close, 1] = 0.0
    t = _best_temperature(z, y)
    assert t < 0.5
    order = torch.randperm(500, generator=torch.Generator().manual_seed(0))
    halves = order[:250], order[250:]
    for fit, check in (halves, halves[::-1]):  # the old guard: passes on both halves
        t_half = _best_temperature(z[:, fit], y[fit])
        assert temperature_nll(z[:, check], y[check], t_half) < temperature_nll(
            z[:, check], y[check], 1.0
        )
    assert not _generalizes(z, y, seed=0)


def test_a_softening_fit_needs_only_to_carry_over():
    """The mirror case: 5 of 500 images confidently wrong ask for T near 1.25. The gain on
    each held-out half is again within two standard errors, but softening is the cautious
    direction: the fit is kept."""
    gen = torch.Generator().manual_seed(0)
    z = torch.zeros(1, 500, 10)
    z[0, :, 0] = 8.0 + 4 * torch.rand(500, generator=gen)
    y = torch.zeros(500, dtype=torch.long)
    wrong = torch.randperm(500, generator=gen)[:5]
    z[0, wrong, 0] = 0.0
    z[0, wrong, 1] = 6.0 * (0.5 + torch.rand(5, generator=gen))
    assert 1.1 < _best_temperature(z, y) < 1.5
    order = torch.randperm(500, generator=torch.Generator().manual_seed(0))
    for fit, check in ((order[:250], order[250:]), (order[250:], order[:250])):
        t = _best_temperature(z[:, fit], y[fit])
        gain = _image_nll(z[:, check], y[check], 1.0) - _image_nll(z[:, check], y[check], t)
        assert 0 < float(gain.mean()) < 2 * float(gain.std()) / math.sqrt(len(gain))
    assert _generalizes(z, y, seed=0)

def test_fitted_temperature_is_stored_and_predict_uses_it(small_digits):
    tr, va, _ = small_digits
    model = DeterministicCNN(1, 10, (8, 8), **TINY)
    train(model, tr, None, epochs=3, optim=Optim(lr=1e-2), progress=False)
    with torch.no_grad():
        logits = model.sample_logits(model.prepare(va.images), 1)
    t = fit_temperature(model, va.images, va.labels)
    assert model.temperature_ == t
    assert _nll_by_hand(logits, va.labels, t) <= _nll_by_hand(logits, va.labels, 1.0)
    model.temperature_ = t = 1.7
    probs = predict(model, va.images).probs
    expected = torch.softmax(logits[0].double() / t, -1).float()
    torch.testing.assert_close(probs, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [BayesianCNN, DeterministicCNN, MCDropoutCNN])
def test_train_calibrates_on_val_and_the_file_keeps_it(cls, small_digits, tmp_path):
    tr, va, _ = small_digits
    model = cls(1, 10, (8, 8), **TINY)
    result = train(model, tr, va, epochs=2, optim=Optim(lr=1e-2), progress=False)
    assert result.temperature == model.temperature_
    model.temperature_ = 0.8
    again = type(model).load(model.save(tmp_path / "m.pt"))
    assert again.temperature_ == model.temperature_
    uncalibrated = cls(1, 10, (8, 8), **TINY)
    train(uncalibrated, tr, va, epochs=2, optim=Optim(lr=1e-2), calibrate=False, progress=False)
    assert uncalibrated.temperature_ == 1.0


def test_draws_that_disagree_are_not_sharpened_into_votes():
    """Each image has one right and one wrong draw: the mixture's NLL would fall towards log 2
    as T -> 0 (two hard votes), which fits the draws, not the model; per draw it rises."""
    logits = torch.tensor([[[3.0, 0.0, 0.0]] * 10, [[0.0, 3.0, 0.0]] * 10])
    labels = torch.zeros(10, dtype=torch.long)
    assert temperature_nll(logits, labels, 0.05) > temperature_nll(logits, labels, 1.0)
