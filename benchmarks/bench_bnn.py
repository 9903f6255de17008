"""Bayesian CNN benchmark: three datasets side by side, 5 seeds, the three models and the peers.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m benchmarks.bench_bnn [--quick]
    .venv/bin/python -m benchmarks.bench_bnn --datasets mnist --runs-only   # one dataset
    .venv/bin/python -m benchmarks.bench_bnn --report-only                  # table from runs

Datasets: scikit-learn's 8x8 digits (1,797 images, 30 epochs), procedural 32x32 colour shapes
(``make_shapes(1500, 32, 3)``, 3 classes, 20 epochs) and 5,000 real 28x28 MNIST digits
(``load_mnist_sample``, 20 epochs); digits and shapes split 65/15/20, MNIST 70/10/20, each seed
on its own split (``split(seed=seed)``: a user's split is never the one the defaults were tuned
on, and one shared split let its easy validation images flatter every seed). Models:
``BayesianCNN``, ``DeterministicCNN`` and ``MCDropoutCNN`` with ``train``'s defaults (the
temperature fitted on the validation split included), model seed = ``train`` seed = split seed
= 0..N-1; the deterministic and Bayesian runs of one seed go back to back, so
the time ratio of each pair (a whole ``train`` call, validation and calibration included) sees
the same load. Scores on the test split with 32 posterior samples: accuracy, NLL, ECE (15
bins), AURC, NLL under a 30-degree rotation, and predictive-entropy AUROC / AUPR / FPR at 95%
TPR of natural-image patches (crops of scikit-learn's two sample photos, resized to the
dataset's size, grey for grey datasets; as many as the test split) against the test images.
Peers (digits, seed 0): a plain-torch loop, naive Pyro, bayesian-torch. Each run is written to
``benchmarks/results/bnn-runs/<dataset>.json``; the report ``benchmarks/results/bnn.md`` is
built from whatever runs are there, so datasets can run in separate processes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pyro
import torch
import torch.nn.functional as F

from benchmarks.peers_bnn import Standardized, bayesian_torch, naive_pyro, plain_torch, rotate
from probdl import metrics
from probdl.bnn import BayesianCNN, DeterministicCNN, MCDropoutCNN, predict, train
from probdl.data import load_digits, load_mnist_sample, make_shapes, split

RESULTS = Path(__file__).parent / "results"
RUNS = RESULTS / "bnn-runs"
KINDS = {"BayesianCNN": BayesianCNN, "DeterministicCNN": DeterministicCNN,
         "MCDropoutCNN": MCDropoutCNN}  # fmt: skip
DATASETS = {  # name: (loader, val, test, epochs)
    "digits": (load_digits, 0.15, 0.2, 30),
    "shapes": (lambda: make_shapes(1500, size=32, channels=3, seed=0), 0.15, 0.2, 20),
    "mnist": (load_mnist_sample, 0.1, 0.2, 20),
}
SAMPLES = 32
KEYS = ("accuracy", "nll", "ece", "auroc", "aupr", "fpr95", "aurc", "rot30_nll", "seconds")
RAW = ("nll_t1", "rot30_nll_t1")


def photo_patches(n: int, shape: tuple[int, int, int], seed: int = 0) -> torch.Tensor:
    """n crops of scikit-learn's sample photos (sides 1-4x the image size), resized to shape."""
    from sklearn.datasets import load_sample_images

    photos = [torch.tensor(p).permute(2, 0, 1) / 255.0 for p in load_sample_images().images]
    c, h, w = shape
    gen = torch.Generator().manual_seed(seed)
    out = []
    for k in range(n):
        photo = photos[k % len(photos)]
        side = int(torch.randint(max(h, w), 4 * max(h, w) + 1, (1,), generator=gen))
        y0 = int(torch.randint(0, photo.shape[1] - side, (1,), generator=gen))
        x0 = int(torch.randint(0, photo.shape[2] - side, (1,), generator=gen))
        crop = photo[None, :, y0 : y0 + side, x0 : x0 + side]
        patch = F.interpolate(crop, size=(h, w), mode="bilinear", antialias=True)[0]
        out.append(patch.mean(0, keepdim=True) if c == 1 else patch)
    return torch.stack(out).clamp(0, 1)


def score(sample_probs, labels, ood_probs, rot_probs, seconds) -> dict[str, float]:
    probs = sample_probs.mean(0)
    ent_in, ent_out = metrics.entropy(probs), metrics.entropy(ood_probs.mean(0))
    correct = probs.argmax(1) == torch.as_tensor(labels)
    return {
        "accuracy": metrics.accuracy(probs, labels),
        "nll": metrics.nll(probs, labels),
        "ece": metrics.ece(probs, labels),
        "auroc": metrics.auroc(ent_out, ent_in),
        "aupr": metrics.aupr(ent_out, ent_in),
        "fpr95": metrics.fpr_at_tpr(ent_out, ent_in, 0.95),
        "aurc": metrics.risk_coverage(probs.max(1).values, correct)["aurc"],
        "rot30_nll": metrics.nll(rot_probs.mean(0), labels),
        "seconds": seconds,
    }


class Data(NamedTuple):
    """One dataset as the benchmark uses it: the splits, the epochs, OOD and rotated images."""

    name: str
    train: Any
    val: Any
    test: Any
    epochs: int
    ood: torch.Tensor
    rotated: torch.Tensor


def load(name: str, quick: bool = False, split_seed: int = 0) -> Data:
    """The benchmark's split, epochs, OOD patches and 30-degree rotated test images of name."""
    loader, val, test, epochs = DATASETS[name]
    tr, va, te = split(loader(), val=val, test=test, seed=split_seed)
    return Data(name, tr, va, te, 2 if quick else epochs, photo_patches(len(te), tr.shape),
                rotate(te.images, 30))  # fmt: skip


def run_one(data: Data, kind: str, seed: int, model_kwargs: dict[str, Any] | None = None,
            objective: Any = None, variant: str | None = None) -> dict:  # fmt: skip
    """Train one model of kind (constructor kwargs on top of the defaults) and score it.

    Model seed = ``train`` seed = seed, ``train``'s defaults but for ``objective`` (None: its
    default); the scores with the fitted temperature and, as ``*_t1``, at T = 1.
    """
    tr, va, te = data.train, data.val, data.test
    c, h, w = tr.shape
    model = KINDS[kind](c, len(tr.classes), (h, w), seed=seed, **(model_kwargs or {}))
    start = time.perf_counter()
    result = train(model, tr, va, epochs=data.epochs, objective=objective, seed=seed,
                   progress=False)  # fmt: skip
    seconds = time.perf_counter() - start
    torch.manual_seed(seed)
    test_p, ood_p, rot_p = (predict(model, x, SAMPLES).sample_probs
                            for x in (te.images, data.ood, data.rotated))  # fmt: skip
    row = score(test_p, te.labels, ood_p, rot_p, seconds)
    model.temperature_ = 1.0  # the same model without its fitted temperature
    torch.manual_seed(seed)
    test_p, rot_p = (predict(model, x, SAMPLES).sample_probs for x in (te.images, data.rotated))
    raw = score(test_p, te.labels, ood_p, rot_p, seconds)
    row.update({f"{k}_t1": raw[k] for k in ("nll", "ece", "rot30_nll")})
    row.update(dataset=data.name, variant=variant or kind, seed=seed, epochs=data.epochs,
               temperature=result.temperature, best_epoch=result.best_epoch)  # fmt: skip
    return row


def run_dataset(name: str, seeds: range, quick: bool, peers: bool) -> list[dict]:
    data = load(name, quick)
    tr, va, te, ood, rotated = data.train, data.val, data.test, data.ood, data.rotated
    c, h, w = tr.shape
    rows = []
    for kind in KINDS:  # warm-up: the first call in a process pays one-time costs
        train(KINDS[kind](c, len(tr.classes), (h, w)), tr, va, epochs=1, progress=False)
    for seed in seeds:
        data = load(name, quick, split_seed=seed)  # split seed = model seed
        for kind in ("DeterministicCNN", "BayesianCNN", "MCDropoutCNN"):
            row = run_one(data, kind, seed)
            row["split_seed"] = seed
            rows.append(row)
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                              for k, v in row.items()}), flush=True)  # fmt: skip
    if peers and name == "digits" and 0 in seeds:
        standardized = Standardized(tr, va, te)
        for label, fn in (("plain torch, Adam 1e-3", plain_torch),
                          ("naive Pyro, PyroSample + AutoNormal", naive_pyro),
                          ("bayesian-torch, KL as shipped", lambda *a: bayesian_torch(*a, False)),
                          ("bayesian-torch, KL corrected", lambda *a: bayesian_torch(*a, True))):
            times, sample = fn(standardized, data.epochs, 64, 0)
            torch.manual_seed(0)
            row = score(sample(te.images, SAMPLES), te.labels, sample(ood, SAMPLES),
                        sample(rotated, SAMPLES), sum(times))  # fmt: skip
            row.update(dataset=name, variant=f"peer: {label}", seed=0, epochs=data.epochs)
            rows.append(row)
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                              for k, v in row.items()}), flush=True)  # fmt: skip
    return rows


def _mean_range(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ({min(values):.4f}-{max(values):.4f})"


def report(out: Path, command: str) -> str:
    lines = [
        "# Bayesian CNN benchmark (digits, shapes, MNIST sample)",
        "",
        f"Command: `{command}`  ",
        f"Machine: 2-core CPU ({platform.processor() or platform.machine()}), shared with other "
        f"work; torch {torch.__version__} ({torch.get_num_threads()} thread), pyro "
        f"{pyro.__version__}, Python {sys.version.split()[0]}  ",
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC  ",
        "Mean over seeds (range), each seed on its own split. NLL, ECE, AURC and FPR95: lower "
        "is better. OOD: natural-image patches against the test split, predictive entropy as "
        "the score. Train s: a whole `train` call. \"T = 1\": the same models without the "
        "temperature `train` fitted (T: per seed). See the module docstring of "
        "`benchmarks/bench_bnn.py` for the settings.",
    ]
    for name in DATASETS:
        rows = sorted((r for path in RUNS.glob(f"{name}*.json")
                       for r in json.loads(path.read_text())),
                      key=lambda r: r["seed"])  # seed order: the T column lists them so
        if not rows:
            continue
        variants = list(dict.fromkeys(r["variant"] for r in rows))
        seeds = len({r["seed"] for r in rows})
        lines += ["", f"## {name} ({rows[0]['epochs']} epochs, {seeds} seeds)", "",
                  "| variant | accuracy | NLL | ECE | OOD AUROC | OOD AUPR | FPR95 | AURC | "
                  "rot 30 NLL | train s | NLL, T = 1 | rot 30 NLL, T = 1 | T |",
                  "|---|" + "---|" * 12]  # fmt: skip
        for v in variants:
            mine = [r for r in rows if r["variant"] == v]
            cells = [_mean_range([r[k] for r in mine]) for k in KEYS[:-1]]
            cells.append(f"{statistics.mean(r['seconds'] for r in mine):.1f}")
            cells += [_mean_range([r[k] for r in mine]) if k in mine[0] else "" for k in RAW]
            temps = [r["temperature"] for r in mine if r.get("temperature") is not None]
            cells.append(" ".join(f"{t:.2f}" for t in temps))
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
        by_seed = {(r["variant"], r["seed"]): r for r in rows}
        pairs = [(by_seed[("BayesianCNN", s)], by_seed[("DeterministicCNN", s)])
                 for s in sorted({r["seed"] for r in rows}) if ("BayesianCNN", s) in by_seed]
        if pairs:
            nll = statistics.mean(b["nll"] / d["nll"] for b, d in pairs)
            rot = statistics.mean(b["rot30_nll"] / d["rot30_nll"] for b, d in pairs)
            acc = statistics.mean(b["accuracy"] - d["accuracy"] for b, d in pairs)
            times = [b["seconds"] / d["seconds"] for b, d in pairs]
            raw = ""  # the same ratios without the fitted temperatures
            if all(k in r for b, d in pairs for r in (b, d) for k in RAW):
                nll1, rot1 = (statistics.mean(b[k] / d[k] for b, d in pairs) for k in RAW)
                raw = f" (at T = 1: NLL {nll1:.3f}x, rotated NLL {rot1:.3f}x)"
            lines += ["", f"BayesianCNN against DeterministicCNN, per seed then averaged: NLL "
                      f"{nll:.3f}x, rotated NLL {rot:.3f}x{raw}, accuracy {acc:+.4f}; `train` "
                      f"call time {statistics.median(times):.2f}x (median of the back-to-back "
                      f"pairs; range {min(times):.2f}-{max(times):.2f})."]  # fmt: skip
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs, 1 seed")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds first-seed .. seeds-1 (to split a dataset across processes)")
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--runs-only", action="store_true", help="write the runs, no report")
    parser.add_argument("--report-only", action="store_true", help="the report from saved runs")
    parser.add_argument("--out", type=Path, default=RESULTS / "bnn.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    np.seterr(all="ignore")
    if not args.report_only:
        RUNS.mkdir(parents=True, exist_ok=True)
        seeds = range(args.first_seed, 1 if args.quick else args.seeds)
        for name in args.datasets:
            rows = run_dataset(name, seeds, args.quick, not args.no_peers)
            suffix = "" if args.first_seed == 0 else f"-from-{args.first_seed}"
            (RUNS / f"{name}{suffix}.json").write_text(json.dumps(rows, indent=1))
    if not args.runs_only:
        command = "OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m benchmarks.bench_bnn" + (
            " --quick" if args.quick else "")
        print(report(args.out, command))


if __name__ == "__main__":
    main()
