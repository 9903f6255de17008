"""Contraction plans: a network's CPTs as one einsum whose path is found once, replayed batched.

    from probdl.graph.plan import Structure, compile_plan
    s = Structure(cards=(2, 2), parents=((), (0,)))
    plan = compile_plan(s, relevant=(0, 1), absorbed=(1,), lambdas=(0,), output=())
    plan.steps, plan.bytes_per_row(8)

A plan is built from *terms*: the CPT of every relevant variable, with the axes fixed by hard
evidence gathered away per row, and multiplied by an evidence/indicator vector ``lambda_v`` of
shape (B, k_v) for every variable whose posterior is wanted, whose evidence is soft, or whose hard
evidence differs between the rows sharing the plan (either makes the term batched). The
contraction path is searched by ``opt_einsum`` on the *unbatched* equation (searching the batched
one produces enormous intermediates) and then replayed step by step with a batch index added to
every term that carries one. Plans depend only on the network's structure, so they are cached
per structure and request.
"""

from __future__ import annotations

import collections
import functools
import math
import string
from dataclasses import dataclass

import opt_einsum as oe

__all__ = ["Plan", "Step", "Structure", "Term", "compile_plan"]

_LETTERS = string.ascii_letters  # torch.einsum accepts only these 52 symbols
_BATCH = "Z"


@dataclass(frozen=True)
class Structure:
    """Shape of a network: state counts and parent indices of each variable (topological order)."""

    cards: tuple[int, ...]
    parents: tuple[tuple[int, ...], ...]

    @functools.cached_property
    def children(self) -> tuple[tuple[int, ...], ...]:
        kids: list[list[int]] = [[] for _ in self.cards]
        for v, ps in enumerate(self.parents):
            for p in ps:
                kids[p].append(v)
        return tuple(tuple(k) for k in kids)

    def ancestors(self, variables) -> tuple[int, ...]:
        """The given variables and all their ancestors, sorted (topological order)."""
        seen = set()
        stack = list(variables)
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            stack.extend(self.parents[v])
        return tuple(sorted(seen))


@dataclass(frozen=True)
class Term:
    """One operand: the CPT of ``var``, times its evidence vector lambda_var when ``lam``."""

    var: int
    lam: bool  # multiplied by lambda_var (B, k) along axis 0
    absorbed: tuple[int, ...]  # CPT axis positions fixed by hard evidence
    free: tuple[int, ...]  # variables of the remaining axes, in tensor order

    @property
    def batched(self) -> bool:
        return self.lam or bool(self.absorbed)


@dataclass(frozen=True)
class Step:
    """One pairwise (or unary) contraction of the replayed path."""

    operands: tuple[int, ...]  # positions popped from the working list, in this order
    inputs: tuple[tuple[int, ...], ...]  # variables of each popped operand
    batched_in: tuple[bool, ...]
    out: tuple[int, ...]  # variables kept
    eliminated: tuple[int, ...]  # variables summed (or maxed) out here
    batched: bool
    equation: str  # torch.einsum equation with local letters, batch letter "Z"


@dataclass(frozen=True)
class Plan:
    """A compiled contraction: terms, replay steps and the size of its intermediates."""

    terms: tuple[Term, ...]  # operands of the path (terms with free axes)
    scalars: tuple[Term, ...]  # fully absorbed CPTs: one number per row, multiplied at the end
    steps: tuple[Step, ...]
    output: tuple[int, ...]
    final_vars: tuple[int, ...]  # variables of the last intermediate, before permuting to output
    final_batched: bool
    elems_per_row: int  # batched intermediate elements per row (kept for the backward pass)
    elems_fixed: int  # unbatched intermediate elements
    union_per_row: int  # largest broadcast product of one step (max-product needs it)
    flops_per_row: float

    def bytes_per_row(self, itemsize: int, grad: bool = False, maxprod: bool = False) -> int:
        """Estimated memory of one row of a batch (intermediates, gradients, broadcasts)."""
        per = self.elems_per_row * itemsize * (2 if grad else 1)
        if maxprod:
            per += self.union_per_row * itemsize * 2 + self.elems_per_row * 8
        return int(per)


def _local_equation(inputs, batched_in, out, batched) -> str:
    letters: dict[int, str] = {}
    for vars_ in inputs:
        for u in vars_:
            if u not in letters:
                letters[u] = _LETTERS[len(letters)]
    if len(letters) > len(_LETTERS) - 1:
        raise ValueError("a contraction step has more than 51 indices")
    parts = [(_BATCH if b else "") + "".join(letters[u] for u in vars_)
             for vars_, b in zip(inputs, batched_in, strict=True)]
    rhs = (_BATCH if batched else "") + "".join(letters[u] for u in out)
    return ",".join(parts) + "->" + rhs


@functools.lru_cache(maxsize=64)
def elimination_order(structure: Structure) -> tuple[int, ...]:
    """One elimination order for the whole network: greedy min-weight on the moral graph.

    Found once per network; a plan compiled with ``optimize="static"`` eliminates its
    variables in this order instead of searching a path, which is most of a fresh single
    query's compile time. Pruning and absorbed evidence only remove variables and edges, so
    the order stays reasonable for every evidence pattern.
    """
    n = len(structure.cards)
    neighbours = [set() for _ in range(n)]
    for v, ps in enumerate(structure.parents):
        family = (v, *ps)
        for a in family:
            neighbours[a].update(u for u in family if u != a)
    left = set(range(n))
    order = []
    while left:
        v = min(left, key=lambda u: (math.prod(structure.cards[w] for w in neighbours[u])
                                     * structure.cards[u], u))
        for a in neighbours[v]:
            neighbours[a].update(neighbours[v] - {a})
            neighbours[a].discard(v)
        left.discard(v)
        order.append(v)
    return tuple(order)


def _static_path(inputs: list[frozenset], output: frozenset, order: tuple[int, ...]
                 ) -> list[tuple[int, ...]]:
    """A linear contraction path that sums variables out in the given order.

    For each variable, the operands holding it are contracted pairwise; as in
    :func:`compile_plan`, a step's result drops every variable no other operand holds (and not
    wanted as output). Leftovers are multiplied at the end.
    """
    work = [frozenset(t) for t in inputs]
    path: list[tuple[int, ...]] = []

    def step(*positions: int) -> None:
        union = frozenset().union(*(work[i] for i in positions))
        for i in sorted(positions, reverse=True):
            work.pop(i)
        kept = output.union(*work)
        work.append(union & kept)
        path.append(positions)

    for v in order:
        holders = [i for i, t in enumerate(work) if v in t]
        if v in output or not holders:
            continue
        if len(holders) == 1:
            step(holders[0])
        while len(holders) > 1:
            step(holders[0], holders[1])
            holders = [i for i, t in enumerate(work) if v in t]
    while len(work) > 1:
        step(len(work) - 2, len(work) - 1)
    return path


def _optimizer(optimize: str, n_terms: int):
    """An opt_einsum path function; ``"thorough"`` searches harder, for plans many batches reuse."""
    if optimize == "thorough":
        if n_terms > 24:
            return oe.RandomGreedy(max_repeats=32)  # trial r is seeded with r: deterministic
        optimize = "auto-hq"
    return oe.paths.get_path_fn(optimize)


@functools.lru_cache(maxsize=4096)
def compile_plan(structure: Structure, relevant: tuple[int, ...], absorbed: tuple[int, ...],
                 lambdas: tuple[int, ...], output: tuple[int, ...],
                 optimize: str = "auto") -> Plan:
    """Build (and cache) the contraction of the relevant CPTs with the given evidence layout.

    Parameters
    ----------
    structure : the network's shape.
    relevant : variables whose CPT enters (barren variables already pruned).
    absorbed : hard-evidence variables whose CPT axes are gathered per row.
    lambdas : variables that get an evidence/indicator vector (B, k).
    output : variables left uncontracted (besides the batch index), in this order.
    optimize : ``opt_einsum`` path strategy, searched on the unbatched equation, or
        ``"thorough"`` (optimal for small plans, 32 randomized greedy trials for large ones).
    """
    absorbed_set, lambda_set = set(absorbed), set(lambdas)
    if not lambda_set <= set(relevant) or lambda_set & absorbed_set:
        raise ValueError("every lambda variable must be relevant and not absorbed")
    terms: list[Term] = []
    scalars: list[Term] = []
    for v in relevant:
        axes = (v, *structure.parents[v])
        ab = tuple(i for i, u in enumerate(axes) if u in absorbed_set)
        free = tuple(u for u in axes if u not in absorbed_set)
        (terms if free else scalars).append(Term(v, v in lambda_set, ab, free))
    cards = structure.cards
    if not terms:
        return Plan((), tuple(scalars), (), output, (), False, 0, 0, 0, 0.0)
    if len(terms) == 1:
        path = [(0,)]
    else:
        # opt_einsum's path functions take index sets directly (variables as indices), which
        # skips contract_path's equation parsing and cost report: most of a small plan's compile
        sets = [frozenset(t.free) for t in terms]
        size = {u: cards[u] for t in terms for u in t.free}
        if optimize == "static":
            path = _static_path(sets, frozenset(output), elimination_order(structure))
        else:
            path = _optimizer(optimize, len(terms))(sets, frozenset(output), size)
    work: list[tuple[tuple[int, ...], bool]] = [(t.free, t.batched) for t in terms]
    # how many working operands hold each variable: a step keeps the variables still held
    # elsewhere (or wanted as output), without rescanning every operand at every step
    holders = collections.Counter(u for vars_, _ in work for u in vars_)
    wanted = set(output)
    steps: list[Step] = []
    per_row = fixed = union_max = 0
    flops = 0.0
    for contraction in path:
        positions = tuple(sorted(contraction, reverse=True))
        ops = [work.pop(i) for i in positions]
        union: list[int] = []
        for vars_, _ in ops:
            holders.subtract(vars_)
            union.extend(u for u in vars_ if u not in union)
        out = tuple(u for u in union if holders[u] > 0 or u in wanted)
        eliminated = tuple(u for u in union if not (holders[u] > 0 or u in wanted))
        holders.update(out)
        batched = any(b for _, b in ops)
        inputs = tuple(vars_ for vars_, _ in ops)
        batched_in = tuple(b for _, b in ops)
        steps.append(Step(positions, inputs, batched_in, out, eliminated, batched,
                          _local_equation(inputs, batched_in, out, batched)))
        size = math.prod(cards[u] for u in out)
        usize = math.prod(cards[u] for u in union)
        if batched:
            per_row += size
            union_max = max(union_max, usize)
            flops += usize
        else:
            fixed += size
        work.append((out, batched))
    final_vars, final_batched = work[0]
    return Plan(tuple(terms), tuple(scalars), tuple(steps), output, final_vars, final_batched,
                per_row, fixed, union_max, flops)
