"""Bayesian CNN benchmark: probdl against its peers on digits, side by side in one run.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m benchmarks.bench_bnn [--quick]

Digits, ``split(seed=0)``, the same architecture everywhere (conv3x3 32 -> conv3x3 64 -> max pool
-> avg pool -> dense 128 -> dense 10), 30 epochs, batch 64. Rows: probdl's BayesianCNN,
DeterministicCNN and MCDropoutCNN through ``train`` with its defaults; a plain-torch
deterministic loop; naive Pyro (``PyroSample`` priors + ``AutoNormal`` started at torch's
layer initialization, init_scale 0.01 (at its default 0.1 it stayed at chance accuracy here),
``Trace_ELBO``, ``pyro.optim.Adam``);
bayesian-torch reparameterization layers with their KL as shipped (a mean
per layer) and corrected (a sum over weights). Quality: test accuracy, NLL, ECE (15 bins),
entropy AUROC of uniform noise against the test set, accuracy/NLL under rotations, and the
AUROC on other kinds of non-digit images (none of them shown in training: the noise-contrastive
prior trains on shuffled digits). Seed spread: the BayesianCNN defaults trained with seeds
0..N-1, mean and range. Speed: epoch time (validation included) and predict time as ratios to
the deterministic CNN, interleaved so that load from other processes hits both alike. Writes
benchmarks/results/bnn.md.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal, init_to_value
from pyro.nn import PyroModule, PyroSample

from probdl import metrics
from probdl.bnn import BayesianCNN, DeterministicCNN, MCDropoutCNN, predict, train
from probdl.data import load_digits, split

RESULTS = Path(__file__).parent / "results" / "bnn.md"
ANGLES = (15, 30, 45)


def rotate(images: torch.Tensor, degrees: float) -> torch.Tensor:
    a = math.radians(degrees)
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]])
    grid = F.affine_grid(theta.expand(len(images), 2, 3), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, align_corners=False)


def sequential(num_classes: int = 10, dropout: float = 0.5) -> torch.nn.Sequential:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.AvgPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(256, 128), torch.nn.ReLU(), torch.nn.Dropout(dropout),
        torch.nn.Linear(128, num_classes),
    )  # fmt: skip


def ood_sets(test_images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Non-digit images, as many as the test set; "uniform" is the one the figures name."""
    n = len(test_images)
    gen = torch.Generator().manual_seed(1)
    uniform = torch.rand(n, 1, 8, 8, generator=gen)
    gen = torch.Generator().manual_seed(2)
    blobs = F.interpolate(
        torch.rand(n, 1, 3, 3, generator=gen), size=(8, 8), mode="bilinear", align_corners=True
    )
    return {
        "uniform": uniform,
        "gaussian": (0.3 + 0.3 * torch.randn(n, 1, 8, 8, generator=gen)).clamp(0, 1),
        "blobs": blobs,
        "constant": torch.rand(n, 1, 1, 1, generator=gen).expand(n, 1, 8, 8).clone(),
        "binary": (torch.rand(n, 1, 8, 8, generator=gen) < 0.3).float(),
        "inverted": 1 - test_images,
    }


def scores(sample_probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    probs = sample_probs.mean(0)
    return {
        "accuracy": metrics.accuracy(probs, labels),
        "nll": metrics.nll(probs, labels),
        "ece": metrics.ece(probs, labels),
    }


# ---- peers ----------------------------------------------------------------------------------
class Standardized:
    """Digits standardized with the training mean/std, shared by the peers."""

    def __init__(self, tr, va, te):
        self.mean, self.std = tr.images.mean(), tr.images.std()
        self.tr = ((tr.images - self.mean) / self.std, tr.labels)
        self.va = ((va.images - self.mean) / self.std, va.labels)
        self.te = ((te.images - self.mean) / self.std, te.labels)

    def __call__(self, x):
        return (x - self.mean) / self.std


def _epochs(step, validate, n, epochs, batch, seed):
    """Shared minibatch loop: returns the per-epoch seconds (validation included)."""
    times = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        for start in range(0, n, batch):
            step(order[start : start + batch])
        validate()
        times.append(time.perf_counter() - t0)
    return times


def plain_torch(data, epochs, batch, seed):
    torch.manual_seed(seed)
    net = sequential()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = data.tr

    def step(idx):
        net.train()
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()

    def validate():
        net.eval()
        with torch.no_grad():
            net(data.va[0])

    times = _epochs(step, validate, len(x), epochs, batch, seed)
    net.eval()

    def sample(images, s):
        with torch.no_grad():
            return torch.softmax(net(data(images)), -1)[None]

    return times, sample


class NaivePyroCNN(PyroModule):
    """The textbook Pyro BNN: every layer's weights a PyroSample with a Normal(0, 1) prior."""

    def __init__(self):
        super().__init__()
        layers = [
            ("c1", PyroModule[torch.nn.Conv2d](1, 32, 3, padding=1)),
            ("c2", PyroModule[torch.nn.Conv2d](32, 64, 3, padding=1)),
            ("d1", PyroModule[torch.nn.Linear](256, 128)),
            ("d2", PyroModule[torch.nn.Linear](128, 10)),
        ]
        self.init_values = {}
        for name, layer in layers:
            for pname, p in list(layer.named_parameters()):
                # the guide starts at torch's own layer initialization, not at prior draws
                self.init_values[f"{name}.{pname}"] = p.detach().clone()
                prior = dist.Normal(0.0, 1.0).expand(p.shape).to_event(p.dim())
                setattr(layer, pname, PyroSample(prior))
            setattr(self, name, layer)

    def forward(self, x, y=None, size=None):
        h = F.relu(self.c2(F.relu(self.c1(x))))
        h = F.avg_pool2d(F.max_pool2d(h, 2), 2).flatten(1)
        logits = self.d2(F.dropout(F.relu(self.d1(h)), 0.5, self.training))
        with pyro.plate("data", size=size or len(x), subsample=torch.arange(len(x))):
            pyro.sample("obs", dist.Categorical(logits=logits), obs=y)
        return logits


def naive_pyro(data, epochs, batch, seed):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    model = NaivePyroCNN()
    guide = AutoNormal(
        model, init_loc_fn=init_to_value(values=model.init_values), init_scale=0.01
    )
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    x, y = data.tr

    def step(idx):
        model.train()
        svi.step(x[idx], y[idx], len(x))

    def sample(images, s, prepared=False):
        model.eval()
        xs = images if prepared else data(images)
        out = []
        with torch.no_grad():
            for _ in range(s):
                tr = pyro.poutine.trace(guide).get_trace(xs)
                logits = pyro.poutine.replay(model, trace=tr)(xs)
                out.append(torch.softmax(logits, -1))
        return torch.stack(out)

    times = _epochs(step, lambda: sample(data.va[0], 4, True), len(x), epochs, batch, seed)
    return times, sample


def _bt_kl_sum(net):
    """bayesian-torch KL summed over every weight (its layers return a mean per tensor)."""
    total = 0.0
    for layer in net.modules():
        for name, mu in layer.named_parameters(recurse=False):
            if not name.startswith("mu_"):
                continue
            part = name[3:]
            rho = getattr(layer, "rho_" + part)
            key = "bias" if part == "bias" else "weight"
            p_mu, p_sigma = getattr(layer, f"prior_{key}_mu"), getattr(layer, f"prior_{key}_sigma")
            sigma = torch.log1p(torch.exp(rho))
            kl = torch.log(torch.as_tensor(p_sigma) / sigma) + (
                sigma**2 + (mu - p_mu) ** 2
            ) / (2 * torch.as_tensor(p_sigma) ** 2) - 0.5
            total = total + kl.sum()
    return total


def bayesian_torch(data, epochs, batch, seed, corrected):
    from bayesian_torch.models.dnn_to_bnn import dnn_to_bnn, get_kl_loss

    torch.manual_seed(seed)
    net = sequential()
    dnn_to_bnn(
        net,
        {
            "prior_mu": 0.0, "prior_sigma": 1.0, "posterior_mu_init": 0.0,
            "posterior_rho_init": -3.0, "type": "Reparameterization", "moped_enable": False,
            "moped_delta": 0.5,
        },
    )  # fmt: skip
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = data.tr
    n = len(x)

    def step(idx):
        net.train()
        kl = _bt_kl_sum(net) if corrected else get_kl_loss(net)
        loss = F.cross_entropy(net(x[idx]), y[idx]) + kl / n
        opt.zero_grad()
        loss.backward()
        opt.step()

    def sample(images, s, prepared=False):
        net.eval()
        xs = images if prepared else data(images)
        with torch.no_grad():
            return torch.stack([torch.softmax(net(xs), -1) for _ in range(s)])

    times = _epochs(step, lambda: sample(data.va[0], 4, True), n, epochs, batch, seed)
    return times, sample


# ---- probdl -----------------------------------------------------------------------------------
def probdl_model(cls, kwargs, tr, va, epochs, seed):
    model = cls(1, 10, (8, 8), **kwargs)
    result = train(model, tr, va, epochs=epochs, batch_size=64, seed=seed, progress=False)
    times = [h["seconds"] for h in result.history]

    def sample(images, s):
        return predict(model, images, s).sample_probs

    return times, sample, model


def interleaved_speed(tr, va, rounds, seed):
    """Epoch time of BayesianCNN / DeterministicCNN, alternating single epochs."""
    ratios, b_times, d_times = [], [], []
    b = BayesianCNN(1, 10, (8, 8))
    d = DeterministicCNN(1, 10, (8, 8))
    for r in range(rounds):
        td = train(d, tr, va, epochs=1, seed=seed + r, progress=False).history[0]["seconds"]
        tb = train(b, tr, va, epochs=1, seed=seed + r, progress=False).history[0]["seconds"]
        ratios.append(tb / td)
        b_times.append(tb)
        d_times.append(td)
    return statistics.median(ratios), statistics.median(b_times), statistics.median(d_times)


def predict_speed(model, det, images, s, rounds):
    ratios = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        predict(model, images, s)
        tb = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(s):
            predict(det, images, 1)
        td = time.perf_counter() - t0
        ratios.append(tb / td)
    return statistics.median(ratios)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs, fewer rounds")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--seeds", type=int, default=5, help="seeds for the spread table")
    args = parser.parse_args(argv)
    epochs = 2 if args.quick else 30
    rounds = 3 if args.quick else 9
    seed = 0
    tr, va, te = split(load_digits(), val=0.15, test=0.2, seed=0)
    data = Standardized(tr, va, te)
    oods = ood_sets(te.images)
    s = 32
    rows = []

    def record(name, times, sample, note=""):
        test_probs = sample(te.images, s)
        row = {"variant": name, "epoch_ms": 1000 * statistics.median(times), "note": note}
        row.update(scores(test_probs, te.labels))
        ent_in = metrics.entropy(test_probs.mean(0))
        row["ood"] = {
            kind: metrics.auroc(metrics.entropy(sample(images, s).mean(0)), ent_in)
            for kind, images in oods.items()
        }
        row["auroc"] = row["ood"]["uniform"]
        for angle in ANGLES:
            rs = scores(sample(rotate(te.images, angle), s), te.labels)
            row[f"rot{angle}"] = (rs["accuracy"], rs["nll"])
        rows.append(row)
        print(f"{name:42s} " + " ".join(
            f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float)
        ), flush=True)  # fmt: skip

    models = {}
    for name, cls, kw in [
        ("probdl BayesianCNN (defaults)", BayesianCNN, {}),
        ("probdl DeterministicCNN", DeterministicCNN, {}),
        ("probdl MCDropoutCNN", MCDropoutCNN, {}),
        ("probdl BayesianCNN, batch_norm=True", BayesianCNN, {"batch_norm": True}),
        ("probdl BayesianCNN, noise_prior=0", BayesianCNN, {"noise_prior": 0.0}),
        ("probdl DeterministicCNN, batch_norm=True", DeterministicCNN, {"batch_norm": True}),
    ]:
        times, sample, model = probdl_model(cls, kw, tr, va, epochs, seed)
        models[name] = model
        record(name, times, sample)
    record("plain torch deterministic, Adam 1e-3", *plain_torch(data, epochs, 64, seed))
    record("naive Pyro PyroSample + AutoNormal", *naive_pyro(data, epochs, 64, seed))
    record("bayesian-torch reparam, KL as shipped", *bayesian_torch(data, epochs, 64, seed, False))
    record("bayesian-torch reparam, KL corrected", *bayesian_torch(data, epochs, 64, seed, True))

    det_ms = next(r["epoch_ms"] for r in rows if r["variant"] == "probdl DeterministicCNN")
    ratio, b_ep, d_ep = interleaved_speed(tr, va, rounds, seed)
    p_ratio = predict_speed(
        models["probdl BayesianCNN (defaults)"], models["probdl DeterministicCNN"],
        te.images, s, rounds,
    )  # fmt: skip
    print(f"interleaved epoch ratio {ratio:.2f}, predict ratio {p_ratio:.2f}", flush=True)
    seeds = min(args.seeds, 1) if args.quick else args.seeds
    spread = seed_spread(tr, va, te, oods["uniform"], epochs, s, seeds)
    write(args, rows, det_ms, ratio, b_ep, d_ep, p_ratio, epochs, s, spread)


def seed_spread(tr, va, te, noise, epochs, s, seeds):
    """The BayesianCNN defaults trained with model and train seed 0..seeds-1."""
    found = []
    for seed in range(seeds):
        model = BayesianCNN(1, 10, (8, 8), seed=seed)
        train(model, tr, va, epochs=epochs, batch_size=64, seed=seed, progress=False)
        torch.manual_seed(seed)
        probs = predict(model, te.images, s).probs
        row = scores(probs[None], te.labels)
        ent_out = metrics.entropy(predict(model, noise, s).probs)
        row["auroc"] = metrics.auroc(ent_out, metrics.entropy(probs))
        found.append(row)
        print(f"seed {seed}: " + " ".join(f"{k}={v:.4f}" for k, v in row.items()), flush=True)
    return found


def write(args, rows, det_ms, ratio, b_ep, d_ep, p_ratio, epochs, s, spread):
    lines = [
        "# Bayesian CNN benchmark (digits)",
        "",
        f"Command: `OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m benchmarks.bench_bnn"
        f"{' --quick' if args.quick else ''}`  ",
        f"Machine: 2-core CPU ({platform.processor() or platform.machine()}), shared with other "
        f"work; torch {torch.__version__}, pyro {pyro.__version__}, Python "
        f"{sys.version.split()[0]}  ",
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC  ",
        f"Digits `split(seed=0)` (1,168 train / 270 val / 359 test), {epochs} epochs, batch 64, "
        f"same architecture everywhere; predictive with S = {s} samples; ECE 15 bins; AUROC = "
        "predictive entropy, uniform noise (359 images) against the test set.",
        "",
        "| variant | epoch ms | epoch / probdl deterministic | accuracy | NLL | ECE | noise AUROC |"
        + "".join(f" rot {a}: acc / NLL |" for a in ANGLES),
        "|---|---|---|---|---|---|---|" + "---|" * len(ANGLES),
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['epoch_ms']:.0f} | {r['epoch_ms'] / det_ms:.2f} | "
            f"{r['accuracy']:.4f} | {r['nll']:.4f} | {r['ece']:.4f} | {r['auroc']:.4f} |"
            + "".join(f" {r[f'rot{a}'][0]:.3f} / {r[f'rot{a}'][1]:.3f} |" for a in ANGLES)
        )
    lines += [
        "",
        "Epoch times in the table come from sequential runs and drift with the machine's load; "
        "the ratios below alternate single epochs of the two models (median of the rounds).",
        "",
        f"- `train` epoch, BayesianCNN / DeterministicCNN, interleaved: **{ratio:.2f}x** "
        f"(median {b_ep * 1000:.0f} ms vs {d_ep * 1000:.0f} ms; validation included: the "
        "Bayesian model's validation draws `train`'s default val_samples=1 weight sample).",
        f"- `predict` with S = {s} samples / {s} deterministic passes: **{p_ratio:.2f}x**.",
        "",
        "Entropy AUROC against the test set on other non-digit images (none used in training; "
        "uniform is the column above):",
        "",
        "| variant | " + " | ".join(rows[0]["ood"]) + " |",
        "|---|" + "---|" * len(rows[0]["ood"]),
    ]
    for r in rows:
        lines.append(f"| {r['variant']} | " + " | ".join(f"{v:.4f}" for v in r["ood"].values())
                     + " |")  # fmt: skip
    if spread:
        keys = ("accuracy", "nll", "ece", "auroc")
        lines += [
            "",
            f"Seed spread of the BayesianCNN defaults (model and `train` seed 0..{len(spread) - 1},"
            " the table above is seed 0):",
            "",
            "| | accuracy | NLL | ECE | noise AUROC |",
            "|---|---|---|---|---|",
        ]
        for label, agg in (("mean", statistics.mean), ("min", min), ("max", max)):
            lines.append(f"| {label} | " + " | ".join(
                f"{agg(r[k] for r in spread):.4f}" for k in keys) + " |")  # fmt: skip
        lines.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
