"""`probdl train | evaluate | predict`: called by :mod:`probdl.cli.main` with parsed arguments."""

from __future__ import annotations

import argparse
import json
import sys
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
from probdl.data.files import SIZE_FIX
from probdl.distributed import is_writer, launched_by_torchrun
from probdl.errors import CheckpointError, DataError, ProbdlError, UsageError
from probdl.files import atomic_write

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
        try:
            data = load_image_folder(where)
        except DataError as err:  # the command line has no size option to point to
            raise _cli_fix(err, SIZE_FIX, "resize the images to one size first, or load them "
                           "in Python with load_image_folder(DIR, size=(H, W))") from None
        if len(data.classes) < 2:
            raise DataError(
                f"{where}: one class subfolder ({data.classes[0]}); a classifier needs at least "
                "two, one subfolder per class."
            )
        return data
    raise DataError(f"--data {spec!r} is not one of: digits, shapes, idx:IMAGES,LABELS, "
                    "cifar:DIR, folder:DIR")


def _print_table(title: str, scores: dict[str, Any], as_json: bool,
                 files: dict[str, Any]) -> None:
    """The scores as a table, or as JSON with the ``files`` written ({"plots": [...], ...});
    the "plots: ..." line goes to stdout, or with --json to stderr (json_mode)."""
    flat = {k: v for k, v in scores.items() if isinstance(v, int | float)}
    if as_json:
        emit_json({**flat, **{k: _as_text(v) for k, v in files.items()}})
    else:
        print(title)
        for key, value in flat.items():
            print(f"  {key:>14}  {value:.4f}" if isinstance(value, float)
                  else f"  {key:>14}  {value}")
    print("plots: " + ", ".join(str(p) for p in files["plots"]))


def _as_text(value: Any) -> Any:
    return [str(v) for v in value] if isinstance(value, list) else str(value)


def _reference_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + DRIFT_SUFFIX)


def read_reference(model_path: Path) -> np.ndarray | None:
    """The validation entropies `train` stored beside the model; None if there is no file.

    Read before any work: a damaged file stops the command before it writes anything.
    """
    path = _reference_path(model_path)
    if not path.is_file():
        return None
    fix = "delete it (predict then skips the drift test) or retrain with `probdl train`"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not readable JSON ({err}); {fix}.") from None
    values = document.get("val_entropy") if isinstance(document, dict) else None
    try:
        reference = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        reference = np.empty((0, 0))
    if reference.ndim != 1 or reference.size == 0 or not np.isfinite(reference).all():
        raise DataError(f"{path}: not the drift reference `probdl train` writes (a JSON object "
                        f'{{"val_entropy": [numbers, ...]}}); {fix}.')
    return reference


def _check_run_folder(args: argparse.Namespace) -> None:
    """--resume needs a run to continue; without it, a run's model is not overwritten; and a
    run that already has --epochs epochs says it has nothing to do. Checked before any work
    (by every process under --nproc: none writes before all have joined)."""
    from probdl.bnn.checkpoint import RESAVE_FIX, checkpoint_epoch

    out = Path(args.out)
    checkpoint = out / "checkpoints" / "checkpoint.pt"
    if args.resume:
        if not checkpoint.is_file():
            raise UsageError(f"--resume: {out} holds no run to continue (no {checkpoint}); "
                             "drop --resume to start a fresh run there.")
        try:
            done = checkpoint_epoch(checkpoint)
        except CheckpointError as err:
            raise _cli_fix(err, RESAVE_FIX, "it cannot be resumed: drop --resume and train "
                           "afresh into another --out") from None
        if done >= args.epochs and not launched_by_torchrun():  # --nproc: said once, here
            print(f"probdl: {out} already trained {done} epochs >= --epochs {args.epochs}; "
                  "nothing to do (pass a larger --epochs to train more); its results follow.",
                  file=sys.stderr)
        return
    held = [p for p in (out / "model.pt", checkpoint) if p.exists()]
    if held:
        raise UsageError(f"{out} already holds a run ({held[0]}); pass --resume to continue it, "
                         "or choose another --out.")


def train(args: argparse.Namespace) -> int:
    _check_run_folder(args)
    if args.nproc > 1:
        from probdl.cli.launch import relaunch_under_torchrun

        return relaunch_under_torchrun(args.nproc, args.argv)
    from probdl import bnn, plots

    out = Path(args.out)  # created and probed for writing by main's OutputPaths
    data = load_data(args.data)
    train_set, val_set, test_set = split(data, val=0.15, test=0.2, seed=args.seed)
    kinds = {"bayesian": bnn.BayesianCNN, "deterministic": bnn.DeterministicCNN,
             "mc-dropout": bnn.MCDropoutCNN}
    extra = {}
    for key in ("predict_dropout", "components"):  # the Bayesian CNN's own options
        if getattr(args, key) is not None:
            if args.model != "bayesian":
                flag = "--" + key.replace("_", "-")
                raise UsageError(f"{flag} is an option of --model bayesian only.")
            extra[key] = getattr(args, key)
    model = kinds[args.model](in_channels=data.shape[0], num_classes=len(data.classes),
                              image_size=data.shape[1:], **extra)
    try:
        result = bnn.train(model, train_set, val_set, epochs=args.epochs, device=args.device,
                           checkpoint_dir=out / "checkpoints", seed=args.seed,
                           resume=args.resume,
                           optim=bnn.Optim(lr=args.lr, batch_size=args.batch_size),
                           inputs=bnn.Inputs(augment=args.augment))
    except CheckpointError as err:
        from probdl.bnn.checkpoint import OTHER_RUN_FIX

        raise _cli_fix(err, OTHER_RUN_FIX, "resume with the run's own --model, --data, "
                       "--predict-dropout and --components, or train into another --out") from None
    if not is_writer():
        return 0
    model_path = model.save(out / "model.pt")
    val_pred = bnn.predict(model, val_set.images)
    with atomic_write(_reference_path(model_path), "w") as fh:
        json.dump({"val_entropy": val_pred.entropy.tolist()}, fh)
    torch.manual_seed(args.seed)
    test_pred = bnn.predict(model, test_set.images)  # scored and plotted: the plot's ECE is printed
    scores = bnn.score(model, test_pred, test_set.labels)
    written = [plots.training_curves(result.history, out / "training_curves.png")]
    written.append(plots.reliability_diagram(test_pred.probs, test_set.labels,
                                             out / "reliability.png"))
    scores.update(best_epoch=result.best_epoch, seconds=round(result.seconds, 1))
    _print_table(f"test split ({len(test_set)} images), model -> {model_path}", scores,
                 args.json, {"model": model_path, "plots": written})
    return 0


# the library's fixes speak Python (model.save(path), size=(H, W), checkpoint_dir); the
# command line replaces them with its own options
def _cli_fix(err: ProbdlError, python_fix: str, cli_fix: str) -> ProbdlError:
    """``err`` again, its fix ``python_fix`` said as ``cli_fix`` (the same error if its fix is
    another or none)."""
    if err.fix != python_fix:
        return err
    return type(err)(err.problem, fix=cli_fix)


def _load_model(path: str):
    from probdl.bnn import load_model
    from probdl.bnn.checkpoint import RESAVE_FIX

    try:
        return load_model(path)
    except CheckpointError as err:
        raise _cli_fix(err, RESAVE_FIX, "train it again with `probdl train`") from None


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
    # one prediction pass: the plots draw the predictions the printed scores come from, and
    # every number in a plot's title is printed too; names of its own (evaluate_*.png) leave
    # train's reliability.png alone. (No check_same_split: _test_split made the split from
    # the model's own seed and fractions, or --seed asked for another on purpose.)
    torch.manual_seed(0)
    pred = bnn.predict(model, test_set.images, num_samples=args.num_samples)
    shifted = bnn.predict(model, ood, num_samples=args.num_samples) if ood is not None else None
    scores = bnn.score(model, pred, test_set.labels, shifted if args.ood == "noise" else None)
    correct = pred.labels == test_set.labels
    written = [
        plots.reliability_diagram(pred.probs, test_set.labels, out / "evaluate_reliability.png"),
        plots.risk_coverage_curve(pred.confidence, correct, out / "evaluate_risk_coverage.png"),
    ]
    if shifted is not None:
        if args.ood == "rotate":
            # rotation is dataset shift, not OOD: the labels still hold, so it is scored by
            # accuracy and NLL (on 8x8 digits its entropy AUROC swings with the seed)
            probs = shifted.probs.clamp_min(1e-12)
            scores["shift_accuracy"] = float((shifted.labels == test_set.labels).float().mean())
            scores["shift_nll"] = float(-probs.gather(1, test_set.labels[:, None]).log().mean())
            scores["shift_auroc"] = metrics.auroc(shifted.entropy, pred.entropy)
        written.append(plots.uncertainty_histograms(
            pred.entropy, shifted.entropy, out / f"evaluate_uncertainty_{args.ood}.png"))
    _print_table(f"{args.data} test split ({len(test_set)} images)", scores, args.json,
                 {"plots": written})
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
    reference = read_reference(model_path)
    arch = model.architecture
    size, channels = (tuple(arch.image_size), arch.in_channels) if args.resize else (None, None)
    try:
        images, names = load_images(args.images, size=size, channels=channels)
    except DataError as err:
        raise _cli_fix(err, SIZE_FIX, "pass --resize to bring them to the model's size") from None
    expected = (arch.in_channels, *arch.image_size)
    if tuple(images.shape[1:]) != expected:
        c, h, w = images.shape[1:]
        raise DataError(
            f"{args.images}: images of {c} channel(s), {h}x{w} pixels, but the model takes "
            f"{expected[0]} channel(s), {expected[1]}x{expected[2]}; pass --resize to convert "
            "them (bilinear resize, colour to grey or grey to colour)."
        )
    pred = bnn.predict(model, torch.from_numpy(images), num_samples=args.num_samples)
    if torch.isnan(pred.entropy).any():  # before anything is written: no CSV of NaNs
        raise DataError(f"{args.images}: prediction produced NaN entropies; check the input "
                        "images (NaN or infinite pixels?)")
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
    report["drift_reference"] = str(reference_path) if reference is not None else None
    if reference is not None:
        statistic, p_value = drift_test(reference, pred.entropy.numpy())
        report.update(drift_statistic=statistic, drift_p_value=p_value,
                      drifted=bool(p_value < DRIFT_ALPHA))
    if args.json:  # the document first; the lines below then go to stderr (json_mode)
        emit_json(report)
    print(f"{report['images']} images -> {args.out}; abstained on {report['abstained']} "
          f"(confidence < {args.abstain})")
    if "drifted" in report:
        verdict = "DRIFTED from" if report["drifted"] else "consistent with"
        print(f"drift: predictive entropy is {verdict} the validation data "
              f"(KS statistic {report['drift_statistic']:.3f}, p = {report['drift_p_value']:.2g})")
    else:
        print(f"drift: no reference entropies beside the model ({reference_path.name}); "
              "models saved by `probdl train` carry them")
    return 0
