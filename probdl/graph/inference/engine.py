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
from .layout import TreeArrays, pack
from .rows import build_rows, no_trees, run_rows, run_shared_rows
from .rowtree import build as build_row
from .rowtree import builder_scratch

__all__ = ["DEFAULT_MEMORY_BUDGET", "Engine"]

DEFAULT_MEMORY_BUDGET = 2 * 1024**3
_WANT = {"logz": 0, "post": 1, "counts": 1}
# Where rows run (tests force one way or the other): "auto" builds a row's own tree when its
# cost on the network's tree exceeds OWN_TREE_PER_HIDDEN reads per hidden variable plus
# OWN_TREE_MIN (about what building costs, docs/tuning-log.md) and keeps the cheaper one.
# 1,000 (was 3,000): andes and pigs at 20% observed ran 15-25% faster, the small networks
# the same; 300 made alarm and win95pts build trees that rarely paid.
ROW_TREES = "auto"
# A row takes its own tree when that costs less than this share of its cost on the network's
# tree (the cost model counts reads per entry). 1.0 (was 0.7) since round 3's faster passes:
# a row's own tree runs cheaper than the model says (its factors rarely all vary over the fast
# digits); insurance and hailfinder at 20% observed 5-6% faster, the others the same.
OWN_TREE_GAIN = 1.0
OWN_TREE_PER_HIDDEN = 1000.0
OWN_TREE_MIN = 0.0
# Greedy heuristics tried for a row's own tree (rowtree._score): weighted min-fill, then
# min-fill and min-weight while the best total exceeds MORE_HEURISTICS entries per hidden
# variable (one elimination costs about what passes over that many entries do).
KINDS = np.array([1, 0, 2], dtype=np.int64)
MORE_HEURISTICS = 1000.0


class Engine:
    """One network (structure + CPTs) compiled for the CPU; build with :meth:`compile`.

    ``tree`` is the junction tree kept (``tree.heuristic``, ``tree.total_size``);
    :meth:`with_cpts` gives an engine of the same structure with other CPT values (EM), sharing
    the compiled tree.
    """

    def __init__(self, tree: JunctionTree, arrays: TreeArrays, cards: Sequence[int],
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
        self.pot, self.pot_log, self.pot_start = arrays.potentials(tree.cliques, self.cards,
                                                                   self.parents, cpts)
        # log of the smallest non-zero CPT and potential entry: the passes skip underflow
        # checks where no product of non-zero factors can fall below FLOOR
        self.lmin = np.array([_log_smallest(self.flat), _log_smallest(self.pot)])
        self.tree_arrays = pack((*arrays.tree_args(), self.pot_start, arrays.pot_cards,
                                 arrays.fa_base))

    @classmethod
    def compile(cls, cards: Sequence[int], parents: Sequence[Sequence[int]],
                cpts: Sequence[np.ndarray], names: Sequence[str] | None = None) -> Engine:
        """Triangulate (the smallest of the heuristics), lay the tree out, keep the CPTs."""
        tree = build(cards, parents)
        return cls(tree, TreeArrays(tree, cards, parents), cards, parents, cpts, names)

    def with_cpts(self, cpts: Sequence[np.ndarray]) -> Engine:
        """The same compiled tree with other CPT values (shapes unchanged)."""
        return Engine(self.tree, self.arrays, self.cards, self.parents, cpts, self.names)

    def unflatten(self, flat: np.ndarray) -> list[np.ndarray]:
        """A flat array laid out like the CPTs (expected counts) as one array per variable."""
        start = self.arrays.cpt_start
        return [flat[start[v]:start[v] + math.prod(s)].reshape(s)
                for v, s in enumerate(self.shapes)]

    # ------------------------------------------------------------------ routing and memory
    def row_needs(self, states: np.ndarray, hidden: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Workspace entries each row needs on the network's tree, the index of its largest
        clique table, and the row's cost there (:func:`.odometer.row_needs`)."""
        a = self.arrays
        need = np.zeros(len(states))
        cost = np.zeros(len(states))
        biggest = np.zeros(len(states), dtype=np.int64)
        kernels.row_needs(a.cl_start, a.cl_var, a.cards, a.sep_start, a.sep_cpos, a.gr_start,
                          a.gk_start, a.gk_list, a.fa_start, a.hv_start, self.pot_start,
                          states, hidden, need, biggest, cost)
        return need, biggest, cost

    def route(self, states: np.ndarray, hidden: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each row's workspace and cost on the network's tree, and where the row runs: 0 on
        that tree, 1 on a tree built for its own evidence when that one costs less (rows whose
        cost would pay for building it), 2 always on its own tree (``ROW_TREES``)."""
        need, _, cost = self.row_needs(states, hidden)
        if ROW_TREES == "never":
            return need, cost, np.zeros(len(states), dtype=np.int64)
        if ROW_TREES == "always":
            return need, cost, np.full(len(states), 2, dtype=np.int64)
        worth = cost > OWN_TREE_PER_HIDDEN * hidden.sum(1) + OWN_TREE_MIN
        return need, cost, worth.astype(np.int64)

    def _chunks(self, need, route, hidden, budget: float, per_row_out: int):
        """Row ranges whose workspace (the largest need on the network's tree; rows on their
        own trees grow it as they go) and outputs fit."""
        if not len(need):
            return [], 1
        shared = np.where(route == 0, need, 0.0)
        worst = int(np.argmax(shared))
        if 8.0 * shared[worst] > budget:
            self._too_big(worst, need[worst], self.tree.cliques, hidden, budget)
        width = max(1, int(shared.max()))
        rows = max(1, int((budget - 8.0 * width) // max(8 * per_row_out, 1)))
        return [(lo, min(lo + rows, len(need))) for lo in range(0, len(need), rows)], width

    def _too_big(self, r, need, cliques, hidden, budget):
        sizes = [math.prod(self.cards[u] for u in c if hidden[r, u]) for c in cliques]
        members = [self.names[u] for u in cliques[int(np.argmax(sizes))] if hidden[r, u]]
        raise InferenceError(
            f"exact inference needs about {8.0 * need / 2**30:.3g} GiB for row {r} (its "
            f"largest clique ranges over {max(sizes):,} joint states of "
            f"{members[:12]}{'...' if len(members) > 12 else ''}), over the memory budget of "
            f"{budget / 2**30:.3g} GiB; raise bn.memory_budget or use method='sampling'")

    def own_tree(self, r: int, states: np.ndarray, hidden: np.ndarray,
                 factor_on: np.ndarray | None = None, target: int = -1):
        """Row r's own tree (:func:`.rowtree.build`): (cliques as tuples of variables,
        parents, workspace entries, total clique size)."""
        on = np.ones(len(self.cards), dtype=bool) if factor_on is None else factor_on
        buf, off, _, _, need, _, size = build_row(
            r, self.arrays.net_args(), np.ascontiguousarray(states, dtype=np.int64),
            np.ascontiguousarray(hidden, dtype=bool), on, target, self.flat, False, KINDS,
            MORE_HEURISTICS, builder_scratch(len(self.cards)))
        start, var, parent = (buf[off[i]:off[i + 1]] for i in range(3))
        cliques = [tuple(int(u) for u in var[start[c]:start[c + 1]])
                   for c in range(len(start) - 1)]
        return cliques, parent, float(need), float(size)

    # ------------------------------------------------------------------ passes
    def _call(self, states, hidden, soft, weights, factor_on, lg, maxprod, down, uniforms,
              log_z, post, counts, failed, assign, width, route, need, cost, budget,
              target=-1, kept=None):
        used = np.zeros(len(states), dtype=np.int64)
        cpt, pot = (self.flat_log, self.pot_log) if lg else (self.flat, self.pot)
        cpt_counts = counts[:self.flat.size] if counts.size else counts
        pot_counts = counts[self.flat.size:] if counts.size else counts
        if route.any():
            run_rows(*self.tree_arrays, self.arrays.net_args(), route, need, cost, OWN_TREE_GAIN,
                     budget / 8.0, target, KINDS, MORE_HEURISTICS, cpt, pot, self.lmin,
                     factor_on, states, hidden, soft, weights, width, lg, maxprod, down,
                     uniforms, log_z, post, cpt_counts, pot_counts, failed, assign, used,
                     no_trees() if kept is None else kept)
        else:  # every row on the network's tree (budget checked by _chunks)
            run_shared_rows(*self.tree_arrays, cpt, pot, self.lmin, factor_on, states, hidden,
                            soft, weights, width, lg, maxprod, down, uniforms, log_z, post,
                            cpt_counts, pot_counts, failed, assign)
        bad = np.flatnonzero(used >= 2)
        if bad.size:
            r = int(bad[0])
            on = factor_on if factor_on.size else None
            cliques, _, own, _ = self.own_tree(r, states, hidden, on, target)
            if used[r] == 3:
                self._too_big(r, own, cliques, hidden, budget)
            self._too_big(r, need[r], self.tree.cliques, hidden, budget)
        # which tree each row ran on (0 the network's, 1 its own), returned rather than kept
        # on the engine so that threads sharing an engine (EM's n_jobs) do not mix rows up
        return used

    def _kept(self, keep, lo, states, hidden, route, cost, factor_on, target):
        """The rows' own trees kept in ``keep`` for the span starting at ``lo`` (built on
        the first call), or None."""
        if keep is None or not route.any():
            return None
        if lo not in keep:
            on = factor_on if factor_on.size else np.ones(len(self.cards), dtype=bool)
            keep[lo] = build_rows(self.arrays.net_args(), route, cost, OWN_TREE_GAIN, states,
                                  hidden, on, target, self.flat, False, KINDS,
                                  MORE_HEURISTICS)
        return keep[lo]

    def run(self, states: np.ndarray, hidden: np.ndarray, soft: np.ndarray | None = None,
            want: str = "post", weights: np.ndarray | None = None,
            factor_on: np.ndarray | None = None,
            memory_budget: float = DEFAULT_MEMORY_BUDGET, target: int | None = None,
            keep: dict | None = None) -> dict:
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
        keep : optional dict kept by the caller between calls on the same rows and evidence
            with other CPTs (EM): routing and the rows' own trees are done once, there.

        Returns a dict with "log_z" (B,), and "post" (B, sum of cards) or "counts" (flat,
        :meth:`unflatten` splits it); log_z is -inf for rows of probability zero; "own" (B,)
        bool: the rows answered on trees built for their own evidence.
        """
        states = np.ascontiguousarray(states, dtype=np.int64)
        hidden = np.ascontiguousarray(hidden, dtype=bool)
        b, cols = len(states), int(self.columns[-1])
        soft, soft_log = self._soft(soft, states, hidden)
        log_z = np.zeros(b)
        post = np.zeros((b if want == "post" else 0, cols))
        # expected counts: per CPT entry, then per compiled clique entry (folded in at the end)
        counts = np.zeros(self.flat.size + self.arrays.pot_size if want == "counts" else 0)
        weights = (np.ones(b) if weights is None else np.ascontiguousarray(weights, np.float64))
        factor_on = (np.zeros(0, dtype=bool) if factor_on is None
                     else np.ascontiguousarray(factor_on, dtype=bool))
        tgt = -1 if target is None or want != "post" else int(target)
        if keep is None or "route" not in keep:
            routed = self.route(states, hidden)
            routed += self._chunks(routed[0], routed[2], hidden, memory_budget,
                                   cols + len(self.cards))
            if keep is not None:
                keep["route"] = routed
        need, cost, route, spans, width = keep["route"] if keep is not None else routed
        own = np.zeros(b, dtype=bool)
        for lo, hi in spans:
            part = slice(lo, hi)
            failed = np.zeros(hi - lo, dtype=bool)
            p = post[part] if want == "post" else post
            used = self._call(states[part], hidden[part], soft[part] if soft.size else soft,
                              weights[part], factor_on, False, False, _WANT[want], _NO_U,
                              log_z[part], p, counts, failed, _NO_ASSIGN, width, route[part],
                              need[part], cost[part], memory_budget, tgt,
                              self._kept(keep, lo, states[part], hidden[part], route[part],
                                         cost[part], factor_on, tgt))
            own[part] = used == 1
            redo = np.flatnonzero(failed)
            if redo.size:  # near underflow: the same rows in logarithms
                rows = redo + lo
                sub_z = np.zeros(redo.size)
                sub_post = np.zeros((redo.size if want == "post" else 0, cols))
                self._call(states[rows], hidden[rows], soft[rows] if soft.size else soft,
                           weights[rows], factor_on, True, False, _WANT[want], _NO_U, sub_z,
                           sub_post, counts, np.zeros(redo.size, dtype=bool), _NO_ASSIGN,
                           width, route[rows], need[rows], cost[rows], memory_budget, tgt)
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
        return {"log_z": log_z, "post": post, "counts": counts, "own": own}

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
        b = len(states)
        soft, soft_log = self._soft(soft, states, hidden)
        best = np.zeros(b)
        assign = np.where(hidden, 0, states).astype(np.int64)
        # a uniform per clique; a row's own tree has at most one clique per variable
        width_u = max(len(self.tree.cliques), len(self.cards))
        uniforms = rng.random((b, width_u)) if rng is not None else _NO_U
        need, cost, route = self.route(states, hidden)
        spans, width = self._chunks(need, route, hidden, memory_budget, 2 * len(self.cards))
        for lo, hi in spans:
            part = slice(lo, hi)
            self._call(states[part], hidden[part], soft[part] if soft.size else soft,
                       np.ones(hi - lo), np.zeros(0, dtype=bool), True, down == 3, down,
                       uniforms[part] if rng is not None else uniforms, best[part], _NO_POST,
                       _NO_COUNTS, np.zeros(hi - lo, dtype=bool), assign[part], width,
                       route[part], need[part], cost[part], memory_budget)
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


def _log_smallest(a: np.ndarray) -> float:
    positive = a[a > 0.0]
    return float(np.log(positive.min())) if positive.size else 0.0


_NO_SOFT = np.ones((0, 1))
_NO_U = np.zeros((0, 1))
_NO_POST = np.zeros((0, 1))
_NO_COUNTS = np.zeros(0)
_NO_ASSIGN = np.zeros((0, 1), dtype=np.int64)
