"""Every image problem trains: binary and multi-class, grey and colour, square and not, all
three models; `evaluate`'s numbers checked against scikit-learn on the same predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as sk

from probdl.bnn import BayesianCNN, DeterministicCNN, MCDropoutCNN, Optim, evaluate, predict, train
from probdl.data import ImageDataset, make_shapes, split

KINDS = [BayesianCNN, DeterministicCNN, MCDropoutCNN]
SMALL = {"filters": (8, 16), "dense": (32,), "dropout": 0.2}


def _problem(classes: int, channels: int, size: tuple[int, int]) -> ImageDataset:
    """Generated shapes: squares against triangles (binary) or all three kinds of shape."""
    shapes = make_shapes(600, size=max(size), channels=channels, seed=0)
    images = shapes.images[:, :, : size[0], : size[1]]
    if classes == 3:
        return ImageDataset(images, shapes.labels, shapes.classes)
    keep = shapes.labels > 0
    return ImageDataset(images[keep], shapes.labels[keep] - 1, ["square", "triangle"])


@pytest.mark.parametrize("cls", KINDS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    "classes, channels, size",
    [(2, 3, (16, 16)), (2, 1, (12, 16)), (3, 1, (16, 16)), (3, 3, (16, 12))],
)
def test_every_problem_trains_and_evaluate_agrees_with_scikit_learn(cls, classes, channels, size):
    tr, va, te = split(_problem(classes, channels, size), val=0.15, test=0.25, seed=0)
    model = cls(channels, classes, size, **SMALL)
    assert model.architecture.num_outputs == (1 if classes == 2 else classes)
    result = train(model, tr, va, epochs=12, optim=Optim(lr=1e-2, batch_size=32), progress=False)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    torch.manual_seed(0)
    scores = evaluate(model, te, num_samples=8)
    assert scores["accuracy"] > (0.85 if classes == 2 else 0.7)  # chance: .5 and .33
    torch.manual_seed(0)
    probs = predict(model, te.images, num_samples=8).probs.double().numpy()
    probs /= probs.sum(1, keepdims=True)  # float32 rows sum to 1 within 1e-7; sklearn checks
    y = te.labels.numpy()
    assert scores["accuracy"] == pytest.approx(sk.accuracy_score(y, probs.argmax(1)))
    expected_nll = sk.log_loss(y, probs, labels=range(classes))
    assert scores["nll"] == pytest.approx(expected_nll, rel=1e-5, abs=1e-6)
    assert scores["f1"] == pytest.approx(sk.f1_score(y, probs.argmax(1), average="macro"))
    onehot = np.eye(classes)[y]
    assert scores["brier"] == pytest.approx(((probs - onehot) ** 2).sum(1).mean(), rel=1e-5)
