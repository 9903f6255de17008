"""The bridge: digit sums as evidence (probdl vs pyAgrum and pgmpy), and learning from sums.

    python -m benchmarks.bench_hybrid            # full (~3-4 minutes on 2 cores)
    python -m benchmarks.bench_hybrid --quick    # tiny trainings, fewer rows

Three parts, all on scikit-learn's 8x8 digits split with seed 0 (train 1,169 / val 269 / test
359), network D1, D2 -> S = D1 + D2:

1. Query speed and agreement. The test split's 359 cyclic pairs (and 10,000 pairs of random
   Dirichlet likelihoods) with the sum observed: probdl's batched engine in one pass vs pyAgrum
   LazyPropagation and pgmpy VariableElimination (virtual evidence) one row at a time (pgmpy
   timed on its first rows and extrapolated), all checked against a numpy enumeration of the
   100 digit pairs.
2. Digit accuracy on the whole test split: a Bayesian CNN alone vs after the network combines
   both images and the sum (mean prediction, and posterior averaged over 32 weight draws).
3. Learning from sums: the Bayesian CNN trained on pairs labelled only by their sum (digits
   summed out exactly by logsumexp over the 100 pairs) vs the same CNN trained on the digit
   labels, and the same sum objective computed by Pyro's parallel enumeration
   (``TraceEnum_ELBO``) as a peer: seconds per epoch and equality of the loss.

Results go to benchmarks/results/hybrid.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
import warnings
from functools import partial
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pandas as pd
import torch

from probdl.bnn import ELBO, BayesianCNN, evaluate, train
from probdl.data import load_digits, split
from probdl.files import atomic_write
from probdl.hybrid import (
    HybridModel,
    digit_sum_network,
    digit_sum_pairs,
    pair_indices,
    sum_guide,
    sum_log_likelihood,
    sum_model,
    sum_pairs,
    train_on_sums,
)

RESULTS = Path(__file__).resolve().parent / "results" / "hybrid.md"
SPEED_HEADER = (
    "| case | rows | probdl (ms) | pyAgrum (ms) | pgmpy (ms) | speed-up vs pyAgrum | vs pgmpy "
    "| error probdl / pyAgrum / pgmpy |\n|---|---|---|---|---|---|---|---|"
)


# ---------------------------------------------------------------------------- 1. queries
def brute_force(l1: np.ndarray, l2: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """P(D1 | l1, l2, s) under uniform digits, by enumerating the 100 pairs: (B, 10)."""
    d = np.arange(10)
    hit = (d[:, None] + d[None, :])[None] == sums[:, None, None]
    joint = l1[:, :, None] * l2[:, None, :] * hit
    return joint.sum(2) / joint.sum((1, 2))[:, None]


def pyagrum_network():
    import pyagrum as gum

    net = gum.BayesNet("digit_sum")
    for v, k in (("D1", 10), ("D2", 10), ("S", 19)):
        net.add(gum.LabelizedVariable(v, v, [str(i) for i in range(k)]))
    net.addArc("D1", "S")
    net.addArc("D2", "S")
    net.cpt("D1").fillWith([0.1] * 10)
    net.cpt("D2").fillWith([0.1] * 10)
    for d1 in range(10):
        for d2 in range(10):
            column = [0.0] * 19
            column[d1 + d2] = 1.0
            net.cpt("S")[{"D1": d1, "D2": d2}] = column
    return net


def run_pyagrum(l1, l2, sums, limit):
    import pyagrum as gum

    ie = gum.LazyPropagation(pyagrum_network())
    n = min(limit, len(sums))
    out = np.zeros((n, 10))
    start = time.perf_counter()
    for i in range(n):
        ie.setEvidence({"D1": l1[i].tolist(), "D2": l2[i].tolist(), "S": str(sums[i])})
        ie.makeInference()
        out[i] = ie.posterior("D1").toarray()
    return (time.perf_counter() - start) * len(sums) / n, out


def run_pgmpy(bn, l1, l2, sums, limit):
    from pgmpy.factors.discrete import TabularCPD
    from pgmpy.inference import VariableElimination

    model = bn.to_pgmpy()
    ve = VariableElimination(model)
    names = {v: model.get_cpds(v).state_names[v] for v in ("D1", "D2", "S")}
    n = min(limit, len(sums))
    out = np.zeros((n, 10))
    start = time.perf_counter()
    for i in range(n):
        # pgmpy wants each virtual-evidence vector to be a distribution: scale it to sum 1
        virtual = [TabularCPD(v, 10, lik[i][:, None] / lik[i].sum(), state_names={v: names[v]})
                   for v, lik in (("D1", l1), ("D2", l2))]
        res = ve.query(["D1"], evidence={"S": names["S"][sums[i]]}, virtual_evidence=virtual,
                       show_progress=False)
        out[i] = res.values
    return (time.perf_counter() - start) * len(sums) / n, out


def query_speed(bn, l1, l2, sums, pgmpy_rows, pyagrum_rows):
    rows = pd.DataFrame({"S": sums})
    soft = {"D1": l1, "D2": l2}
    bn.marginals(rows.iloc[:8], {k: v[:8] for k, v in soft.items()})  # warm-up: compile
    start = time.perf_counter()
    ours = bn.marginals(rows, soft)["D1"]
    t_ours = time.perf_counter() - start
    ref = brute_force(l1, l2, sums)
    t_agrum, agrum = run_pyagrum(l1, l2, sums, pyagrum_rows)
    t_pgmpy, pgm = run_pgmpy(bn, l1, l2, sums, pgmpy_rows)
    return {
        "rows": len(sums), "t_ours": t_ours, "t_agrum": t_agrum, "t_pgmpy": t_pgmpy,
        "agrum_rows": len(agrum), "pgmpy_rows": len(pgm),
        "err_ours": np.abs(ours - ref).max(), "err_agrum": np.abs(agrum - ref[: len(agrum)]).max(),
        "err_pgmpy": np.abs(pgm - ref[: len(pgm)]).max(),
    }


# ---------------------------------------------------------------------------- 3. sums
def enum_model(cnn, first, second, sums=None, index=None, size=None):
    """The same sum likelihood through Pyro's parallel enumeration of the two digits."""
    import pyro
    import pyro.distributions as dist
    from pyro import poutine

    with poutine.block(hide=["obs", "data"]):
        logits = cnn.model(torch.cat([first, second]))
    l1, l2 = logits[: len(first)], logits[len(first):]
    d = torch.arange(10)
    table = torch.where((d[:, None, None] + d[None, :, None]) == torch.arange(19), 0.0,
                        -torch.inf)  # (10, 10, 19) log P(s | d1, d2)
    size = len(first) if size is None else size
    with pyro.plate("pairs", size=size, subsample=index):
        d1 = pyro.sample("d1", dist.Categorical(logits=l1), infer={"enumerate": "parallel"})
        d2 = pyro.sample("d2", dist.Categorical(logits=l2), infer={"enumerate": "parallel"})
        pyro.sample("sum", dist.Categorical(logits=table[d1, d2], validate_args=False), obs=sums)


def enumeration_peer(pairs, rounds: int, batch: int = 64):
    """Seconds per step (forward + backward) of the exact logsumexp loss as trained
    (``TraceMeanField_ELBO``) vs Pyro's ``TraceEnum_ELBO``, steps interleaved, medians; and the
    relative gap between the two sum objectives at one weight draw, both with Monte Carlo KL
    (``Trace_ELBO`` vs ``TraceEnum_ELBO``), so only the likelihood computation differs."""
    import pyro
    from pyro.infer import Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO

    cnn = BayesianCNN(in_channels=1, num_classes=10, image_size=(8, 8))
    data = (pairs.first[:batch], pairs.second[:batch], pairs.sums[:batch], torch.arange(batch),
            len(pairs))
    ours, theirs = partial(sum_model, cnn), partial(enum_model, cnn)
    guide = partial(sum_guide, cnn)
    with pyro.validation_enabled(False):
        losses = []
        for model, elbo in ((ours, Trace_ELBO(max_plate_nesting=1)),
                            (theirs, TraceEnum_ELBO(max_plate_nesting=1))):
            torch.manual_seed(0)
            losses.append(float(elbo.differentiable_loss(model, guide, *data).detach()))
        timed = {"logsumexp": (ours, TraceMeanField_ELBO(max_plate_nesting=1)),
                 "enum": (theirs, TraceEnum_ELBO(max_plate_nesting=1))}
        seconds: dict[str, list[float]] = {name: [] for name in timed}
        for _ in range(rounds):
            for name, (model, elbo) in timed.items():
                start = time.perf_counter()
                elbo.differentiable_loss(model, guide, *data).backward()
                seconds[name].append(time.perf_counter() - start)
    gap = abs(losses[0] - losses[1]) / abs(losses[1])
    return {name: float(np.median(v)) for name, v in seconds.items()}, gap


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    quick = args.quick
    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.manual_seed(0)
    train_set, val_set, test = split(load_digits(), val=0.15, test=0.2, seed=0)
    bn = digit_sum_network()

    # 1. queries: the test split's pairs with a trained CNN's likelihoods, then random ones
    cnn_epochs = 3 if quick else 30
    cnn = BayesianCNN(in_channels=1, num_classes=10, image_size=(8, 8))
    trained = train(cnn, train_set, val_set, epochs=cnn_epochs, seed=0, progress=False)
    hybrid = HybridModel(bn, {"D1": cnn, "D2": cnn}, class_prior=train_set)
    labels = test.labels.numpy()
    i1, i2 = pair_indices(len(test), seed=0, cyclic=True)
    lik = hybrid.likelihoods({"D1": test.images, "D2": test.images}, num_samples=32)
    speed = [query_speed(bn, lik["D1"][i1], lik["D2"][i2], labels[i1] + labels[i2],
                         pgmpy_rows=30 if quick else 359, pyagrum_rows=359)]
    rng = np.random.default_rng(0)
    n_random = 1000 if quick else 10_000
    rl1, rl2 = rng.dirichlet(np.ones(10), n_random), rng.dirichlet(np.ones(10), n_random)
    rsums = rng.integers(0, 10, n_random) + rng.integers(0, 10, n_random)
    speed.append(query_speed(bn, rl1, rl2, rsums, pgmpy_rows=30 if quick else 200,
                             pyagrum_rows=n_random if not quick else 1000))
    for row in speed:
        print({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()},
              flush=True)
    start = time.perf_counter()
    hybrid.query(["D1", "D2"], {"D1": test.images[i1], "D2": test.images[i2]},
                 evidence={"S": labels[i1] + labels[i2]}, num_samples=32)
    t_full = time.perf_counter() - start
    start = time.perf_counter()
    hybrid.query(["D1", "D2"], {"D1": test.images[i1], "D2": test.images[i2]},
                 evidence={"S": labels[i1] + labels[i2]}, num_samples=32, per_sample=True)
    t_full_ps = time.perf_counter() - start

    # 2. accuracy, for the trained CNN and for a weak one (1 epoch) that errs more often
    weak_epochs = 1
    weak = BayesianCNN(in_channels=1, num_classes=10, image_size=(8, 8))
    train(weak, train_set, val_set, epochs=weak_epochs, seed=0, progress=False)
    accuracy_rows = []
    for name, model in ((f"{cnn_epochs} epochs", cnn), (f"{weak_epochs} epoch (weak)", weak)):
        bridge = HybridModel(bn, {"D1": model, "D2": model}, class_prior=train_set)
        for per_sample in (False, True):
            out = digit_sum_pairs(bridge, test, seed=0, per_sample=per_sample, num_samples=32)
            cnn_acc = (out["cnn"] == out["truth"]).mean()
            hyb_acc = (out["hybrid"] == out["truth"]).mean()
            true_p = np.concatenate([out["D1"][np.arange(len(out["sums"])), out["truth"][:, 0]],
                                     out["D2"][np.arange(len(out["sums"])), out["truth"][:, 1]]])
            nll = -np.log(np.clip(true_p, 1e-300, None)).mean()
            how = "posterior averaged over 32 weight draws" if per_sample else "mean prediction"
            accuracy_rows.append(f"| {name} | {how} | {cnn_acc:.4f} | {hyb_acc:.4f} | "
                                 f"{nll:.3g} |")
            print(name, how, cnn_acc, hyb_acc, nll, flush=True)

    # 3. learning from sums
    repeats, sum_epochs, label_epochs = (1, 1, 1) if quick else (8, 5, 20)
    pairs = sum_pairs(train_set, seed=0, repeats=repeats)
    # dropout .25: the Bayesian CNN's default (.4) is set for 30-epoch training under its noise-
    # contrastive prior, which the sum model does not use; over 5 epochs on sums it cost accuracy
    # (.976 against .983, seeds 0-2)
    from_sums = BayesianCNN(in_channels=1, num_classes=10, image_size=(8, 8), dropout=0.25)
    start = time.perf_counter()
    train_on_sums(from_sums, pairs, epochs=sum_epochs, lr=2e-3, seed=0, progress=False)
    t_sums = time.perf_counter() - start
    from_labels = BayesianCNN(in_channels=1, num_classes=10, image_size=(8, 8), dropout=0.25)
    start = time.perf_counter()  # the same CNN as from_sums, without the noise prior
    train(from_labels, train_set, epochs=label_epochs, objective=ELBO(noise_prior=0.0), seed=0,
          progress=False)
    t_labels = time.perf_counter() - start
    s_scores = evaluate(from_sums, test, num_samples=32)
    l_scores = evaluate(from_labels, test, num_samples=32)
    peer, gap = enumeration_peer(pairs, rounds=5 if quick else 30)
    check = sum_log_likelihood(torch.log_softmax(torch.randn(4, 10), -1),
                               torch.log_softmax(torch.randn(4, 10), -1)).exp().sum(1)
    assert torch.allclose(check, torch.ones(4), atol=1e-6)
    print(s_scores["accuracy"], l_scores["accuracy"], peer, gap, flush=True)

    command = "python -m benchmarks.bench_hybrid" + (" --quick" if quick else "")
    speed_rows = "\n".join(
        f"| {name} | {r['rows']:,} | {r['t_ours'] * 1e3:.2f} | {r['t_agrum'] * 1e3:.1f} "
        f"({r['agrum_rows']:,} rows) | {r['t_pgmpy'] * 1e3:,.0f} ({r['pgmpy_rows']:,} rows) | "
        f"{r['t_agrum'] / r['t_ours']:.0f}x | {r['t_pgmpy'] / r['t_ours']:,.0f}x | "
        f"{r['err_ours']:.1e} / {r['err_agrum']:.1e} / {r['err_pgmpy']:.1e} |"
        for name, r in zip(("test-split pairs, CNN likelihoods", "random Dirichlet likelihoods"),
                           speed, strict=True))
    t_step_ours, t_step_enum = peer["logsumexp"], peer["enum"]
    sum_rows = "\n".join(
        f"| {name} | {epochs} | {seconds:.1f} | {sc['accuracy']:.4f} | {sc['nll']:.3f} | "
        f"{sc['ece']:.3f} |"
        for name, epochs, seconds, sc in (
            ("sums only (`train_on_sums`, lr 2e-3)", sum_epochs, t_sums, s_scores),
            ("digit labels (`train`, its default lr)", label_epochs, t_labels, l_scores)))
    text = f"""## The bridge: digit sums as evidence, and learning from sums

`{command}` on {os.cpu_count()}-core CPU ({platform.machine()}, shared, OMP_WAIT_POLICY=PASSIVE),
{datetime.date.today().isoformat()}, python {sys.version.split()[0]}, torch {torch.__version__};
all numbers from this one run. Data: scikit-learn's 8x8 digits, `split(val=0.15, test=0.2,
seed=0)`; network D1, D2 -> S = D1 + D2 (deterministic CPT, built through pgmpy).

**Queries** P(D1 | likelihoods of D1 and D2, S = s), one row per pair. probdl answers the batch
in one pass of its engine (`BayesNet.marginals`, what `HybridModel.query` calls; compile
excluded); pyAgrum `LazyPropagation` and pgmpy `VariableElimination` (virtual evidence) answer
one row at a time; a time measured on fewer rows than the batch is extrapolated per row. Error:
largest absolute difference from a numpy enumeration of the 100 digit pairs.

{SPEED_HEADER}
{speed_rows}

The whole `HybridModel.query` on the {len(i1)} test pairs, CNN included (32 weight draws per
image, 2 x {len(i1)} images): {t_full:.2f} s with the mean prediction, {t_full_ps:.2f} s with
`per_sample=True` (32 x {len(i1)} network rows in the same single engine pass); the CNN's
forward passes are nearly all of it.

**Digit accuracy on the whole test split** ({len(test)} images, each in two cyclic pairs, once
as D1 and once as D2, the pair's true sum observed). Bayesian CNN (default architecture),
trained {cnn_epochs} epochs ({trained.seconds:.1f} s), and a weak one trained {weak_epochs};
their training class frequencies divided out. "CNN alone" is the mean prediction's label; each
row draws its own 32 weight samples. NLL: mean over the digit slots of -log P(true digit | both
images, sum).

| Bayesian CNN | evidence from the CNN | CNN alone | with the sum | NLL, with the sum |
|---|---|---|---|---|
{chr(10).join(accuracy_rows)}

**Learning from sums.** {len(pairs):,} pairs of training images ({repeats} random pairing(s) of
the {len(train_set):,} training images), each labelled only by its sum; the digits are latent
and summed out exactly in the ELBO's likelihood term. Against the same Bayesian CNN trained on
the digit labels of the same images. Test split, 32 weight draws.

| trained on | epochs | seconds | accuracy | NLL | ECE |
|---|---|---|---|---|---|
{sum_rows}

The same sum objective computed by Pyro's parallel enumeration of D1 and D2 (`TraceEnum_ELBO`)
as the peer, one batch of 64 pairs, forward + backward, median of interleaved steps: probdl's
closed-form logsumexp (as trained, analytic KL) {t_step_ours * 1e3:.1f} ms per step,
`TraceEnum_ELBO` {t_step_enum * 1e3:.1f} ms ({t_step_enum / t_step_ours:.2f}x probdl's time).
At one weight draw, both with Monte Carlo KL (`Trace_ELBO` vs `TraceEnum_ELBO`), the two
objectives differ by a relative {gap:.1e} (float32).
"""
    with atomic_write(RESULTS, "w") as handle:
        handle.write(text)
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
