"""Demo part: a Bayesian CNN trained by Pyro SVI on the digits, with its uncertainty."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from probdl.bnn import BayesianCNN, predict, score, train
from probdl.data import load_digits, split

EPOCHS = 30


def run(out_dir: Path) -> list[tuple[str, str]]:
    from probdl.plots import reliability_diagram, uncertainty_histograms

    tr, va, te = split(load_digits(), val=0.15, test=0.2, seed=0)
    model = BayesianCNN(in_channels=1, num_classes=10, image_size=(8, 8))
    print(f"BayesianCNN: {model.posterior_loc().numel():,} weights, each a Normal posterior")
    t0 = time.perf_counter()
    result = train(model, tr, va, epochs=EPOCHS, seed=0, progress=False)
    seconds = time.perf_counter() - t0
    print(f"  SVI ({EPOCHS} epochs, batch 64): {seconds:.1f} s, best epoch {result.best_epoch}")
    noise = torch.rand(len(te), 1, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    pred = predict(model, te.images, 32)  # scored and plotted: the figures match the table
    ood_pred = predict(model, noise, 32)
    scores = score(model, pred, te.labels, ood_pred)
    print(f"  test split ({len(te)} images), 32 posterior samples:")
    for key in ("accuracy", "precision", "recall", "f1", "nll", "ece", "brier", "auroc_ood",
                "auroc_ood_mi"):  # fmt: skip
        print(f"    {key:13s} {scores[key]:.4f}")
    keep = ~pred.abstain(0.9)
    answered = float((pred.labels[keep] == te.labels[keep]).float().mean())
    print(f"  abstaining below confidence 0.9: answers {int(keep.sum())}/{len(te)}, "
          f"accuracy on those {answered:.4f}")  # fmt: skip
    figures = [
        reliability_diagram(pred.probs, te.labels, out_dir / "bnn_reliability.png"),
        uncertainty_histograms(
            pred.entropy, ood_pred.entropy, out_dir / "bnn_uncertainty.png",
            labels=("digits (test)", "uniform noise"),
        ),
    ]  # fmt: skip
    print("  figures: " + ", ".join(str(f) for f in figures))
    return [
        ("bnn: test accuracy", f"{scores['accuracy']:.4f}"),
        ("bnn: test NLL / ECE", f"{scores['nll']:.4f} / {scores['ece']:.4f}"),
        ("bnn: noise AUROC (entropy)", f"{scores['auroc_ood']:.4f}"),
        ("bnn: training time", f"{seconds:.1f} s"),
    ]
