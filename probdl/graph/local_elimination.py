"""Batched variable elimination for the rows whose hidden components are too large to enumerate.

    import numpy as np, torch
    from probdl.graph import BayesNet
    from probdl.graph.local_elimination import eliminate
    from probdl.graph.local_tables import tables_for
    bn = BayesNet.example("insurance")
    rows = bn.sample(100, seed=0)
    rows.iloc[:, :9] = np.nan  # nine linked variables hidden in every row
    states, observed = bn._encode(rows)
    cpts = bn._torch_cpts(torch.device("cpu"), torch.float64)
    tables = tables_for(bn._structure, cpts, max_work=1e4)
    done, log_z, post = eliminate(tables, bn._structure, states, ~observed)

Enumerating a component costs the product of its variables' state counts, which for ten linked
variables is 10^4-10^5 entries per row, while eliminating them one at a time costs a few hundred.
Rows hide different variables, so no single contraction plan fits them all; instead every row
follows the same elimination tree, built once per network from one elimination order of the
whole network (:func:`~probdl.graph.plan.elimination_order`): step v sums v out of the clique
C_v (v and its neighbours when it is eliminated) and sends a message to the step of the first
of them eliminated next. For one row with hidden set H, step v only needs the table over
C_v ∩ H (observed variables are fixed to the row's states), and its message is over
(C_v minus v) ∩ H, so each step of each row costs the product of the state counts of the hidden
variables of its clique, which is tiny when the row observes most of it. Which of C_v's members
are hidden (the step's *pattern*) fixes every gather the step needs, so index tables are built
once per pattern and shared by all rows that show it; a step with nothing of its own and one
child only relays that child's message, and rows skip it.

An upward pass gives log P(e) (each message is rescaled to a maximum of 1 and its scale
accumulated); a downward pass (Shafer-Shenoy: each child gets the product of everything else at
its parent, no division) gives every hidden variable's posterior at its own step. Both are
compiled loops over every row's steps (:mod:`probdl.graph.kernels`), children before parents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import local_tables
from .local_tables import MAX_TABLE, KeyIndex, Tables, concat, flat_gathers, starts
from .plan import Structure, elimination_order

__all__ = ["EliminationTree", "eliminate"]



@dataclass
class _Pattern:
    """Step v with a given set of hidden clique members: the gathers it needs, for any row."""

    variable: int
    hidden_v: bool
    size: int  # entries of the step's table: (card of v if hidden) * (message size)
    message: int  # entries of the message: product of the cards of the other hidden members
    factor_offsets: np.ndarray  # (F, size) flat CPT index of each factor, minus its base
    observed_vars: list[np.ndarray]  # per factor: the observed members of its family
    observed_strides: list[np.ndarray]  # and their strides: base = sum of state * stride
    kids: np.ndarray  # (K,) children in the tree whose message is not a constant
    kid_offsets: np.ndarray  # (K, size) index into each child's message
    kid_sizes: np.ndarray  # (K,)


class EliminationTree:
    """One network's elimination tree and the step patterns seen so far (cached on ``Tables``)."""

    def __init__(self, tables: Tables, structure: Structure) -> None:
        n = len(structure.cards)
        self.tables = tables
        order = elimination_order(structure)
        position = np.empty(n, dtype=np.int64)
        position[list(order)] = np.arange(n)
        neighbours = [set() for _ in range(n)]
        for a, b in tables.edges:
            neighbours[a].add(int(b))
            neighbours[b].add(int(a))
        self.members: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * n  # v first, then sorted
        self.parent = np.full(n, -1, dtype=np.int64)
        for v in order:
            rest = sorted(neighbours[v])
            self.members[v] = np.array([v, *rest], dtype=np.int64)
            if rest:
                self.parent[v] = min(rest, key=lambda u: position[u])
            for a in rest:
                neighbours[a].update(u for u in rest if u != a)
                neighbours[a].discard(v)
        self.children: list[list[int]] = [[] for _ in range(n)]
        self.height = np.zeros(n, dtype=np.int64)
        for v in order:  # children are eliminated before their parent
            if self.parent[v] >= 0:
                self.children[self.parent[v]].append(v)
                self.height[self.parent[v]] = max(self.height[self.parent[v]], self.height[v] + 1)
        # each family is multiplied in at the step of its first member eliminated
        self.assigned: list[list[int]] = [[] for _ in range(n)]
        for f in range(n):
            scope = list(tables.strides[f])
            self.assigned[min(scope, key=lambda u: position[u])].append(f)
        # (n, widest clique) members padded with n (a column that is never hidden); member i
        # is bit i of a pattern's key
        width = max(len(m) for m in self.members)
        self.padded = np.full((n, width), n, dtype=np.int64)
        for v, m in enumerate(self.members):
            self.padded[v, :len(m)] = m
        self.too_wide = width >= 63  # a pattern key is one bit per clique member, in an int64
        self.where: dict[tuple[int, int], tuple[int, int, int]] = {}
        self.known = KeyIndex(3)  # the same, keyed by one integer (step << width | pattern)
        self.patterns: list[_Pattern] = []
        self._flat: dict[str, np.ndarray] | None = None
        self.levels = [np.flatnonzero(self.height == h) for h in range(int(self.height.max()) + 1)]

    def locate(self, v: int, key: int) -> tuple[int, int, int]:
        """(id, message size, relayed child) of step v's pattern ``key`` (bit i: member i
        hidden); id -1 when its table would exceed ``MAX_TABLE``; the child is -1 unless the
        step only passes that child's message on."""
        hit = self.where.get((v, key))
        if hit is None:
            pattern = self._pattern(v, key)
            if pattern is None:
                hit = (-1, 0, -1)
            else:
                # a step with nothing of its own and one child whose message has its scope
                # just passes that message on: rows reuse the child's message instead
                relay = (not pattern.hidden_v and not pattern.factor_offsets.shape[0]
                         and pattern.kids.size == 1 and pattern.kid_sizes[0] == pattern.message)
                self.patterns.append(pattern)
                self._flat = None
                hit = (len(self.patterns) - 1, pattern.message,
                       int(pattern.kids[0]) if relay else -1)
            self.where[(v, key)] = hit
        return hit

    def flat(self) -> dict[str, np.ndarray]:
        """Every pattern's gathers end to end, as the compiled loops read them: per pattern
        ``p_*`` (and ``p_fstart``/``p_kstart`` into the per-factor and per-child arrays), per
        factor ``f_*`` (offsets from ``f_offstart``, observed members from ``f_ostart``), per
        child ``k_*`` (offsets from ``k_offstart``)."""
        if self._flat is None:
            ps = self.patterns
            kids = [k for p in ps for k in p.kid_offsets]
            self._flat = {
                "p_size": np.array([p.size for p in ps], dtype=np.int64),
                "p_msg": np.array([p.message for p in ps], dtype=np.int64),
                "p_hidden": np.array([p.hidden_v for p in ps]),
                "p_fstart": starts([p.factor_offsets.shape[0] for p in ps]),
                **flat_gathers([p.factor_offsets for p in ps], [p.observed_vars for p in ps],
                               [p.observed_strides for p in ps]),
                "p_kstart": starts([p.kids.size for p in ps]),
                "k_var": concat([p.kids for p in ps]),
                "k_size": concat([p.kid_sizes for p in ps]),
                "k_offstart": starts([k.size for k in kids]),
                "k_offsets": concat(kids),
            }
        return self._flat

    def _pattern(self, v: int, key: int) -> _Pattern | None:
        t = self.tables
        members = self.members[v]
        hidden = [int(u) for i, u in enumerate(members) if key >> i & 1]
        hidden_v = bool(key & 1)
        rest = [u for u in hidden if u != v]
        axes = ([v] if hidden_v else []) + rest
        shape = [int(t.cards[u]) for u in axes]
        size = math.prod(shape)
        if size > MAX_TABLE:
            return None
        joint = np.indices(shape).reshape(len(axes), -1)
        state_of = dict(zip(axes, joint, strict=True))
        offsets, obs_vars, obs_strides = t.gathers(self.assigned[v], state_of, size)
        kids, kid_offsets, kid_sizes = [], [], []
        for u in self.children[v]:
            scope = [w for w in self.members[u][1:] if int(w) in state_of]  # sorted
            if not scope:
                continue
            index = np.zeros(size, dtype=np.int64)
            for w in scope:
                index = index * t.cards[w] + state_of[int(w)]
            kids.append(u)
            kid_offsets.append(index)
            kid_sizes.append(math.prod(int(t.cards[w]) for w in scope))
        return _Pattern(
            variable=v, hidden_v=hidden_v, size=size, message=math.prod(shape[hidden_v:]),
            factor_offsets=offsets,
            observed_vars=obs_vars, observed_strides=obs_strides,
            kids=np.array(kids, dtype=np.int64),
            kid_offsets=np.array(kid_offsets, dtype=np.int64).reshape(-1, size),
            kid_sizes=np.array(kid_sizes, dtype=np.int64))


def tree_for(tables: Tables, structure: Structure) -> EliminationTree:
    tree = getattr(tables, "elimination_tree", None)
    if tree is None:
        tree = tables.elimination_tree = EliminationTree(tables, structure)
    return tree




def eliminate(tables: Tables, structure: Structure, states: np.ndarray, hidden: np.ndarray,
              posteriors: bool = True, memory_budget: float = float("inf"),
              soft: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum out each row's ``hidden`` variables along the elimination tree.

    Parameters
    ----------
    tables : the network's flattened CPTs (:func:`~probdl.graph.local_tables.tables_for`).
    states : (B, n) the rows' states (read where ``hidden`` is False).
    hidden : (B, n) bool, the variables to sum out. Families with no hidden member are left
        out (the caller counts them), so ``hidden`` may be any union of components.
    posteriors : False skips the downward pass.
    memory_budget : bytes for the tables and messages of one call; more rows are split into
        calls that fit, and a row needing over half of it alone is handed back.
    soft : (B, sum of cards), optional: likelihoods of the hidden variables' states, multiplied
        in at each variable's own step.

    Returns
    -------
    done : (B,) bool. False for rows handed back: a step table over ``MAX_TABLE`` entries or
        over the memory budget, or a table close to underflow or exactly zero (impossible
        evidence), which the compiled plans slice, rescale or report.
    log_z : (B,) log of the sum over the hidden variables of the product of every family that
        has one, at the row's observed states.
    post : (B, sum of cards) the hidden variables' posteriors in their columns, 0 elsewhere.
    """
    tree = tree_for(tables, structure)
    b = hidden.shape[0]
    post = np.zeros((b, int(tables.columns[-1]) if posteriors else 0))
    done = np.ones(b, dtype=bool)
    log_z = np.zeros(b)
    if tree.too_wide:  # a clique of over 62 variables: keys would not fit; leave the rows
        return ~done, log_z, post
    units = _layout(tree, hidden, done)
    if units is None:
        return done, log_z, post
    from .kernels import downward, upward  # numba: imported (and compiled) on use

    case, var, pid, start, total = units
    f = tree.flat()
    need = 8 * np.bincount(case, f["p_size"][pid] + 2 * f["p_msg"][pid], minlength=b)
    if need.sum() > memory_budget:
        return _in_groups(tables, structure, states, hidden, posteriors, memory_budget, need, soft)
    states = np.ascontiguousarray(states, dtype=np.int64)
    order = np.argsort(tree.height[var], kind="stable")
    saved_start = np.concatenate([[0], np.cumsum(f["p_size"][pid])])
    saved = np.empty(int(saved_start[-1]))
    up, down = np.empty(total), np.empty(total)  # every message is written before it is read
    failed = ~done
    soft = np.ones((0, 1)) if soft is None else np.ascontiguousarray(soft, dtype=np.float64)
    upward(order, case, var, pid, states, start, up, saved_start, saved, tables.flat_prob,
           f["p_fstart"], f["f_offstart"], f["f_offsets"], f["f_ostart"], f["o_var"],
           f["o_stride"], f["p_size"], f["p_msg"], f["p_hidden"], f["p_kstart"], f["k_var"],
           f["k_offstart"], f["k_offsets"], tables.columns, soft, log_z, failed)
    if posteriors:
        downward(order, case, var, pid, start, up, down, saved_start, saved, f["p_size"],
                 f["p_msg"], f["p_hidden"], f["p_kstart"], f["k_var"], f["k_size"],
                 f["k_offstart"], f["k_offsets"], tables.columns, post, failed)
    return ~failed, log_z, post


def _in_groups(tables: Tables, structure: Structure, states: np.ndarray, hidden: np.ndarray,
               posteriors: bool, memory_budget: float, need: np.ndarray,
               soft: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`eliminate` over groups of rows that each fit the budget (rows needing over half
    of it alone are handed back, so a group never exceeds it)."""
    b = hidden.shape[0]
    done = np.zeros(b, dtype=bool)
    log_z = np.zeros(b)
    post = np.zeros((b, int(tables.columns[-1]) if posteriors else 0))
    fits = np.flatnonzero(need <= memory_budget / 2)
    group = np.cumsum(need[fits]) // (memory_budget / 2)
    for g in np.unique(group):
        rows = fits[group == g]
        done[rows], log_z[rows], post[rows] = eliminate(
            tables, structure, states[rows], hidden[rows], posteriors, memory_budget,
            None if soft is None else soft[rows])
    return done, log_z, post


def _layout(tree: EliminationTree, hidden: np.ndarray, done: np.ndarray):
    """Every (row, step) unit with a hidden clique member that computes something: its row,
    step and pattern id, and where each step's message lives in the flat buffer (a relaying
    step points at its child's); rows with an oversized step get ``done`` False and no units.
    None when no unit is left."""
    b, n = hidden.shape
    width = tree.padded.shape[1]
    extended = np.concatenate([hidden, np.zeros((b, 1), dtype=bool)], axis=1)
    keys = np.zeros((b, n), dtype=np.int64)
    for i in range(width):
        keys |= extended[:, tree.padded[:, i]].astype(np.int64) << i
    case, var = np.nonzero(keys)
    if not case.size:
        return None
    key = keys[case, var]
    # one integer per (step, pattern) when it fits: all looked up at once; else pair by pair
    if width + int(n).bit_length() < local_tables.INT_KEY_BITS:
        distinct, inverse = np.unique(var << width | key, return_inverse=True)
        mask = (1 << width) - 1
        located = tree.known.lookup(distinct, lambda k: tree.locate(k >> width, k & mask))
    else:
        distinct, inverse = np.unique(np.stack([var, key], 1), axis=0, return_inverse=True)
        located = np.array([tree.locate(v, k) for v, k in distinct.tolist()],
                           dtype=np.int64).reshape(-1, 3)
    located = located[inverse.reshape(-1)]
    pid, message, relayed = located.T
    if (pid < 0).any():
        done[case[pid < 0]] = False
    live = done[case]
    computed = live & (relayed < 0)
    start = np.zeros((b, n + 1), dtype=np.int64)
    sizes = message[computed]
    start[case[computed], var[computed]] = np.cumsum(sizes) - sizes
    # a relaying step's message is its child's: point the step at the child's place (lowest
    # steps first, as a child may relay in turn)
    relay = np.flatnonzero(live & (relayed >= 0))
    for h in np.unique(tree.height[var[relay]]):
        at = relay[tree.height[var[relay]] == h]
        start[case[at], var[at]] = start[case[at], relayed[at]]
    if not computed.any():
        return None
    return case[computed], var[computed], pid[computed], start, int(sizes.sum())
