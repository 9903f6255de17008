"""The junction tree laid out flat for the compiled passes, and its compiled clique potentials.

    from probdl.graph import BayesNet
    arrays = BayesNet.example("alarm").engine().arrays
    arrays.tree_args()      # cliques, separators, children groups, CPT homes and strides
    arrays.net_args()       # families and strides, for building a row's own tree

The maths: clique c's members are listed by (card, id); a CPT homed at c is read at
cpt_start[v] + sum over family members u of state_u * stride_u, its strides C-ordered over
(v, parents); a separator message ranges over the separator's members in the child's order.
Cliques small enough get a potential (the product of their CPTs) computed once, which the
passes read with one load per entry instead of one per CPT.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .junction import JunctionTree
from .runs import FLOOR

__all__ = ["POTENTIALS_TOTAL", "POTENTIAL_MAX", "TreeArrays", "pack"]

# Cliques whose CPTs are multiplied once at compile time (one read per table entry instead of
# one per CPT): the smallest first, each up to POTENTIAL_MAX entries and all of them up to
# POTENTIALS_TOTAL (8 bytes each, twice: probabilities and logarithms).
POTENTIAL_MAX = 2**21
POTENTIALS_TOTAL = 2**23
# A compiled potential entry below this while its factors are not zero has lost digits: that
# clique multiplies its CPTs per row instead, where underflow is caught row by row.
_FLOOR = FLOOR


def _starts(counts: Sequence[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)


def _ints(values) -> np.ndarray:
    return np.asarray(list(values), dtype=np.int64).reshape(-1)


class TreeArrays:
    """The junction tree laid out flat for the compiled passes (depends on structure only)."""

    def __init__(self, tree: JunctionTree, cards: Sequence[int],
                 parents: Sequence[Sequence[int]]) -> None:
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
        self.fa_base = np.zeros(len(self.fa_var), dtype=np.int64)  # observed members: none
        self.pot_cards = self.cards
        self.pot_start = np.full(m, -1, dtype=np.int64)
        total = 0
        for c in sorted(range(m),
                        key=lambda c: math.prod(self.pot_cards[u] for u in cliques[c])):
            size = math.prod(int(self.pot_cards[u]) for u in cliques[c])
            if size > POTENTIAL_MAX or total + size > POTENTIALS_TOTAL:
                break
            self.pot_start[c] = total
            total += size
        self.pot_size = total
        self.homes = homes
        # the network for building a row's own tree: families (v first), their C-order strides
        families = [(v, *parents[v]) for v in range(len(cards))]
        self.fam_start = _starts([len(f) for f in families])
        self.fam_var = _ints(u for f in families for u in f)
        self.fam_stride = _ints(math.prod(cards[u] for u in f[i + 1:]) for f in families
                                for i in range(len(f)))

    def tree_args(self) -> tuple:
        return (self.cl_start, self.cl_var, self.cl_parent, self.cards, self.columns,
                self.sep_start, self.sep_cpos, self.sep_ppos, self.gr_start, self.gk_start,
                self.gk_list,
                self.fa_start, self.fa_var, self.fs_start, self.fa_stride, self.cpt_start,
                self.hv_start, self.hv_pos)

    def net_args(self) -> tuple:
        return (self.fam_start, self.fam_var, self.fam_stride, self.cpt_start, self.cards,
                self.columns)

    def potentials(self, cliques, cards, parents, cpts) -> tuple[np.ndarray, np.ndarray,
                                                                 np.ndarray]:
        """The compiled potentials (probabilities, logarithms) and which cliques keep one.

        A potential's axes are the clique's members in member order (members of one state
        included), which is the kernel's layout.
        """
        pot = np.ones(self.pot_size)
        logs = np.zeros(self.pot_size)
        keep = self.pot_start.copy()
        for c in np.flatnonzero(self.pot_start >= 0):
            axes = list(cliques[c])
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
        """CPT of ``v``, its axes put in ``axes`` order (size 1 where a member of ``axes`` is
        not in the family)."""
        free = (v, *parents[v])
        table = np.transpose(np.asarray(cpt),
                             sorted(range(len(free)), key=lambda i: axes.index(free[i])))
        return table.reshape([table.shape[sorted(free, key=axes.index).index(u)]
                              if u in free else 1 for u in axes])

    def clique_counts(self, pot_counts: np.ndarray, flat: np.ndarray, cliques, cards,
                      parents, cpt_start, keep) -> None:
        """Add the expected counts gathered per compiled clique entry to each CPT's counts."""
        for c in np.flatnonzero(keep >= 0):
            axes = list(cliques[c])
            size = math.prod(cards[u] for u in axes)
            table = pot_counts[keep[c]:keep[c] + size].reshape([cards[u] for u in axes])
            for v in self.homes[c]:
                family = (v, *parents[v])
                summed = table.sum(axis=tuple(i for i, u in enumerate(axes) if u not in family))
                kept = [u for u in axes if u in family]
                full = np.transpose(summed, [kept.index(u) for u in family])
                flat[cpt_start[v]:cpt_start[v] + full.size] += full.ravel()


def pack(fields: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The tree's arrays end to end in one int64 buffer, and where each starts (field i is
    ``buf[off[i]:off[i + 1]]``): the compiled passes take two arrays instead of a tuple of
    21, which kept their compile time down."""
    off = _starts([len(f) for f in fields])
    return np.concatenate([np.asarray(f, dtype=np.int64) for f in fields]), off
