"""A Bayesian CNN on the digits: train by SVI, evaluate, save, reload, predict.

Trains probdl's default Bayesian CNN (conv 32 -> conv 64 -> max pool -> average pool -> dense
128 -> dropout -> 10 classes, every weight a Normal distribution) by stochastic variational
inference on scikit-learn's 8x8 digits, prints accuracy, F1, NLL, ECE and Brier on the test
split, then saves the model, loads it back and checks the predictions are identical.

Run: python examples/03_bayesian_cnn_digits.py   (PROBDL_QUICK=1 for 2 epochs)
"""

import os
import tempfile
from pathlib import Path

import torch

from probdl import BayesianCNN, evaluate, load_digits, predict, split, train

QUICK = os.environ.get("PROBDL_QUICK") == "1"
EPOCHS = 2 if QUICK else 30

train_set, val_set, test_set = split(load_digits(), val=0.15, test=0.2, seed=0)
print(f"train {len(train_set)}, val {len(val_set)}, test {len(test_set)} digits")

model = BayesianCNN(in_channels=1, num_classes=10, image_size=(8, 8))
result = train(model, train_set, val_set, epochs=EPOCHS, seed=0, progress=False)
print(f"trained {len(result.history)} epochs in {result.seconds:.1f} s, best {result.best_epoch}")

scores = evaluate(model, test_set, num_samples=32)
for key in ("accuracy", "precision", "recall", "f1", "nll", "ece", "brier"):
    print(f"  {key:>9}: {scores[key]:.4f}")

with tempfile.TemporaryDirectory() as tmp:
    path = model.save(Path(tmp) / "digits.pt")
    again = BayesianCNN.load(path)
    torch.manual_seed(0)
    first = predict(model, test_set.images[:20], num_samples=8).probs
    torch.manual_seed(0)
    second = predict(again, test_set.images[:20], num_samples=8).probs
    print(f"saved and reloaded: predictions identical = {torch.equal(first, second)}")
