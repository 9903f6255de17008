"""The batched exact-inference engine: rows grouped by evidence pattern, compiled plans replayed.

    import numpy as np, torch
    from probdl.graph import BayesNet
    from probdl.graph.engine import log_evidence
    bn = BayesNet.example("asia")
    rows = np.zeros((4, len(bn.variables)), dtype=np.int64)     # state indices, bn.variables order
    missing = np.random.default_rng(0).random(rows.shape) < 0.5   # True = unobserved
    cpts = [torch.tensor(bn.cpd(v), requires_grad=True) for v in bn.variables]
    log_p = log_evidence(bn, rows, missing, cpts)                 # (4,), differentiable
    log_p.sum().backward()
    counts = [c.detach() * c.grad for c in cpts]   # expected family counts, as EM needs them

Interface for EM (stable): :func:`log_evidence` ``(bn, states, missing, cpts=None,
soft_evidence=None)`` returns log P(observed part of each row) as a torch tensor (B,),
differentiable with respect to the CPT tensors. Expected family counts for EM are
``cpt * d(sum_r w_r log P_r) / d cpt`` (the Darwiche / Baum-Welch identity).

How rows are answered: rows are grouped by which columns they observe. A pattern shared by many
rows gets its own plan in which the observed variables are *absorbed* (their CPT axes gathered per
row) and barren variables are pruned; the remaining rows share one *universal* plan in which hard
evidence enters as one-hot indicator vectors. Posteriors of all variables come from one backward
pass: with lambda_v the evidence vector of v, P(v = x | e) = lambda_v(x) d log P(e) / d lambda_v(x).
Every plan's memory is estimated first; batches are sliced to fit ``memory_budget`` bytes and a
plan too large even for one row raises :class:`~probdl.errors.InferenceError`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InferenceError
from . import grouping
from .contract import max_product, sum_product, sum_product_numpy
from .local import answer_local, soft_columns
from .plan import Plan, Structure, compile_plan

__all__ = ["DEFAULT_MEMORY_BUDGET", "Batch", "CptList", "log_evidence", "run"]

DEFAULT_MEMORY_BUDGET = 2 * 1024**3
# Contractions below this many multiply-adds per call run on one thread (measured faster on a
# busy 2-core machine: thread start-up dominates small float64 einsums).
SMALL_WORK = 50_000_000
# Up to this many rows without gradients, numpy replays the plan (microseconds per tiny einsum).
NUMPY_ROWS = 4
# Rows with hard evidence go to local.py (enumeration of small components, elimination along
# one tree for the rest) on every network: measured on 1,000 rows with 3-10 hidden, it beat
# the compiled plans on each bundled network tried, from cancer (4 vs 17 ms) to child (13 vs
# 18 ms) and andes. Tests set this to inf to compare with the plans alone.
LOCAL_MIN_FLOPS = 0
# A component is enumerated while its padded table times its factors is at most this, and
# summed out along the elimination tree above it (1,000 rows, 3-10 hidden: insurance, alarm,
# child, hailfinder and andes within noise of their best from 64 to 1,000; 4,000 is slower).
ENUMERATE_MAX_WORK = 256.0
# EM's expected counts come from the enumeration alone: there a component is enumerated while
# its cost is at most LOCAL_WORK times the universal plan's per row, and LOCAL_MAX_WORK (rows
# with a costlier one go through the contractions).
LOCAL_WORK = 0.3
LOCAL_MAX_WORK = 4000.0
# Working memory of the enumeration per (row, variable) cell (tracemalloc peak of answer_local,
# pigs, 441 variables, 3-10 hidden per row: 79 bytes at 5,000 rows, 77 at 20,000).
LOCAL_BYTES_PER_CELL = 80


@dataclass
class Batch:
    """Evidence for B rows: state indices (B, n), observed mask (B, n), soft likelihoods."""

    states: np.ndarray
    observed: np.ndarray
    soft: dict[int, torch.Tensor]  # variable index -> (B, k) likelihoods (already validated)

    @property
    def size(self) -> int:
        return int(self.states.shape[0])


@contextlib.contextmanager
def single_thread():
    """Small float64 contractions run fastest on one thread (and do not fight other work)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _threads(work: float):
    if work >= SMALL_WORK or torch.get_num_threads() == 1:
        yield
        return
    with single_thread():
        yield


@functools.lru_cache(maxsize=64)
def _columns(structure: Structure, device) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """Evidence vectors of all variables side by side: offsets, variable and state per column
    (cached per network and device: a fresh single query paid ~0.1 ms for it; read only)."""
    offsets = np.concatenate([[0], np.cumsum(structure.cards)]).astype(int)
    var_of = np.repeat(np.arange(len(structure.cards)), structure.cards)
    state_of = np.concatenate([np.arange(k) for k in structure.cards])
    return (offsets.tolist(), torch.as_tensor(var_of, device=device),
            torch.as_tensor(state_of, device=device))


def _lambdas(columns, states: torch.Tensor, observed: torch.Tensor,
             soft: torch.Tensor | None, dtype) -> torch.Tensor:
    """(B, sum of cards): one-hot where a variable is observed, ones where not, times soft."""
    _, var_of, state_of = columns
    hit = (states[:, var_of] == state_of).to(dtype)
    lam = torch.where(observed[:, var_of], hit, torch.ones_like(hit))
    return lam if soft is None else lam * soft


def _operands(plan: Plan, cpts: Sequence[torch.Tensor], states: torch.Tensor,
              lam_all: torch.Tensor, offsets: list[int], structure: Structure, log: bool):
    """Build the plan's operand tensors for a chunk of rows (lambda vectors folded into CPTs)."""
    batch = states.shape[0]
    tensors = []
    for t in (*plan.terms, *plan.scalars):
        x = cpts[t.var]
        if t.absorbed:
            axes = (t.var, *structure.parents[t.var])
            rest = [i for i in range(x.dim()) if i not in t.absorbed]
            x = x.permute(*t.absorbed, *rest)
            x = x[tuple(states[:, axes[i]] for i in t.absorbed)]
        if t.lam:
            k = structure.cards[t.var]
            lam = lam_all[:, offsets[t.var]:offsets[t.var] + k]
            shape = (batch, k) + (1,) * (x.dim() - 1 - (1 if t.absorbed else 0))
            if log:
                x = torch.log(x) + torch.log(lam).reshape(shape)
            else:
                x = x * lam.reshape(shape)
        elif log:
            x = torch.log(x)
        tensors.append(x)
    n = len(plan.terms)
    return tensors[:n], tensors[n:]


class CptList(list):
    """The CPT tensors of a network with the log of their smallest positive entry, cached."""

    def __init__(self, tensors) -> None:
        super().__init__(tensors)
        self.log_floor = _log_floor(self)
        self.arrays = ([t.detach().numpy() for t in self] if self and self[0].device.type == "cpu"
                       else None)


def _operands_numpy(plan: Plan, cpts: Sequence[np.ndarray], states: np.ndarray,
                    observed: np.ndarray, structure: Structure):
    """:func:`_operands` in numpy for a few rows with hard evidence only."""
    batch = states.shape[0]
    tensors = []
    for t in (*plan.terms, *plan.scalars):
        x = cpts[t.var]
        if t.absorbed:
            axes = (t.var, *structure.parents[t.var])
            rest = [i for i in range(x.ndim) if i not in t.absorbed]
            x = x.transpose(*t.absorbed, *rest)[tuple(states[:, axes[i]] for i in t.absorbed)]
        if t.lam:
            k = structure.cards[t.var]
            lam = np.ones((batch, k))
            seen = observed[:, t.var]
            lam[seen] = np.eye(k)[states[seen, t.var]]
            shape = (batch, k) + (1,) * (x.ndim - 1 - (1 if t.absorbed else 0))
            x = x * lam.reshape(shape)
        tensors.append(x)
    n = len(plan.terms)
    return tensors[:n], tensors[n:]


def _log_floor(cpts: Sequence[torch.Tensor]) -> float:
    """log of the smallest positive CPT entry: how fast products can shrink toward underflow."""
    flat = torch.cat([c.detach().reshape(-1) for c in cpts])
    positive = flat[flat > 0]
    return float(positive.min().log()) if positive.numel() else 0.0


def _chunks(plan: Plan, batch: int, itemsize: int, budget: float, grad: bool, maxprod: bool):
    per_row = max(plan.bytes_per_row(itemsize, grad=grad, maxprod=maxprod), 1)
    if per_row + plan.elems_fixed * itemsize > budget:
        need = (per_row + plan.elems_fixed * itemsize) / 2**30
        raise InferenceError(
            f"exact inference needs about {need:.2f} GiB for a single row, over the memory budget "
            f"of {budget / 2**30:.2f} GiB; raise bn.memory_budget or use method='sampling'")
    size = max(1, int((budget - plan.elems_fixed * itemsize) // per_row))
    return [(s, min(batch, s + size)) for s in range(0, batch, size)]


def run(structure: Structure, cpts: Sequence[torch.Tensor], batch: Batch, mode: str,
        targets: tuple[int, ...] = (), memory_budget: float = DEFAULT_MEMORY_BUDGET,
        optimize: str = "greedy", need_grad: bool = False):
    """Answer ``mode`` for every row of ``batch``.

    Modes: ``"logz"`` -> log P(e) (B,); ``"marginals"`` -> (log P(e), list over variables of
    (B, k) posteriors); ``"joint"`` -> (log P(e), (B, *k_targets) posterior table over
    ``targets``); ``"map"`` -> (log P(e), max log P(x, e) (B,), LongTensor (B, n) assignment).

    On CPU, marginals and log-likelihoods are answered first by :mod:`probdl.graph.local`
    (enumerating each row's small independent components, eliminating the larger ones along
    one tree; soft evidence multiplies in as a factor per variable); the compiled plans take
    the rows it hands back and everything else.
    """
    row_bytes = len(structure.cards) * LOCAL_BYTES_PER_CELL
    if (mode in ("marginals", "logz") and not targets and not need_grad
            and getattr(cpts, "arrays", None) is not None and memory_budget >= 2 * row_bytes
            and (LOCAL_MIN_FLOPS <= 0
                 or grouping.universal_flops(structure, "greedy") >= LOCAL_MIN_FLOPS)):
        soft, soft_log = soft_columns(structure.cards, batch.soft, batch.size)
        # half the budget for blocks of rows (components graph, padded tables), half for the
        # elimination's tables, which it splits into groups of rows itself
        step = max(1, int(memory_budget / 2 // row_bytes))
        parts = [answer_local(structure, cpts, batch.states[lo:lo + step],
                              batch.observed[lo:lo + step],
                              max_work=ENUMERATE_MAX_WORK,
                              posteriors=mode == "marginals", memory_budget=memory_budget / 2,
                              soft=None if soft is None else soft[lo:lo + step])
                 for lo in range(0, max(batch.size, 1), step)]
        done = np.concatenate([p[0] for p in parts])
        lz_local = np.concatenate([p[1] for p in parts]) + soft_log[done]
        post_local = np.concatenate([p[2] for p in parts])
        if done.any():
            return _merge_local(structure, cpts, batch, mode, memory_budget, optimize, done,
                                lz_local, post_local)
    return _run_plans(structure, cpts, batch, mode, targets, memory_budget, optimize, need_grad)


def _merge_local(structure, cpts, batch, mode, memory_budget, optimize, done, lz_local,
                 post_local):
    """Rows answered by enumeration, the rest by the plans, put back in row order."""
    ref = cpts[0]
    log_z = torch.empty(batch.size, dtype=ref.dtype)
    log_z[torch.from_numpy(done)] = torch.from_numpy(lz_local).to(ref.dtype)
    post = None
    if mode == "marginals":
        post = torch.empty(batch.size, post_local.shape[1], dtype=ref.dtype)
        post[torch.from_numpy(done)] = torch.from_numpy(post_local).to(ref.dtype)
    rest = ~done
    if rest.any():
        keep = torch.from_numpy(rest)
        sub = Batch(batch.states[rest], batch.observed[rest],
                    {v: lik[keep.to(lik.device)] for v, lik in batch.soft.items()})
        answer = _run_plans(structure, cpts, sub, mode, (), memory_budget, optimize, False)
        if mode == "marginals":
            log_z[torch.from_numpy(rest)] = answer[0].cpu()
            post[torch.from_numpy(rest)] = torch.cat([p.cpu() for p in answer[1]], 1)
        else:
            log_z[torch.from_numpy(rest)] = answer.cpu()
    if mode == "logz":
        return log_z
    offsets = _columns(structure, "cpu")[0]
    return log_z, [post[:, offsets[v]:offsets[v + 1]] for v in range(len(structure.cards))]


def _run_plans(structure: Structure, cpts: Sequence[torch.Tensor], batch: Batch, mode: str,
               targets: tuple[int, ...], memory_budget: float, optimize: str, need_grad: bool):
    """:func:`run` through compiled plans only."""
    ref = cpts[0]
    device, dtype = ref.device, ref.dtype
    n_rows, n = batch.states.shape
    soft_vars = set(batch.soft)
    # soft likelihoods are scaled to a maximum of 1 per row; the scale is added back to log Z
    soft_max = {v: s.amax(1, keepdim=True) for v, s in batch.soft.items()}
    soft_offset = sum((m[:, 0].log() for m in soft_max.values()),
                      torch.zeros(n_rows, dtype=ref.dtype, device=ref.device))
    batch = Batch(batch.states, batch.observed,
                  {v: s / soft_max[v] for v, s in batch.soft.items()})
    log_z = torch.empty(n_rows, dtype=dtype, device=device)
    columns = _columns(structure, device)
    offsets = columns[0]
    out_marg = (torch.empty(n_rows, offsets[-1], dtype=dtype, device=device)
                if mode == "marginals" else None)
    soft_all = None
    if batch.soft:
        soft_all = torch.ones(n_rows, offsets[-1], dtype=dtype, device=device)
        for v, lik in batch.soft.items():
            soft_all[:, offsets[v]:offsets[v + 1]] = lik
    out_table = (torch.empty(n_rows, *[structure.cards[t] for t in targets], dtype=dtype,
                             device=device) if mode == "joint" else None)
    out_best = torch.empty(n_rows, dtype=dtype, device=device) if mode == "map" else None
    out_assign = (torch.as_tensor(batch.states, device=device).clone()
                  if mode == "map" else None)
    pieces = []
    keys = grouping.key_variables(structure)
    for pattern, rows in grouping.groups(batch.observed, keys):
        observed_any = batch.observed[rows].any(0)
        relevant, absorbed, lambdas = grouping.layout(structure, "logz" if mode == "map" else mode,
                                              observed_any, pattern, soft_vars,
                                              targets)
        output = targets if mode == "joint" else ()
        # the universal plan serves every later batch of this network: search its path harder
        how = "thorough" if pattern is None and optimize == "greedy" else optimize
        if how == "greedy" and len(rows) <= NUMPY_ROWS:
            # a plan for a few rows: compiling it dominates, and the network's fixed
            # elimination order needs no path search (its paths cost more, but tiny ones)
            how = "static"
        plan = compile_plan(structure, relevant, absorbed, lambdas, output, how)
        map_plan = None
        if mode == "map":
            m_rel, m_abs, m_lam = grouping.layout(structure, "map", observed_any, pattern,
                                                  soft_vars, ())
            map_plan = compile_plan(structure, m_rel, m_abs, m_lam, (), how)
        grad = mode == "marginals" or need_grad
        for lo, hi in _chunks(map_plan or plan, len(rows), ref.element_size(),
                              memory_budget, grad, map_plan is not None):
            idx = rows[lo:hi]
            pieces.append((plan, map_plan, idx))
    floor = getattr(cpts, "log_floor", None)
    if floor is None or batch.soft:
        floor = _log_floor([*cpts, *batch.soft.values()])
    for plan, map_plan, idx in pieces:
        b = len(idx)
        states = torch.as_tensor(batch.states[idx], device=device)
        observed = torch.as_tensor(batch.observed[idx], device=device)
        index = torch.as_tensor(idx, device=device)
        soft = None if soft_all is None else soft_all[index]
        with _threads(plan.flops_per_row * b):
            if mode == "marginals":
                lam_all = _lambdas(columns, states, observed, soft, dtype)
                with torch.enable_grad():
                    lam_all.requires_grad_(True)
                    ops, scal = _operands(plan, cpts, states, lam_all, offsets, structure,
                                          log=False)
                    lz, _ = sum_product(plan, ops, scal, b, ref, floor)
                    finite = torch.isfinite(lz)
                    total = torch.where(finite, lz, 0).sum()
                    grad = (torch.autograd.grad(total, [lam_all])[0] if total.requires_grad
                            else torch.zeros_like(lam_all))
                lam_all = lam_all.detach()
                log_z[index] = lz.detach()
                post = lam_all * grad
                in_plan = torch.zeros(len(structure.cards), dtype=torch.bool, device=device)
                in_plan[list(t.var for t in plan.terms if t.lam)] = True
                # variables absorbed (or left out) keep their evidence vector: one-hot
                post = torch.where(in_plan[columns[1]], post, lam_all)
                norm = torch.zeros(b, len(structure.cards), dtype=dtype, device=device)
                norm.index_add_(1, columns[1], post)
                norm = norm[:, columns[1]]
                out_marg[index] = post / torch.where(norm > 0, norm, torch.ones_like(norm))
            elif (b <= NUMPY_ROWS and not need_grad and soft is None and mode != "map"
                  and device.type == "cpu"):
                np_cpts = getattr(cpts, "arrays", None) or [c.detach().numpy() for c in cpts]
                ops, scal = _operands_numpy(plan, np_cpts, batch.states[idx],
                                            batch.observed[idx], structure)
                lz, table = sum_product_numpy(plan, ops, scal, b, floor)
                log_z[index] = torch.from_numpy(lz).to(dtype)
                if mode == "joint":
                    out_table[index] = torch.from_numpy(np.ascontiguousarray(table)).to(dtype)
            else:
                lam_all = _lambdas(columns, states, observed, soft, dtype)
                ops, scal = _operands(plan, cpts, states, lam_all, offsets, structure, log=False)
                lz, table = sum_product(plan, ops, scal, b, ref, floor)
                log_z[index] = lz if need_grad else lz.detach()
                if mode == "joint":
                    out_table[index] = table
                if mode == "map":
                    with torch.no_grad():
                        mops, mscal = _operands(map_plan, cpts, states, lam_all, offsets,
                                                structure, log=True)
                        best, assign = max_product(map_plan, mops, mscal, b, structure.cards, ref)
                    out_best[index] = best
                    for v, a in assign.items():
                        out_assign[index, v] = a
    log_z = log_z + soft_offset
    if mode == "logz":
        return log_z
    if mode == "marginals":
        return log_z, [out_marg[:, offsets[v]:offsets[v + 1]] for v in range(n)]
    if mode == "joint":
        return log_z, out_table
    return log_z, out_best, out_assign


def log_evidence(bn, states, missing, cpts: Sequence[torch.Tensor] | Mapping[str, torch.Tensor]
                 | None = None, soft_evidence: Mapping[str, object] | None = None,
                 memory_budget: float | None = None) -> torch.Tensor:
    """log P(observed part) of every row, differentiable with respect to the CPT tensors.

    Parameters
    ----------
    bn : BayesNet
        Gives the structure (variables, states, parents); its own CPTs are used when ``cpts``
        is None.
    states : array-like of int, shape (B, n)
        State index of each variable, columns in ``bn.variables`` order; ignored where missing.
    missing : array-like of bool, shape (B, n)
        True where the cell is unobserved.
    cpts : sequence (in ``bn.variables`` order) or dict name -> torch.Tensor, optional
        CPT tensors of shape ``bn.cpd(v).shape``, possibly with ``requires_grad=True``; their
        dtype and device are used throughout.
    soft_evidence : dict name -> likelihood array (k,) or (B, k), optional
    memory_budget : bytes, optional (default ``bn.memory_budget``)

    Returns
    -------
    torch.Tensor (B,): ``-inf`` for a row whose evidence has probability zero under ``cpts``.
    """
    if cpts is None:
        cpts = bn._torch_cpts(torch.device("cpu"), torch.float64)
    elif isinstance(cpts, Mapping):
        cpts = [cpts[v] for v in bn.variables]
    cpts = list(cpts)
    states = np.asarray(states, dtype=np.int64)
    observed = ~np.asarray(missing, dtype=bool)
    if states.ndim != 2 or states.shape[1] != len(bn.variables) or observed.shape != states.shape:
        raise InferenceError(
            f"states and missing must both have shape (rows, {len(bn.variables)}) with columns "
            f"in bn.variables order; got {states.shape} and {observed.shape}")
    states = np.where(observed, states, 0)
    soft = bn._soft_tensors(soft_evidence, states.shape[0], cpts[0].dtype, cpts[0].device)
    batch = Batch(states, observed, soft)
    budget = bn.memory_budget if memory_budget is None else memory_budget
    return run(bn._structure, cpts, batch, "logz", memory_budget=budget, need_grad=True)
