"""The junction tree in torch: batched clique tables on a CUDA device, and ``log_evidence``.

    import numpy as np, torch
    from probdl.graph import BayesNet
    from probdl.graph.inference.torch_engine import log_evidence
    bn = BayesNet.example("asia")
    states, observed = bn.encode(bn.sample(4, seed=0))
    cpts = [torch.tensor(bn.cpd(v), requires_grad=True) for v in bn.variables]
    log_p = log_evidence(bn, states, ~observed, cpts)   # (4,), differentiable in the CPTs
    log_p.sum().backward()                              # cpt * grad: expected family counts

The same tree and schedule as the compiled CPU engine, but every row carries whole clique
tables (B, *cards): hard evidence is a one-hot likelihood, soft evidence a likelihood, both
multiplied in at the variable's home clique. That suits a GPU (large batches, dense kernels)
and autograd. Messages are rescaled to a per-row maximum of 1, the scale's log added to
log P(e). Max-product, sampling and EM's counts run on the CPU engine.
"""

from __future__ import annotations

import contextlib
import string
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ...errors import InferenceError
from .engine import DEFAULT_MEMORY_BUDGET, Engine

__all__ = ["TorchEngine", "log_evidence", "single_thread"]

_LETTERS = string.ascii_letters


@contextlib.contextmanager
def single_thread():
    """Run torch on one thread inside the block (small float64 kernels run fastest so on a busy
    machine, and runs are comparable bit for bit)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class TorchEngine:
    """The CPU engine's tree on ``device``: ``run`` as :meth:`Engine.run` (posteriors and
    log P(e)); ``map`` and ``sample`` go to the CPU engine."""

    def __init__(self, base: Engine, device) -> None:
        self.base = base
        self.device = torch.device(device)
        self.names, self.position, self.cards = base.names, base.position, base.cards
        self.parents, self.columns, self.tree = base.parents, base.columns, base.tree
        self.cpts = [torch.as_tensor(c, dtype=torch.float64, device=self.device)
                     for c in base.unflatten(base.flat)]

    def map(self, *args, **kwargs):
        return self.base.map(*args, **kwargs)

    def sample(self, *args, **kwargs):
        return self.base.sample(*args, **kwargs)

    def run(self, states, hidden, soft=None, want: str = "post", weights=None, factor_on=None,
            memory_budget: float = DEFAULT_MEMORY_BUDGET) -> dict:
        if want == "counts":
            return self.base.run(states, hidden, soft, want, weights, factor_on, memory_budget)
        cpts = self.cpts
        if factor_on is not None:  # barren CPTs left out: a table of ones stands in
            cpts = [c if on else torch.ones_like(c) for c, on in zip(cpts, factor_on,
                                                                    strict=True)]
        # rows in blocks whose clique tables (kept for the downward pass) fit the budget
        per_row = 8.0 * 2 * max(self.tree.total_size, 1)
        step = max(1, int(memory_budget // per_row))
        parts = []
        with torch.no_grad():
            for lo in range(0, max(len(states), 1), step):
                part = slice(lo, lo + step)
                parts.append(sum_product(self.base, cpts, states[part], hidden[part],
                                         None if soft is None else soft[part],
                                         want == "post", memory_budget))
        log_z = torch.cat([p[0] for p in parts]).cpu().numpy()
        post = (torch.cat([p[1] for p in parts]).cpu().numpy() if want == "post"
                else np.zeros((0, int(self.columns[-1]))))
        return {"log_z": log_z, "post": post, "counts": np.zeros(0)}


def _lambdas(base: Engine, states, hidden, soft, like: torch.Tensor) -> list[torch.Tensor]:
    states = torch.as_tensor(np.asarray(states), device=like.device)
    hidden = torch.as_tensor(np.asarray(hidden), device=like.device)
    out = []
    for v, k in enumerate(base.cards):
        one_hot = torch.nn.functional.one_hot(states[:, v], k).to(like.dtype)
        lam = torch.where(hidden[:, v:v + 1], torch.ones_like(one_hot), one_hot)
        if soft is not None:
            lo = base.columns[v]
            lam = lam * torch.as_tensor(np.asarray(soft)[:, lo:lo + k], dtype=like.dtype,
                                        device=like.device)
        out.append(lam)
    return out


def _letters(members) -> dict[int, str]:
    if len(members) > len(_LETTERS) - 1:
        raise InferenceError(f"a clique of {len(members)} variables is too wide for the torch "
                             f"engine; use the CPU engine (bn.device = 'cpu')")
    return {u: _LETTERS[i + 1] for i, u in enumerate(members)}


def sum_product(base: Engine, cpts: Sequence[torch.Tensor], states, hidden, soft,
                posteriors: bool, memory_budget: float = DEFAULT_MEMORY_BUDGET):
    """(log P(e) (B,), posteriors (B, cols) or None) with whole clique tables per row."""
    tree = base.tree
    like = cpts[0]
    b = len(states)
    largest = max((int(np.prod([base.cards[u] for u in c])) for c in tree.cliques), default=1)
    if 8.0 * 3 * largest > memory_budget:
        raise InferenceError(
            f"the torch engine needs about {24.0 * largest / 2**30:.3g} GiB per row for its "
            f"largest clique ({largest:,} entries), over the memory budget of "
            f"{memory_budget / 2**30:.3g} GiB; use the CPU engine or method='sampling'")
    lam = _lambdas(base, states, hidden, soft, like)
    m = len(tree.cliques)
    kids = [[k for k in range(m) if tree.parent[k] == c] for c in range(m)]
    letter = [_letters(c) for c in tree.cliques]
    sep = [[u for u in tree.cliques[c] if tree.parent[c] >= 0
            and u in tree.cliques[tree.parent[c]]] for c in range(m)]
    log_z = torch.zeros(b, dtype=like.dtype, device=like.device)
    tables, up = [None] * m, [None] * m
    for c in range(m - 1, -1, -1):
        ops, subs = [], []
        for v in (v for v in range(len(base.cards)) if tree.family_home[v] == c):
            ops.append(cpts[v])
            subs.append("".join(letter[c][u] for u in (v, *base.parents[v])))
        for v in (v for v in range(len(base.cards)) if tree.home[v] == c):
            ops.append(lam[v])
            subs.append("Z" + letter[c][v])
        for k in kids[c]:
            ops.append(up[k])
            subs.append("Z" + "".join(letter[c][u] for u in sep[k]))
        whole = "Z" + "".join(letter[c][u] for u in tree.cliques[c])
        if not any(s.startswith("Z") for s in subs):
            ops.append(torch.ones(b, dtype=like.dtype, device=like.device))
            subs.append("Z")
        table = torch.einsum(",".join(subs) + "->" + whole, *ops)
        tables[c] = table
        msg = torch.einsum(whole + "->Z" + "".join(letter[c][u] for u in sep[c]), table)
        # any differentiable scale keeps log P(e) exact (the tables below divide by it)
        scale = msg.reshape(b, -1).amax(1)
        positive = scale > 0
        scale = torch.where(positive, scale, torch.ones_like(scale))
        up[c] = msg / scale.reshape((b,) + (1,) * (msg.dim() - 1))
        log_z = log_z + torch.where(positive, scale.log(), torch.full_like(scale, -torch.inf))
    if not posteriors:
        return log_z, None
    post = torch.zeros(b, int(base.columns[-1]), dtype=like.dtype, device=like.device)
    down = [None] * m
    for c in range(m):
        whole = "Z" + "".join(letter[c][u] for u in tree.cliques[c])
        belief = tables[c]
        if down[c] is not None:
            belief = torch.einsum(whole + ",Z" + "".join(letter[c][u] for u in sep[c])
                                  + "->" + whole, belief, down[c])
        z = belief.reshape(b, -1).sum(1)
        belief = belief / torch.where(z > 0, z, torch.ones_like(z)).reshape(
            (b,) + (1,) * (belief.dim() - 1))
        for k in kids[c]:
            s = "Z" + "".join(letter[c][u] for u in sep[k])
            summed = torch.einsum(whole + "->" + s, belief)
            down[k] = torch.where(up[k] > 0, summed / torch.where(up[k] > 0, up[k],
                                                                  torch.ones_like(up[k])),
                                  torch.zeros_like(summed))
        for v in (v for v in range(len(base.cards)) if tree.home[v] == c):
            lo = int(base.columns[v])
            post[:, lo:lo + base.cards[v]] = torch.einsum(whole + "->Z" + letter[c][v], belief)
    return log_z, post


def log_evidence(bn, states, missing, cpts: Sequence[torch.Tensor] | Mapping[str, torch.Tensor]
                 | None = None, soft_evidence: Mapping[str, object] | None = None) -> torch.Tensor:
    """log P(observed part) of every row, differentiable with respect to the CPT tensors.

    ``states`` (B, n) codes in ``bn.variables`` order (ignored where ``missing``), ``missing``
    (B, n) bool; ``cpts`` in ``bn.variables`` order or by name (default: ``bn``'s, on the
    CPU), their dtype and device used throughout; ``soft_evidence`` as for ``bn.query``.
    Returns (B,), ``-inf`` for rows of probability zero. ``cpt * d(sum log P)/d cpt`` gives
    each CPT entry's expected count.
    """
    from .queries import soft_array

    base = bn.engine("cpu")
    if cpts is None:
        cpts = [torch.as_tensor(bn.cpd(v), dtype=torch.float64) for v in bn.variables]
    elif isinstance(cpts, Mapping):
        cpts = [cpts[v] for v in bn.variables]
    cpts = list(cpts)
    states = np.asarray(states, dtype=np.int64)
    hidden = np.asarray(missing, dtype=bool)
    if states.ndim != 2 or states.shape[1] != len(bn.variables) or hidden.shape != states.shape:
        raise InferenceError(
            f"states and missing must both have shape (rows, {len(bn.variables)}) with columns "
            f"in bn.variables order; got {states.shape} and {hidden.shape}")
    states = np.where(hidden, 0, states)
    soft = soft_array(bn, soft_evidence, len(states))
    return sum_product(base, cpts, states, hidden, soft, False, bn.memory_budget)[0]
