"""train(): learning on digits, checkpoints every epoch, resuming a killed run, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from probdl.bnn import (
    ELBO,
    MAP,
    BayesianCNN,
    DeterministicCNN,
    Inputs,
    MCDropoutCNN,
    Optim,
    evaluate,
    train,
    training,
)
from probdl.data import Augment
from probdl.errors import DataError, ModelError
from tests.bnn.conftest import TINY


@pytest.mark.parametrize("cls", [BayesianCNN, DeterministicCNN, MCDropoutCNN])
def test_every_model_learns_digits(cls, small_digits):
    tr, va, te = small_digits
    model = cls(1, 10, (8, 8), **{**TINY, "dropout": 0.2})
    result = train(model, tr, va, epochs=6, optim=Optim(lr=1e-2, batch_size=16), progress=False)
    assert len(result.history) == 6
    assert 1 <= result.best_epoch <= 6
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    scores = evaluate(model, te, num_samples=4)
    assert scores["accuracy"] > 0.6  # chance is 0.1
    assert model.classes_ == tr.classes


def test_resume_continues_a_killed_run_exactly(small_digits, tmp_path, monkeypatch):
    tr, va, _ = small_digits
    straight = BayesianCNN(1, 10, (8, 8), **TINY)
    full = train(straight, tr, va, epochs=3, optim=Optim(lr=1e-2), checkpoint_dir=tmp_path / "a",
                 progress=False)  # fmt: skip
    real_save = training.save_training_state

    def save_then_die(path, model, optimizer, scheduler, epoch, *rest):
        real_save(path, model, optimizer, scheduler, epoch, *rest)
        if epoch == 2:
            raise KeyboardInterrupt  # the process is killed right after epoch 2's checkpoint

    monkeypatch.setattr(training, "save_training_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(
            BayesianCNN(1, 10, (8, 8), **TINY),
            tr,
            va,
            epochs=3,
            optim=Optim(lr=1e-2),
            checkpoint_dir=tmp_path / "b",
            progress=False,
        )
    monkeypatch.setattr(training, "save_training_state", real_save)
    # "killed" after epoch 2: a fresh process builds the model again and resumes to epoch 3
    resumed_model = BayesianCNN(1, 10, (8, 8), **TINY)
    torch.manual_seed(999)  # whatever the caller's RNG, resume restores the run's own
    resumed = train(
        resumed_model,
        tr,
        va,
        epochs=3,
        optim=Optim(lr=1e-2),
        checkpoint_dir=tmp_path / "b",
        resume=True,
        progress=False,
    )
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert resumed.history[-1]["loss"] == pytest.approx(full.history[-1]["loss"], rel=1e-5)
    after = resumed_model.state_dict()
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(value, after[name])
    assert (tmp_path / "b" / "model.pt").exists()


@pytest.mark.parametrize("ema_decay", [0.6, None])  # None: train's default, 0.95
def test_ema_decay_returns_the_moving_average_of_the_iterates(small_digits, monkeypatch, ema_decay):
    tr, _, _ = small_digits
    model = BayesianCNN(1, 10, (8, 8), **TINY)
    iterates, rates = [], []
    real_step = torch.optim.Adam.step

    def step_and_record(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        out = real_step(self, *args, **kwargs)
        iterates.append([p.detach().clone() for p in model.parameters()])
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", step_and_record)
    kw = {} if ema_decay is None else {"ema_decay": ema_decay}
    train(model, tr, None, epochs=2, optim=Optim(batch_size=100, lr=1e-2, **kw), progress=False)
    decay = 0.95 if ema_decay is None else ema_decay
    assert len(iterates) == 8  # 400 examples in batches of 100, two epochs
    assert rates == [1e-2] * 8  # the default schedule is constant
    expected = iterates[0]
    for step, it in enumerate(iterates[1:], start=1):  # written out by hand, with the warm-up
        d = min(decay, (1 + step) / (10 + step))
        expected = [d * e + (1 - d) * p for e, p in zip(expected, it, strict=True)]
    for got, want, last in zip(model.parameters(), expected, iterates[-1], strict=True):
        torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-6)
        if got.numel():
            assert not torch.allclose(got.detach(), last)  # the average, not the last iterate


def test_resume_with_ema_decay_continues_the_averages(small_digits, tmp_path, monkeypatch):
    tr, va, _ = small_digits
    kw = {"epochs": 3, "optim": Optim(lr=1e-2, ema_decay=0.9), "progress": False}
    straight = BayesianCNN(1, 10, (8, 8), **TINY)
    train(straight, tr, va, checkpoint_dir=tmp_path / "a", **kw)
    real_save = training.save_training_state

    def save_then_die(path, model, optimizer, scheduler, epoch, *rest):
        real_save(path, model, optimizer, scheduler, epoch, *rest)
        if epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "save_training_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(BayesianCNN(1, 10, (8, 8), **TINY), tr, va, checkpoint_dir=tmp_path / "b", **kw)
    monkeypatch.setattr(training, "save_training_state", real_save)
    resumed = BayesianCNN(1, 10, (8, 8), **TINY)
    train(resumed, tr, va, checkpoint_dir=tmp_path / "b", resume=True, **kw)
    after = resumed.state_dict()
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(value, after[name])


def test_resume_refuses_a_checkpoint_of_another_model(small_digits, tmp_path):
    tr, va, _ = small_digits
    train(
        BayesianCNN(1, 10, (8, 8), **TINY),
        tr,
        va,
        epochs=1,
        checkpoint_dir=tmp_path,
        progress=False,
    )
    from probdl.errors import CheckpointError

    with pytest.raises(CheckpointError, match="same model settings"):
        train(
            BayesianCNN(1, 10, (8, 8), filters=(4,), dense=(16,)),
            tr,
            va,
            epochs=2,
            checkpoint_dir=tmp_path,
            resume=True,
            progress=False,
        )


def test_early_stopping_keeps_the_best_validation_epoch(small_digits):
    tr, va, _ = small_digits
    model = DeterministicCNN(1, 10, (8, 8), **TINY)
    result = train(model, tr, va, epochs=40, optim=Optim(lr=0.05, patience=2), progress=False)
    nlls = [h["val_nll"] for h in result.history]
    assert result.best_epoch == 1 + nlls.index(min(nlls))
    assert result.stopped_early == (len(nlls) < 40)
    if result.stopped_early:
        assert len(nlls) - result.best_epoch == 2


def test_the_best_epoch_is_chosen_without_predict_dropout_masks(small_digits, monkeypatch):
    # predict_dropout's masks stay out of the per-epoch validation (one masked draw is noisy)
    # and in the fitted temperature and predict
    tr, va, _ = small_digits
    model = BayesianCNN(1, 10, (8, 8), predict_dropout=0.1, **TINY)
    rates, real = [], training.predictive_probs
    def spy(m, *args, **kwargs):
        rates.append(m.predict_dropout)
        return real(m, *args, **kwargs)
    monkeypatch.setattr(training, "predictive_probs", spy)
    calls = []
    real_logits = model.sample_logits
    monkeypatch.setattr(model, "sample_logits",
                        lambda x, n: calls.append(model.predict_dropout) or real_logits(x, n))
    train(model, tr, va, epochs=2, progress=False)
    assert rates == [0.0, 0.0] and model.predict_dropout == 0.1
    assert calls[-1] == 0.1  # the temperature's draws, after the epochs


def test_kl_annealing_particles_augmentation_and_options_run(small_digits):
    tr, va, _ = small_digits
    model = BayesianCNN(1, 10, (8, 8), prior="normal", **TINY)
    objective = ELBO(kl_annealing=2, num_particles=2, analytic_kl=False, local_reparam=True)
    result = train(
        model,
        tr,
        va,
        epochs=2,
        objective=objective,
        optim=Optim(schedule="constant"),
        inputs=Inputs(standardize=False, augment=Augment(rotate=10, seed=0)),
        progress=False,
    )
    assert [h["kl_weight"] for h in result.history] == [0.5, 1.0]
    assert all(math.isfinite(h["loss"]) for h in result.history)
    assert model.standardize_mean_ is None


@pytest.mark.parametrize("augment", ["light", "none"])
def test_default_light_augmentation_rotates_and_zooms_pixels(small_digits, monkeypatch, augment):
    tr = small_digits[0]
    model = DeterministicCNN(1, 10, (8, 8), **TINY)
    seen = []
    objective = MAP()
    loss = objective.loss
    monkeypatch.setattr(
        objective, "loss", lambda m, x, *a, **k: seen.append(x) or loss(m, x, *a, **k)
    )
    inputs = Inputs() if augment == "light" else Inputs(augment=augment)
    train(model, tr, None, epochs=1, objective=objective, optim=Optim(batch_size=32), seed=3,
          inputs=inputs, progress=False)  # fmt: skip
    # The first batch of epoch 0, by hand: rotations of up to 5 degrees and zooms of 0.92-1.08
    # of the raw pixels (the epoch's own seed), standardized afterwards.
    order = torch.randperm(len(tr.images), generator=torch.Generator().manual_seed(3 * 100_003))
    raw = tr.images[order[:32]]
    if augment == "light":
        raw = Augment(rotate=5.0, scale=(0.92, 1.08), seed=3 * 7919)(raw)
    torch.testing.assert_close(seen[0], model.prepare(raw))
    assert augment == "none" or not torch.allclose(seen[0], model.prepare(tr.images[order[:32]]))


def test_standardization_is_fitted_on_train_and_stored(small_digits):
    tr, va, _ = small_digits
    model = DeterministicCNN(1, 10, (8, 8), **TINY)
    train(model, tr, va, epochs=1, progress=False)
    torch.testing.assert_close(model.standardize_mean_, tr.images.mean(dim=(0, 2, 3)))


def test_bad_training_input(small_digits):
    tr, va, _ = small_digits
    model = BayesianCNN(1, 10, (8, 8), **TINY)
    with pytest.raises(DataError, match=r"\(N, 1, 8, 8\)"):
        train(model, (torch.rand(10, 3, 8, 8), torch.zeros(10, dtype=torch.long)), None)
    bad = tr.images[:10].clone()
    bad[3, 0, 2, 2] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        train(model, (bad, tr.labels[:10]), None)
    with pytest.raises(DataError, match=r"0\.\.9"):
        train(model, (tr.images[:10], torch.full((10,), 12)), None)
    with pytest.raises(ModelError, match="epochs"):
        train(model, tr, va, epochs=0)
    with pytest.raises(ModelError, match="checkpoint_dir"):
        train(model, tr, va, resume=True)
    with pytest.raises(ModelError, match="ema_decay"):
        Optim(ema_decay=1.0)
    with pytest.raises(ModelError, match="batch_size"):
        Optim(batch_size=0)
    with pytest.raises(ModelError, match="'light', 'none'"):
        Inputs(augment="heavy")
    with pytest.raises(ModelError, match="function"):
        Inputs(augment=lambda x: x)
    with pytest.raises(ModelError, match="MAP"):
        train(model, tr, va, objective=MAP())
    with pytest.raises(ModelError, match="ELBO"):
        train(DeterministicCNN(1, 10, (8, 8), **TINY), tr, va, objective=ELBO())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where CUDA is absent")
def test_cuda_asked_for_where_none_exists_names_the_devices(small_digits):
    tr, va, _ = small_digits
    with pytest.raises(ModelError, match="available devices: cpu"):
        train(BayesianCNN(1, 10, (8, 8), **TINY), tr, va, device="cuda")
