"""The Bayesian CNN of ``bench_bnn`` with another noise-contrastive weight (a tuning run).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m benchmarks.tune_bnn_noise \
        --noise-prior 0.01 --runs digits:0-4 mnist:0 mnist:1 --out runs.jsonl

Each run trains ``BayesianCNN`` exactly as ``benchmarks/bench_bnn.py`` does (same split, epochs,
seeds, ``train`` defaults) except ``objective=ELBO(noise_prior=...)``, scores it with the
benchmark's ``score`` and appends one JSON line to ``--out`` as soon as it is done; compare
with the saved ``BayesianCNN`` / ``DeterministicCNN`` rows of the same seeds in
``benchmarks/results/bnn-runs/``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

from benchmarks.bench_bnn import DATASETS, SAMPLES, photo_patches, score
from benchmarks.peers_bnn import rotate
from probdl.bnn import BayesianCNN, predict, train
from probdl.bnn.objectives import ELBO
from probdl.data import split


def _runs(specs: list[str]) -> list[tuple[str, int]]:
    out = []
    for spec in specs:
        name, seeds = spec.split(":")
        lo, _, hi = seeds.partition("-")
        out += [(name, s) for s in range(int(lo), int(hi or lo) + 1)]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise-prior", type=float, required=True)
    parser.add_argument("--runs", nargs="+", required=True, help="dataset:seed or dataset:a-b")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    np.seterr(all="ignore")
    cache = {}
    for name, seed in _runs(args.runs):
        if name not in cache:
            loader, val, test, epochs = DATASETS[name]
            tr, va, te = split(loader(), val=val, test=test, seed=0)
            cache[name] = (tr, va, te, epochs, photo_patches(len(te), tr.shape),
                           rotate(te.images, 30))  # fmt: skip
        tr, va, te, epochs, ood, rotated = cache[name]
        c, h, w = tr.shape
        model = BayesianCNN(c, len(tr.classes), (h, w), seed=seed)
        start = time.perf_counter()
        result = train(model, tr, va, epochs=epochs, seed=seed, progress=False,
                       objective=ELBO(noise_prior=args.noise_prior))  # fmt: skip
        seconds = time.perf_counter() - start
        torch.manual_seed(seed)
        test_p, ood_p, rot_p = (predict(model, x, SAMPLES).sample_probs
                                for x in (te.images, ood, rotated))  # fmt: skip
        row = score(test_p, te.labels, ood_p, rot_p, seconds)
        row.update(dataset=name, variant=f"BayesianCNN, ELBO(noise_prior={args.noise_prior})",
                   seed=seed, epochs=epochs, temperature=result.temperature,
                   best_epoch=result.best_epoch)  # fmt: skip
        line = json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()})
        print(line, flush=True)
        with args.out.open("a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
