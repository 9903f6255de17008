"""Scaling benchmark: one process against two (torchrun, gloo) on this machine, side by side.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m benchmarks.bench_scaling [--quick]

Four jobs, each run under ``python -m torch.distributed.run --standalone`` as (a) one process
with one thread, (b) one process with two threads (torch's own intra-op parallelism: the peer a
second process must beat) and (c) two processes with one thread each (probdl.distributed):
SVI training of the default BayesianCNN on digits (``train``; the global batch of 64 split
32 + 32, gradients all-reduced) and on 32x32 colour shapes, EM on alarm (rows with 20% of
cells missing, expected counts of the row shards all-reduced) and streaming marginals of an
alarm CSV (chunks dealt out to the ranks). Times are measured inside the job (rank 0, after
start-up and data loading), variants interleaved round by round so that load from other
processes hits all alike; the table reports the median and the speed-up against (a) and (b).
Writes benchmarks/results/scaling.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from probdl.files import atomic_write  # stdlib only: safe before torch reads the environment

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "scaling.md"
VARIANTS = (("1 process, 1 thread", 1, 1), ("1 process, 2 threads", 1, 2),
            ("2 processes, 1 thread each", 2, 1))


# ---- the jobs, run inside torchrun -----------------------------------------------------------
def job_train(size: dict) -> dict:
    import torch

    from probdl import distributed
    from probdl.bnn import BayesianCNN, evaluate, train
    from probdl.data import load_digits, split

    tr, va, te = split(load_digits(), val=0.15, test=0.2, seed=0)
    model = BayesianCNN(1, 10, (8, 8))
    distributed.barrier()
    start = time.perf_counter()
    result = train(model, tr, va, epochs=size["epochs"], seed=0, progress=False)
    seconds = time.perf_counter() - start
    torch.manual_seed(0)
    scores = evaluate(model, te, num_samples=16)
    return {"seconds": seconds, "accuracy": scores["accuracy"], "nll": scores["nll"],
            "epochs": len(result.history)}


def job_train_shapes(size: dict) -> dict:
    """The same, on 32x32 colour images: about 16 times the convolution work per image."""
    import torch

    from probdl import distributed
    from probdl.bnn import BayesianCNN, train
    from probdl.data import make_shapes, split

    tr, va, _ = split(make_shapes(size["shapes"], size=32, channels=3, seed=0), val=0.15,
                      test=0.15, seed=0)
    model = BayesianCNN(3, len(tr.classes), (32, 32))
    distributed.barrier()
    start = time.perf_counter()
    result = train(model, tr, va, epochs=1, seed=0, progress=False)
    seconds = time.perf_counter() - start
    torch.manual_seed(0)
    return {"seconds": seconds, "val_accuracy": result.history[-1]["val_accuracy"]}


def _alarm_rows(n: int):
    import numpy as np

    from probdl.graph import BayesNet

    bn = BayesNet.example("alarm")
    rows = bn.sample(n, seed=0)
    return bn, rows.mask(np.random.default_rng(0).random(rows.shape) < 0.2)


def job_em(size: dict) -> dict:
    from probdl import distributed

    bn, rows = _alarm_rows(size["em_rows"])
    distributed.barrier()
    start = time.perf_counter()
    fitted = bn.fit(rows, max_iter=size["em_iter"], tol=0.0)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "iterations": int(fitted.n_iter_),
            "objective": float(fitted.history_[-1])}


def job_stream(size: dict, workdir: str) -> dict:
    from probdl import distributed
    from probdl.graph.stream import stream_marginals

    bn, _ = _alarm_rows(10)
    source = Path(workdir) / "alarm_rows.csv"
    distributed.barrier()
    start = time.perf_counter()
    stream_marginals(bn, source, Path(workdir) / f"post{os.getpid()}.csv",
                     chunk_rows=size["chunk"], progress=False)
    return {"seconds": time.perf_counter() - start}


def worker(job: str, size: dict, workdir: str, out: str) -> None:
    import torch

    from probdl import distributed

    torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # its first use imports torch._dynamo
    distributed.init()
    jobs = {"train": job_train, "train_shapes": job_train_shapes, "em": job_em}
    result = jobs[job](size) if job != "stream" else job_stream(size, workdir)
    if distributed.is_writer():
        Path(out).write_text(json.dumps(result))


# ---- the driver --------------------------------------------------------------------------------
def run_variant(job: str, nproc: int, threads: int, size: dict, workdir: str) -> dict:
    out = Path(workdir) / f"{job}-{nproc}-{threads}.json"
    env = dict(os.environ, BENCH_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               OMP_WAIT_POLICY="PASSIVE")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           str(nproc), "-m", "benchmarks.bench_scaling", "--worker", job, "--size",
           json.dumps(size), "--workdir", workdir, "--out", str(out)]
    subprocess.run(cmd, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small jobs, one round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, json.loads(args.size), args.workdir, args.out)
        return 0
    size = ({"epochs": 1, "shapes": 300, "em_rows": 1000, "em_iter": 3, "stream_rows": 5000,
             "chunk": 1000} if args.quick else
            {"epochs": 4, "shapes": 1200, "em_rows": 4000, "em_iter": 8, "stream_rows": 40000,
             "chunk": 5000})
    rounds = args.rounds or (1 if args.quick else 3)
    with tempfile.TemporaryDirectory() as workdir:
        _, stream_rows = _alarm_rows(size["stream_rows"])
        stream_rows.to_csv(Path(workdir) / "alarm_rows.csv", index=False)
        runs: dict = {}
        for r in range(rounds):
            for job in JOBS:
                for label, nproc, threads in VARIANTS:
                    t0 = time.perf_counter()
                    result = run_variant(job, nproc, threads, size, workdir)
                    runs.setdefault((job, label), []).append(result)
                    print(f"round {r + 1}/{rounds} {job:6} {label:28} {result['seconds']:7.2f} s "
                          f"(call {time.perf_counter() - t0:.1f} s)", flush=True)
    write(runs, size, rounds, args.quick, args.rounds)
    return 0


JOBS = {
    "train": "SVI training, BayesianCNN (conv32-conv64-dense128), digits, {epochs} epochs, "
             "batch 64",
    "train_shapes": "the same on shapes, 32x32x3, {shapes:,} images (70% for training), "
                    "1 epoch",
    "em": "EM, alarm, {em_rows:,} rows, 20% cells missing, {em_iter} iterations",
    "stream": "streaming marginals, alarm, {stream_rows:,}-row CSV, chunks of {chunk:,}",
}


def write(runs: dict, size: dict, rounds: int, quick: bool, rounds_arg: int | None) -> None:
    lines = ["| job | " + " | ".join(v[0] for v in VARIANTS)
             + " | speed-up of 2 processes vs 1 thread | vs 2 threads |",
             "|---|" + "---|" * (len(VARIANTS) + 2)]
    notes = []
    for job, title in JOBS.items():
        med = [statistics.median(r["seconds"] for r in runs[(job, v[0])]) for v in VARIANTS]
        lines.append(f"| {title.format(**size)} | " + " | ".join(f"{m:.2f} s" for m in med)
                     + f" | {med[0] / med[2]:.2f}x | {med[1] / med[2]:.2f}x |")
        if job == "train":
            quality = ", ".join(
                f"{v[0]}: accuracy {runs[(job, v[0])][-1]['accuracy']:.3f}, NLL "
                f"{runs[(job, v[0])][-1]['nll']:.3f}" for v in VARIANTS)
            notes.append(f"Test quality after training ({quality}).")
        if job == "em":
            objective = {round(runs[(job, v[0])][-1]["objective"], 6) for v in VARIANTS}
            notes.append(f"EM objective after the last iteration, all variants: "
                         f"{', '.join(f'{o:.6f}' for o in sorted(objective))}.")
    command = ("python -m benchmarks.bench_scaling" + (" --quick" if quick else "")
               + (f" --rounds {rounds_arg}" if rounds_arg else ""))
    text = f"""## Scaling: one process against two (torchrun, gloo)

Command: `OMP_WAIT_POLICY=PASSIVE {command}`; machine: {platform.machine()} CPU, 2 cores,
shared with other work ({os.cpu_count()} logical CPUs visible), torch gloo backend on localhost;
date: {datetime.date.today().isoformat()}. Median of {rounds} round(s); the variants of a job
ran one after another within each round. Times exclude process start-up and data loading.

{chr(10).join(lines)}

{chr(10).join(notes)}

Two processes on two cores can at best halve a job's time; against one process that already
uses both cores through torch's threads the gain is what is left after torch's own
parallelism and the all-reduce. The training's global batch is the same 64 in every variant
(32 per rank with two), so the runs compute the same updates up to sampling noise.
"""
    with atomic_write(RESULTS, "w") as handle:
        handle.write(text)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    raise SystemExit(main())
