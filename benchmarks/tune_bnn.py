"""The Bayesian CNN of ``bench_bnn`` with other constructor arguments or ELBO weight (tuning runs).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m benchmarks.tune_bnn --model init_scale=0.01 \
        --runs digits:0-4 mnist:0 mnist:1 --out runs.jsonl
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m benchmarks.tune_bnn --noise-prior 0 \
        --runs shapes:0-4 --out runs.jsonl

Each run trains ``BayesianCNN`` exactly as ``benchmarks/bench_bnn.py`` does (its ``run_one``:
the seed's own split, epochs, ``train`` defaults, scores with and without the fitted
temperature) except the constructor arguments given by ``--model KEY=VALUE ...`` (values read
as Python literals) and, with ``--noise-prior``, ``objective=ELBO(noise_prior=...)``. Each run
appends one JSON line to ``--out`` as soon as it is done, with the fields of the benchmark's rows;
compare with the saved ``BayesianCNN`` / ``DeterministicCNN`` rows of the same seeds in
``benchmarks/results/bnn-runs/``. Without ``--model`` and ``--noise-prior`` a run reproduces
the saved benchmark run of its seed.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

from benchmarks.bench_bnn import DATASETS, load, run_one
from probdl.bnn.objectives import ELBO


def _runs(specs: list[str]) -> list[tuple[str, int]]:
    out = []
    for spec in specs:
        name, seeds = spec.split(":")
        if name not in DATASETS:
            raise SystemExit(f"unknown dataset {name!r}; one of {', '.join(DATASETS)}")
        lo, _, hi = seeds.partition("-")
        out += [(name, s) for s in range(int(lo), int(hi or lo) + 1)]
    return out


def _kwargs(pairs: list[str]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--model wants KEY=VALUE, got {pair!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise SystemExit(f"--model {key}: {value!r} is not a Python literal") from None
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="*", default=[], metavar="KEY=VALUE",
                        help="BayesianCNN constructor arguments (Python literals)")  # fmt: skip
    parser.add_argument("--noise-prior", type=float, default=None,
                        help="ELBO(noise_prior=...); default: the ELBO default")  # fmt: skip
    parser.add_argument("--runs", nargs="+", required=True, help="dataset:seed or dataset:a-b")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    np.seterr(all="ignore")
    kwargs = _kwargs(args.model)
    objective = None if args.noise_prior is None else ELBO(noise_prior=args.noise_prior)
    variant = "BayesianCNN" + (f"({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
                               if kwargs else "")  # fmt: skip
    if objective is not None:
        variant += f", ELBO(noise_prior={args.noise_prior})"
    for name, seed in _runs(args.runs):
        data = load(name, split_seed=seed)  # as the benchmark: split seed = model seed
        row = run_one(data, "BayesianCNN", seed, kwargs, objective, variant)
        row["split_seed"] = seed
        line = json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()})
        print(line, flush=True)
        with args.out.open("a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
