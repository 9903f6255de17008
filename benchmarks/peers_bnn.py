"""The Bayesian CNN's peers, written as their libraries' users would: plain torch, naive Pyro
(``PyroSample`` + ``AutoNormal``), bayesian-torch. Used by ``benchmarks.bench_bnn`` on 8x8 digits.

    from benchmarks.peers_bnn import Standardized, plain_torch
    times, sample = plain_torch(Standardized(tr, va, te), epochs=30, batch=64, seed=0)
    probs = sample(te.images, 32)          # (S, N, K)
"""

from __future__ import annotations

import math
import time

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal, init_to_value
from pyro.nn import PyroModule, PyroSample


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


