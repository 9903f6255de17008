"""Every predict-time dropout rate of ``bench_bnn``'s Bayesian CNN from one training per seed.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m benchmarks.tune_predict_dropout \
        --runs digits:0-4 shapes:0-4 mnist:0-4 --out runs.jsonl

``train`` picks its best epoch without ``predict_dropout``'s masks, so a model trained with the
default (0) has the weights of a model trained with any rate: each run trains once, exactly as
``bench_bnn.run_one`` does, then for every rate in ``RATES`` draws 32 weight sets shared by
all rates (``BayesianCNN.sample_logits_at_rates``), fits the temperature on the validation split
by ``fit_temperature``'s rule and scores the test, rotated and OOD images as the benchmark
does, with that temperature and at T = 1. It also writes the validation NLL of the predictive
mixture at each rate (``val_nll``, 32 draws, fitted temperature): the number a rule that picks
the rate on the validation split would minimize. One JSON line per (run, rate).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

from benchmarks.bench_bnn import KINDS, SAMPLES, load, score
from benchmarks.tune_bnn import _runs
from probdl.bnn import train
from probdl.bnn.calibration import fitted_temperature

RATES = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)


def _logits(model, images, seed: int) -> torch.Tensor:
    """(R, S, N, C) at every rate, one seeded set of weight draws for all rates (in one call:
    at most 1,000 images here, so no chunks whose draws would differ)."""
    torch.manual_seed(seed)
    return model.sample_logits_at_rates(model.prepare(torch.as_tensor(images), "images"),
                                        SAMPLES, RATES)  # fmt: skip


def _mixture_nll(logits: torch.Tensor, y: torch.Tensor, t: float) -> float:
    log_p = torch.logsumexp(torch.log_softmax(logits.double() / t, -1), 0) - math.log(len(logits))
    return float(-log_p.gather(-1, y[:, None]).mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, help="dataset:seed or dataset:a-b")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    np.seterr(all="ignore")
    for name, seed in _runs(args.runs):
        d = load(name, split_seed=seed)  # as the benchmark: split seed = model seed
        c, h, w = d.train.shape
        model = KINDS["BayesianCNN"](c, len(d.train.classes), (h, w), seed=seed)
        start = time.perf_counter()
        train(model, d.train, d.val, epochs=d.epochs, seed=seed, progress=False)
        seconds = time.perf_counter() - start
        y_val = torch.as_tensor(np.asarray(d.val.labels))
        images = (d.val.images, d.test.images, d.ood, d.rotated)
        val, test, ood, rot = (_logits(model, x, seed) for x in images)
        for k, rate in enumerate(RATES):
            # fit_temperature's rule on its 8 draws, here the first 8 of the shared 32
            t = fitted_temperature(val[k, :8], y_val, seed)
            row = {"dataset": name, "seed": seed, "split_seed": seed, "predict_dropout": rate,
                   "temperature": t, "val_nll": _mixture_nll(val[k], y_val, t),
                   "seconds": seconds}  # fmt: skip
            for tag, temp in (("", t), ("_t1", 1.0)):
                probs = [torch.softmax(z[k] / temp, -1) for z in (test, ood, rot)]
                scores = score(probs[0], d.test.labels, probs[1], probs[2], seconds)
                row.update({f"{key}{tag}": scores[key]
                            for key in ("accuracy", "nll", "ece", "auroc", "rot30_nll")})
            line = json.dumps({k: round(v, 5) if isinstance(v, float) else v
                               for k, v in row.items()})  # fmt: skip
            print(line, flush=True)
            with args.out.open("a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
