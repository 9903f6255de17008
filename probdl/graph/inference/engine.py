"""The engine: a network compiled once into a junction tree, every row answered by one schedule.

    import numpy as np
    from probdl.graph import BayesNet
    bn = BayesNet.example("alarm")
    engine = bn.engine()                                # compiled once, cached on the network
    states, observed = bn.encode(bn.sample(4, seed=0))  # (4, n) codes and observed mask
    observed[:, :5] = False                             # hide five variables
    out = engine.run(states, ~observed, want="post")    # log P(e) (4,) and posteriors (4, cols)
    best, assign = engine.map(states, ~observed)        # max log P(x, e) and the MAP states

Hard evidence fixes a variable's state (its clique tables shrink to the consistent entries),
soft evidence is a likelihood vector multiplied in at the variable's home clique, so rows of
any evidence pattern run the same compiled passes (:mod:`.kernels`) and nothing is compiled
per pattern. Rows whose products come near float64's underflow run again in logarithms.
Expected family counts for EM are sum_r w_r P(family = i | row r), read from the calibrated
cliques where each CPT is multiplied.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ...errors import InferenceError
from . import kernels
from .junction import JunctionTree, build
from .reduced import REDUCE_PER_VARIABLE, split_run, split_walk

__all__ = ["DEFAULT_MEMORY_BUDGET", "Engine"]

DEFAULT_MEMORY_BUDGET = 2 * 1024**3
# Cliques whose CPTs are multiplied once at compile time (one read per table entry instead of
# one per CPT): the smallest first, each up to POTENTIAL_MAX entries and all of them up to
# POTENTIALS_TOTAL (8 bytes each, twice: probabilities and logarithms).
POTENTIAL_MAX = 2**21
POTENTIALS_TOTAL = 2**23
# A compiled potential entry below this while its factors are not zero has lost digits: that
# clique multiplies its CPTs per row instead, where underflow is caught row by row.
_FLOOR = kernels.FLOOR
_WANT = {"logz": 0, "post": 1, "counts": 1}


def _starts(counts: Sequence[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)


def _ints(values) -> np.ndarray:
    return np.asarray(list(values), dtype=np.int64).reshape(-1)


class _Arrays:
    """The junction tree laid out flat for the compiled passes (depends on structure only)."""

    def __init__(self, tree: JunctionTree, cards: Sequence[int],
                 parents: Sequence[Sequence[int]], fixed: dict[int, int] | None = None,
                 potentials: bool = True) -> None:
        cliques, parent = tree.cliques, tree.parent
        m = len(cliques)
        self.cl_start = _starts([len(c) for c in cliques])
        self.cl_var = _ints(u for c in cliques for u in c)
        self.cl_parent = _ints(parent)
        self.cards = _ints(cards)
        self.columns = _starts(cards)
        where = [{u: p for p, u in enumerate(c)} for c in cliques]
        seps = [[p for p, u in enumerate(cliques[c]) if parent[c] >= 0 and u in where[parent[c]]]
                for c in range(m)]
        self.sep_start = _starts([len(s) for s in seps])
        self.sep_cpos = _ints(p for s in seps for p in s)
        self.sep_ppos = _ints(where[parent[c]][cliques[c][p]] for c in range(m) for p in seps[c])
        # children grouped by separator: a group's messages are multiplied once per row
        groups = []
        for c in range(m):
            by_sep: dict[tuple, list[int]] = {}
            for k in range(m):
                if parent[k] == c:
                    by_sep.setdefault(tuple(cliques[k][p] for p in seps[k]), []).append(k)
            groups.append(list(by_sep.values()))
        self.gr_start = _starts([len(g) for g in groups])
        self.gk_start = _starts([len(g) for gs in groups for g in gs])
        self.gk_list = _ints(k for gs in groups for g in gs for k in g)
        sizes = [math.prod(cards[u] for u in (v, *parents[v])) for v in range(len(cards))]
        self.cpt_start = _starts(sizes)[:-1]
        homes = [[v for v in range(len(cards)) if tree.family_home[v] == c] for c in range(m)]
        self.fa_start = _starts([len(h) for h in homes])
        self.fa_var = _ints(v for h in homes for v in h)
        strides, fs = [], []
        for c in range(m):
            for v in homes[c]:
                family = (v, *parents[v])
                shape = [cards[u] for u in family]
                stride = {u: math.prod(shape[i + 1:]) for i, u in enumerate(family)}
                fs.append(len(strides))
                strides.extend(stride.get(u, 0) for u in cliques[c])
        self.fs_start = _ints(fs) if fs else np.zeros(0, dtype=np.int64)
        self.fa_stride = _ints(strides)
        hv = [[where[c][v] for v in range(len(cards)) if tree.home[v] == c] for c in range(m)]
        self.hv_start = _starts([len(h) for h in hv])
        self.hv_pos = _ints(p for h in hv for p in h)
        # ``fixed``: a tree for one row, whose potentials take its observed states (card 1)
        self.fixed = dict(fixed or {})
        self.pot_cards = _ints(1 if v in self.fixed else k for v, k in enumerate(cards))
        self.pot_start = np.full(m, -1, dtype=np.int64)
        total = 0
        for c in sorted(range(m) if potentials else [],
                        key=lambda c: math.prod(self.pot_cards[u] for u in cliques[c])):
            size = math.prod(int(self.pot_cards[u]) for u in cliques[c])
            if size > POTENTIAL_MAX or total + size > POTENTIALS_TOTAL:
                break
            self.pot_start[c] = total
            total += size
        self.pot_size = total
        self.homes = homes
        self.for_row = fixed is not None  # a tree for one row's evidence: never reduced again

    def tree_args(self) -> tuple:
        return (self.cl_start, self.cl_var, self.cl_parent, self.cards, self.columns,
                self.sep_start, self.sep_cpos, self.sep_ppos, self.gr_start, self.gk_start,
                self.gk_list,
                self.fa_start, self.fa_var, self.fs_start, self.fa_stride, self.cpt_start,
                self.hv_start, self.hv_pos)

    def potentials(self, cliques, cards, parents, cpts) -> tuple[np.ndarray, np.ndarray,
                                                                 np.ndarray]:
        """The compiled potentials (probabilities, logarithms) and which cliques keep one.

        A potential's axes are the clique's members of pot card above 1 in member order (a
        row's own tree slices its observed states away), which is the kernel's layout.
        """
        pot = np.ones(self.pot_size)
        logs = np.zeros(self.pot_size)
        keep = self.pot_start.copy()
        for c in np.flatnonzero(self.pot_start >= 0):
            axes = [u for u in cliques[c] if self.pot_cards[u] > 1]
            table = np.ones([cards[u] for u in axes])
            with np.errstate(divide="ignore"):
                log_table = np.zeros(table.shape)
                for v in self.homes[c]:
                    factor = self._factor(v, parents, cpts[v], axes)
                    table = table * factor
                    log_table = log_table + np.log(factor)
            lo, hi = self.pot_start[c], self.pot_start[c] + table.size
            if ((table < _FLOOR) & np.isfinite(log_table)).any():
                keep[c] = -1  # lost digits: multiply per row, where underflow is caught
            pot[lo:hi] = table.ravel()
            logs[lo:hi] = log_table.ravel()
        return pot, logs, keep

    def _factor(self, v: int, parents, cpt, axes: list[int]) -> np.ndarray:
        """CPT of ``v`` at the fixed states, its axes put in ``axes`` order (size 1 where a
        member of ``axes`` is not in the family)."""
        family = (v, *parents[v])
        table = np.asarray(cpt)[tuple(self.fixed[u] if u in self.fixed else slice(None)
                                      for u in family)]
        free = [u for u in family if u not in self.fixed]
        table = np.transpose(table, sorted(range(len(free)), key=lambda i: axes.index(free[i])))
        return table.reshape([table.shape[sorted(free, key=axes.index).index(u)]
                              if u in free else 1 for u in axes])

    def clique_counts(self, pot_counts: np.ndarray, flat: np.ndarray, cliques, cards,
                      parents, cpt_start, keep) -> None:
        """Add the expected counts gathered per compiled clique entry to each CPT's counts."""
        for c in np.flatnonzero(keep >= 0):
            axes = [u for u in cliques[c] if self.pot_cards[u] > 1]
            size = math.prod(cards[u] for u in axes)
            table = pot_counts[keep[c]:keep[c] + size].reshape([cards[u] for u in axes])
            for v in self.homes[c]:
                family = (v, *parents[v])
                free = [u for u in family if u not in self.fixed]
                summed = table.sum(axis=tuple(i for i, u in enumerate(axes) if u not in family))
                kept = [u for u in axes if u in family]
                summed = np.transpose(summed, [kept.index(u) for u in free])
                full = np.zeros([cards[u] for u in family])
                full[tuple(self.fixed[u] if u in self.fixed else slice(None)
                           for u in family)] = summed
                flat[cpt_start[v]:cpt_start[v] + full.size] += full.ravel()


class Engine:
    """One network (structure + CPTs) compiled for the CPU; build with :meth:`compile`.

    ``tree`` is the junction tree kept (``tree.heuristic``, ``tree.total_size``);
    :meth:`with_cpts` gives an engine of the same structure with other CPT values (EM), sharing
    the compiled tree.
    """

    def __init__(self, tree: JunctionTree, arrays: _Arrays, cards: Sequence[int],
                 parents: Sequence[Sequence[int]], cpts: Sequence[np.ndarray],
                 names: Sequence[str] | None = None) -> None:
        self.tree = tree
        self.arrays = arrays
        self.cards = tuple(int(k) for k in cards)
        self.parents = tuple(tuple(int(p) for p in ps) for ps in parents)
        self.names = list(names) if names is not None else [f"X{i}" for i in range(len(cards))]
        self.position = {v: i for i, v in enumerate(self.names)}
        self.shapes = [tuple(self.cards[u] for u in (v, *ps)) for v, ps in enumerate(parents)]
        self.flat = np.concatenate([np.asarray(c, dtype=np.float64).ravel() for c in cpts])
        with np.errstate(divide="ignore"):
            self.flat_log = np.log(self.flat)
        self.columns = arrays.columns
        self.reduced = arrays.for_row
        self.pot, self.pot_log, self.pot_start = arrays.potentials(tree.cliques, self.cards,
                                                                   self.parents, cpts)
        self._children: list[list[int]] | None = None
        self._moral: list[list[int]] | None = None

    @classmethod
    def compile(cls, cards: Sequence[int], parents: Sequence[Sequence[int]],
                cpts: Sequence[np.ndarray], names: Sequence[str] | None = None) -> Engine:
        """Triangulate (the smallest of the heuristics), lay the tree out, keep the CPTs."""
        tree = build(cards, parents)
        return cls(tree, _Arrays(tree, cards, parents), cards, parents, cpts, names)

    def with_cpts(self, cpts: Sequence[np.ndarray]) -> Engine:
        """The same compiled tree with other CPT values (shapes unchanged)."""
        return Engine(self.tree, self.arrays, self.cards, self.parents, cpts, self.names)

    def unflatten(self, flat: np.ndarray) -> list[np.ndarray]:
        """A flat array laid out like the CPTs (expected counts) as one array per variable."""
        start = self.arrays.cpt_start
        return [flat[start[v]:start[v] + math.prod(s)].reshape(s)
                for v, s in enumerate(self.shapes)]

    # ------------------------------------------------------------------ memory
    def row_needs(self, states: np.ndarray, hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Workspace entries each row needs, and the index of its largest clique table."""
        a = self.arrays
        need = np.zeros(len(states))
        biggest = np.zeros(len(states), dtype=np.int64)
        kernels.row_needs(a.cl_start, a.cl_var, a.cards, a.sep_start, a.sep_cpos, a.gr_start,
                          a.gk_start, a.gk_list, states, hidden, need, biggest)
        return need, biggest

    def _chunks(self, states, hidden, budget: float, per_row_out: int):
        """Row ranges whose workspace (the largest need; twice that for rows run again in
        logarithms) and outputs fit."""
        need, biggest = self.row_needs(states, hidden)
        if not len(need):
            return [], 1
        worst = int(np.argmax(need))
        if 8.0 * need[worst] > budget:
            c = int(biggest[worst])
            members = [self.names[u] for u in self.tree.cliques[c] if hidden[worst, u]]
            entries = math.prod(self.cards[self.names.index(u)] for u in members)
            raise InferenceError(
                f"exact inference needs about {8.0 * need[worst] / 2**30:.3g} GiB for row "
                f"{worst} (its largest clique ranges over {entries:,} joint states of "
                f"{members[:12]}{'...' if len(members) > 12 else ''}), over the memory budget "
                f"of {budget / 2**30:.3g} GiB; raise bn.memory_budget or use "
                f"method='sampling'")
        width = max(1, int(need.max()))
        rows = max(1, int((budget - 8.0 * width) // max(8 * per_row_out, 1)))
        return [(lo, min(lo + rows, len(states))) for lo in range(0, len(states), rows)], width

    # ------------------------------------------------------------------ passes
    def _call(self, states, hidden, soft, weights, factor_on, lg, maxprod, down, uniforms,
              log_z, post, counts, failed, assign, width):
        a = self.arrays
        kernels.run_rows(*a.tree_args(), self.pot_start, a.pot_cards,
                         self.flat_log if lg else self.flat,
                         self.pot_log if lg else self.pot, factor_on, states, hidden, soft,
                         weights, width, lg, maxprod, down, uniforms, log_z, post,
                         counts[:self.flat.size] if counts.size else counts,
                         counts[self.flat.size:] if counts.size else counts, failed, assign)

    def run(self, states: np.ndarray, hidden: np.ndarray, soft: np.ndarray | None = None,
            want: str = "post", weights: np.ndarray | None = None,
            factor_on: np.ndarray | None = None,
            memory_budget: float = DEFAULT_MEMORY_BUDGET, target: int | None = None) -> dict:
        """Sum-product for every row.

        Parameters
        ----------
        states, hidden : (B, n) int64 state codes (read where not hidden) and bool mask.
        soft : (B, sum of cards), optional: likelihoods side by side (ones where none).
        want : "logz", "post" (posteriors of every variable, one-hot where observed) or
            "counts" (EM's expected counts of every CPT entry, weighted by ``weights``).
        factor_on : (n,) bool, optional: CPTs left out are barren or d-separated (queries).
        target : optional, with "post": only this variable's posterior is wanted (rows on
            their own tree are then rooted at its clique and collected only).

        Returns a dict with "log_z" (B,), and "post" (B, sum of cards) or "counts" (flat,
        :meth:`unflatten` splits it); log_z is -inf for rows of probability zero.
        """
        states = np.ascontiguousarray(states, dtype=np.int64)
        hidden = np.ascontiguousarray(hidden, dtype=bool)
        heavy = self._heavy(states, hidden)
        if heavy.size:  # rows answered on trees triangulated for their own evidence
            return split_run(self, heavy, states, hidden, soft, want, weights, factor_on,
                             memory_budget, target)
        b, cols = len(states), int(self.columns[-1])
        soft, soft_log = self._soft(soft, states, hidden)
        log_z = np.zeros(b)
        post = np.zeros((b if want == "post" else 0, cols))
        # expected counts: per CPT entry, then per compiled clique entry (folded in at the end)
        counts = np.zeros(self.flat.size + self.arrays.pot_size if want == "counts" else 0)
        weights = (np.ones(b) if weights is None else np.ascontiguousarray(weights, np.float64))
        factor_on = (np.zeros(0, dtype=bool) if factor_on is None
                     else np.ascontiguousarray(factor_on, dtype=bool))
        spans, width = self._chunks(states, hidden, memory_budget, cols + len(self.cards))
        for lo, hi in spans:
            part = slice(lo, hi)
            failed = np.zeros(hi - lo, dtype=bool)
            p = post[part] if want == "post" else post
            down = 4 if (target is not None and self.reduced and want == "post") else _WANT[want]
            self._call(states[part], hidden[part], soft[part] if soft.size else soft,
                       weights[part], factor_on, False, False, down, _NO_U,
                       log_z[part], p, counts, failed, _NO_ASSIGN, width)
            redo = np.flatnonzero(failed)
            if redo.size:  # near underflow: the same rows in logarithms
                rows = redo + lo
                sub_z = np.zeros(redo.size)
                sub_post = np.zeros((redo.size if want == "post" else 0, cols))
                self._call(states[rows], hidden[rows], soft[rows] if soft.size else soft,
                           weights[rows], factor_on, True, False, down, _NO_U, sub_z,
                           sub_post, counts, np.zeros(redo.size, dtype=bool), _NO_ASSIGN,
                           width)
                log_z[rows] = sub_z
                if want == "post":
                    post[rows] = sub_post
        log_z += soft_log
        if want == "counts":
            flat = counts[:self.flat.size].copy()
            self.arrays.clique_counts(counts[self.flat.size:], flat, self.tree.cliques,
                                      self.cards, self.parents, self.arrays.cpt_start,
                                      self.pot_start)
            counts = flat
        if want == "post" and b:
            seen = ~hidden
            r, v = np.nonzero(seen)
            post[r, self.columns[v] + states[r, v]] = 1.0
        return {"log_z": log_z, "post": post, "counts": counts}

    def _heavy(self, states: np.ndarray, hidden: np.ndarray) -> np.ndarray:
        """Rows whose tables on this tree would be much larger than their own tree's cost."""
        if self.reduced or not len(states):
            return np.zeros(0, dtype=np.int64)
        need, _ = self.row_needs(states, hidden)
        return np.flatnonzero(need > REDUCE_PER_VARIABLE * len(self.cards) ** 2)

    def map(self, states: np.ndarray, hidden: np.ndarray,
            memory_budget: float = DEFAULT_MEMORY_BUDGET) -> tuple[np.ndarray, np.ndarray]:
        """Max-product: (max over hidden states of log P(x, e) per row, (B, n) states with the
        MAP state of every hidden variable); ties go to the first maximal entry in each
        clique's order (parents' choices fixed), the same on every call."""
        return self._walk(states, hidden, 3, None, memory_budget)

    def sample(self, states: np.ndarray, hidden: np.ndarray, rng: np.random.Generator,
               soft: np.ndarray | None = None,
               memory_budget: float = DEFAULT_MEMORY_BUDGET) -> np.ndarray:
        """One exact draw of every hidden variable from its row's joint posterior, (B, n)."""
        return self._walk(states, hidden, 2, rng, memory_budget, soft)[1]

    def _walk(self, states, hidden, down, rng, memory_budget, soft=None):
        states = np.ascontiguousarray(states, dtype=np.int64)
        hidden = np.ascontiguousarray(hidden, dtype=bool)
        heavy = self._heavy(states, hidden)
        if heavy.size:  # rows walked on trees triangulated for their own evidence
            return split_walk(self, heavy, states, hidden, down, rng, memory_budget, soft)
        b = len(states)
        soft, soft_log = self._soft(soft, states, hidden)
        best = np.zeros(b)
        assign = np.where(hidden, 0, states).astype(np.int64)
        m = len(self.tree.cliques)
        uniforms = rng.random((b, m)) if rng is not None else _NO_U
        spans, width = self._chunks(states, hidden, memory_budget, 2 * len(self.cards))
        for lo, hi in spans:
            part = slice(lo, hi)
            self._call(states[part], hidden[part], soft[part] if soft.size else soft,
                       np.ones(hi - lo), np.zeros(0, dtype=bool), True, down == 3, down,
                       uniforms[part] if rng is not None else uniforms, best[part], _NO_POST,
                       _NO_COUNTS, np.zeros(hi - lo, dtype=bool), assign[part], width)
        return best + soft_log, assign

    def _soft(self, soft, states, hidden):
        """Soft evidence scaled to a maximum of 1 per variable and row (the scales, and the
        likelihood of observed states, go to log P(e) as a per-row term)."""
        b = len(states)
        if soft is None:
            return _NO_SOFT, np.zeros(b)
        soft = np.array(soft, dtype=np.float64, copy=True).reshape(b, int(self.columns[-1]))
        offset = np.zeros(b)
        for v in range(len(self.cards)):
            lo, hi = self.columns[v], self.columns[v + 1]
            block = soft[:, lo:hi]
            top = block.max(1)
            if np.all(top == 1.0) and np.all(block == 1.0):
                continue
            block /= top[:, None]
            with np.errstate(divide="ignore"):
                offset += np.log(top)
                seen = ~hidden[:, v]
                offset[seen] += np.log(block[seen, states[seen, v]])
        return np.ascontiguousarray(soft), offset


_NO_SOFT = np.ones((0, 1))
_NO_U = np.zeros((0, 1))
_NO_POST = np.zeros((0, 1))
_NO_COUNTS = np.zeros(0)
_NO_ASSIGN = np.zeros((0, 1), dtype=np.int64)
