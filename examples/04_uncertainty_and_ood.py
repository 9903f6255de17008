"""What the Bayesian CNN knows it does not know.

Trains a Bayesian CNN on the digits, then splits its predictive entropy into an aleatoric part
(expected entropy: noise in the data) and an epistemic part (mutual information: the model's
own doubt). Reports how well each score separates uniform-noise images (out of distribution)
from test digits (AUROC), accuracy and NLL under rotations of 15/30/45 degrees (dataset shift),
and the error rate when the model may abstain on its least confident answers.

Run: python examples/04_uncertainty_and_ood.py   (PROBDL_QUICK=1 for 2 epochs)
"""

import os

import torch

from probdl import Augment, BayesianCNN, evaluate, load_digits, predict, split, train

QUICK = os.environ.get("PROBDL_QUICK") == "1"
EPOCHS = 2 if QUICK else 30

train_set, val_set, test_set = split(load_digits(), val=0.15, test=0.2, seed=0)
model = BayesianCNN(in_channels=1, num_classes=10, image_size=(8, 8))
train(model, train_set, val_set, epochs=EPOCHS, seed=0, progress=False)

noise = torch.rand(len(test_set), 1, 8, 8, generator=torch.Generator().manual_seed(0))
scores = evaluate(model, test_set, num_samples=32, ood=noise)
print(f"test accuracy {scores['accuracy']:.3f}, NLL {scores['nll']:.3f}, ECE {scores['ece']:.3f}")
print(f"OOD (uniform noise) AUROC: entropy {scores['auroc_ood']:.3f}, "
      f"mutual information {scores['auroc_ood_mi']:.3f}")

pred = predict(model, test_set.images, num_samples=32)
noisy = predict(model, noise, num_samples=32)
print(f"mean epistemic part: test {pred.epistemic.mean():.3f}  noise {noisy.epistemic.mean():.3f}")
print(f"mean aleatoric part: test {pred.aleatoric.mean():.3f}  noise {noisy.aleatoric.mean():.3f}")

for degrees in (15, 30, 45):
    rotated = Augment(rotate=degrees, seed=0)(test_set.images)
    shifted = evaluate(model, (rotated, test_set.labels), num_samples=32)
    print(f"rotated up to {degrees:2d} degrees: accuracy {shifted['accuracy']:.3f}, "
          f"NLL {shifted['nll']:.3f}")

correct = pred.labels == test_set.labels
for threshold in (0.5, 0.8, 0.95):
    keep = ~pred.abstain(threshold)
    error = 1 - correct[keep].float().mean().item() if keep.any() else float("nan")
    print(f"abstain below confidence {threshold}: answers {keep.float().mean():.1%}, "
          f"error among answers {error:.3%}")
