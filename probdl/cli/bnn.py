"""`probdl train | evaluate | predict`: called by :mod:`probdl.cli.main` with parsed arguments."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from probdl import metrics
from probdl.cli.output import emit_json
from probdl.data import (
    ImageDataset,
    load_cifar,
    load_digits,
    load_idx,
    load_image_folder,
    load_images,
    make_shapes,
    split,
)
from probdl.distributed import is_writer
from probdl.errors import DataError
from probdl.files import atomic_write, check_writable

DRIFT_SUFFIX = ".reference.json"
DRIFT_ALPHA = 0.01


def load_data(spec: str) -> ImageDataset:
    """``digits``, ``shapes``, ``idx:IMAGES,LABELS``, ``cifar:DIR`` or ``folder:DIR``."""
    kind, _, where = spec.partition(":")
    if kind == "digits" and not where:
        return load_digits()
    if kind == "shapes" and not where:
        return make_shapes(1500, size=32, channels=3, seed=0)
    if kind == "idx" and "," in where:
        images, labels = where.split(",", 1)
        return load_idx(images, labels)
    if kind == "cifar" and where:
        return load_cifar(where)
    if kind == "folder" and where:
        return load_image_folder(where)
    raise DataError(f"--data {spec!r} is not one of: digits, shapes, idx:IMAGES,LABELS, "
                    "cifar:DIR, folder:DIR")


def _print_table(title: str, scores: dict[str, Any], as_json: bool) -> None:
    flat = {k: v for k, v in scores.items() if isinstance(v, int | float)}
    if as_json:
        emit_json(flat)
        return
    print(title)
    for key, value in flat.items():
        print(f"  {key:>14}  {value:.4f}" if isinstance(value, float) else f"  {key:>14}  {value}")


def _reference_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + DRIFT_SUFFIX)


def train(args: argparse.Namespace) -> int:
    if args.nproc > 1:
        from probdl.cli.launch import relaunch_under_torchrun

        return relaunch_under_torchrun(args.nproc, args.argv)
    from probdl import bnn, plots

    out = check_writable(args.out, what="run folder")
    data = load_data(args.data)
    train_set, val_set, test_set = split(data, val=0.15, test=0.2, seed=args.seed)
    kinds = {"bayesian": bnn.BayesianCNN, "deterministic": bnn.DeterministicCNN,
             "mc-dropout": bnn.MCDropoutCNN}
    model = kinds[args.model](in_channels=data.shape[0], num_classes=len(data.classes),
                              image_size=data.shape[1:])
    result = bnn.train(model, train_set, val_set, epochs=args.epochs, device=args.device,
                       checkpoint_dir=out / "checkpoints", seed=args.seed, resume=args.resume,
                       optim=bnn.Optim(lr=args.lr, batch_size=args.batch_size),
                       inputs=bnn.Inputs(augment=args.augment))
    if not is_writer():
        return 0
    model_path = model.save(out / "model.pt")
    val_pred = bnn.predict(model, val_set.images)
    with atomic_write(_reference_path(model_path), "w") as fh:
        json.dump({"val_entropy": val_pred.entropy.tolist()}, fh)
    torch.manual_seed(args.seed)  # the same draws again below: the plot shows the printed ECE
    scores = bnn.evaluate(model, test_set)
    written = [plots.training_curves(result.history, out / "training_curves.png")]
    torch.manual_seed(args.seed)
    test_pred = bnn.predict(model, test_set.images)
    written.append(plots.reliability_diagram(test_pred.probs, test_set.labels,
                                             out / "reliability.png"))
    scores.update(best_epoch=result.best_epoch, seconds=round(result.seconds, 1))
    _print_table(f"test split ({len(test_set)} images), model -> {model_path}", scores, args.json)
    if not args.json:
        print("plots: " + ", ".join(str(p) for p in written))
    return 0


def _load_model(path: str):
    from probdl.bnn import load_model

    return load_model(path)


def _ood_images(kind: str, test: ImageDataset, seed: int = 0) -> torch.Tensor:
    if kind == "noise":
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(test.images.shape, generator=generator)
    from probdl.data import Augment

    return Augment(rotate=45, seed=seed)(test.images)


def _test_split(model: Any, data: ImageDataset, args: argparse.Namespace) -> ImageDataset:
    """The test part of the split the model was trained on (``--seed`` overrides its seed)."""
    from probdl.data import fingerprint

    trained = model.split_ or {}
    if trained and trained.get("fingerprint") != fingerprint(data) and not args.other_data:
        raise DataError(
            f"--data {args.data} is not the data the model was trained on (another fingerprint);"
            " pass --other-data to score the test split of this data anyway."
        )
    seed = args.seed if args.seed is not None else trained.get("seed", 0)
    _, _, test = split(data, val=trained.get("val", 0.15), test=trained.get("test", 0.2),
                       seed=seed)  # fmt: skip
    return test


def evaluate(args: argparse.Namespace) -> int:
    from probdl import bnn, plots

    model = _load_model(args.model)
    test_set = _test_split(model, load_data(args.data), args)
    out = Path(args.out) if args.out else Path(args.model).parent
    ood = _ood_images(args.ood, test_set) if args.ood else None
    # one seed for both passes: the plots draw the predictions the printed scores come from,
    # and every number in a plot's title is printed too; names of its own (evaluate_*.png)
    # leave train's reliability.png alone
    torch.manual_seed(0)
    scores = bnn.evaluate(model, test_set, num_samples=args.num_samples,
                          ood=ood if args.ood == "noise" else None,
                          check_split=args.seed is None)  # fmt: skip
    torch.manual_seed(0)
    pred = bnn.predict(model, test_set.images, num_samples=args.num_samples)
    correct = pred.labels == test_set.labels
    scores["aurc"] = metrics.risk_coverage(pred.confidence, correct)["aurc"]
    written = [
        plots.reliability_diagram(pred.probs, test_set.labels, out / "evaluate_reliability.png"),
        plots.risk_coverage_curve(pred.confidence, correct, out / "evaluate_risk_coverage.png"),
    ]
    if ood is not None:
        shifted = bnn.predict(model, ood, num_samples=args.num_samples)
        if args.ood == "rotate":
            # rotation is dataset shift, not OOD: the labels still hold, so it is scored by
            # accuracy and NLL (on 8x8 digits its entropy AUROC swings with the seed)
            probs = shifted.probs.clamp_min(1e-12)
            scores["shift_accuracy"] = float((shifted.labels == test_set.labels).float().mean())
            scores["shift_nll"] = float(-probs.gather(1, test_set.labels[:, None]).log().mean())
            scores["shift_auroc"] = metrics.auroc(shifted.entropy, pred.entropy)
        written.append(plots.uncertainty_histograms(
            pred.entropy, shifted.entropy, out / f"evaluate_uncertainty_{args.ood}.png"))
    _print_table(f"{args.data} test split ({len(test_set)} images)", scores, args.json)
    if not args.json:
        print("plots: " + ", ".join(str(p) for p in written))
    return 0


def drift_test(reference: np.ndarray, batch: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test of predictive entropies: (statistic, p-value)."""
    from scipy.stats import ks_2samp

    result = ks_2samp(reference, batch)
    return float(result.statistic), float(result.pvalue)


def predict(args: argparse.Namespace) -> int:
    from probdl import bnn

    model_path = Path(args.model)
    model = _load_model(args.model)
    arch = model.architecture
    size, channels = (tuple(arch.image_size), arch.in_channels) if args.resize else (None, None)
    images, names = load_images(args.images, size=size, channels=channels)
    expected = (arch.in_channels, *arch.image_size)
    if tuple(images.shape[1:]) != expected:
        c, h, w = images.shape[1:]
        raise DataError(
            f"{args.images}: images of {c} channel(s), {h}x{w} pixels, but the model takes "
            f"{expected[0]} channel(s), {expected[1]}x{expected[2]}; pass --resize to convert "
            "them (bilinear resize, colour to grey or grey to colour)."
        )
    pred = bnn.predict(model, torch.from_numpy(images), num_samples=args.num_samples)
    abstain = pred.abstain(args.abstain)
    frame = pd.DataFrame({"image": names, "label": pred.class_names})
    for k, name in enumerate(pred.classes):
        frame[f"p_{name}"] = pred.probs[:, k].numpy()
    frame["entropy"] = pred.entropy.numpy()
    frame["epistemic"] = pred.epistemic.numpy()
    frame["aleatoric"] = pred.aleatoric.numpy()
    frame["confidence"] = pred.confidence.numpy()
    frame["abstain"] = abstain.numpy()
    with atomic_write(args.out, "w") as fh:
        frame.to_csv(fh, index=False)
    report: dict[str, Any] = {
        "images": len(frame),
        "abstained": int(abstain.sum()),
        "mean_entropy": float(pred.entropy.mean()),
        "out": str(args.out),
    }
    reference_path = _reference_path(model_path)
    if reference_path.is_file():
        reference = np.asarray(json.loads(reference_path.read_text())["val_entropy"])
        statistic, p_value = drift_test(reference, pred.entropy.numpy())
        report.update(drift_statistic=statistic, drift_p_value=p_value,
                      drifted=bool(p_value < DRIFT_ALPHA))
    if args.json:
        emit_json(report)
        return 0
    print(f"{report['images']} images -> {args.out}; abstained on {report['abstained']} "
          f"(confidence < {args.abstain})")
    if "drifted" in report:
        verdict = "DRIFTED from" if report["drifted"] else "consistent with"
        print(f"drift: predictive entropy is {verdict} the validation data "
              f"(KS statistic {report['drift_statistic']:.3f}, p = {report['drift_p_value']:.2g})")
    else:
        print(f"drift: no reference entropies beside the model ({reference_path.name}); "
              "models saved by `probdl train` carry them")
    if math.isnan(report["mean_entropy"]):
        raise DataError("prediction produced NaN entropies; check the input images")
    return 0
