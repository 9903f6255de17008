"""Index tables for :mod:`probdl.graph.local`: flattened CPTs and one entry per component seen.

    import numpy as np, torch
    from probdl.graph import BayesNet
    from probdl.graph.local_tables import tables_for
    bn = BayesNet.example("asia")
    cpts = bn._torch_cpts(torch.device("cpu"), torch.float64)
    tables = tables_for(bn._structure, cpts, max_work=1e4)
    tables.locate(b"\\x80", np.array([0]))  # the set {asia}: (bucket size, id in bucket)

A set of hidden variables always needs the same gathers, whatever the rows: which CPTs touch it
(its factors), where each of its joint states sits in each factor's flattened table, which
observed variables complete each factor's index. These are built once per set, on first sight,
and stacked with the other sets of similar table size into padded buckets, so that all
components of a batch are evaluated with a few numpy operations per bucket.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .plan import Structure

__all__ = ["MAX_TABLE", "Tables", "tables_for"]

# Largest component table ever enumerated (memory bound of the padded buckets); the engine's
# cost rule (``max_work``) usually stops well below it.
MAX_TABLE = 65536


@dataclass
class _Component:
    """What enumerating one set S of hidden variables needs (independent of the rows)."""

    size: int  # joint table entries, prod of the cards of S
    offsets: np.ndarray  # (F, J): flat index of each factor at each joint state, minus the base
    observed_vars: np.ndarray  # (F, P): observed scope variables of each factor (0 = padding)
    observed_strides: np.ndarray  # (F, P): their strides in that factor's CPT (0 = padding)
    states: np.ndarray  # (k, J): state of each variable of S at each joint state
    first_columns: np.ndarray  # (k,): output column of each variable's first state
    cards: np.ndarray  # (k,)


@dataclass
class _Bucket:
    """Components whose tables have at most ``size`` entries, stacked and padded alike."""

    size: int
    factors: int = 0
    slots: int = 0
    ids: dict[bytes, int] = field(default_factory=dict)
    members: list[_Component] = field(default_factory=list)
    stacked: tuple[np.ndarray, ...] | None = None

    def add(self, key: bytes, comp: _Component) -> int:
        self.ids[key] = len(self.members)
        self.members.append(comp)
        self.factors = max(self.factors, comp.offsets.shape[0])
        self.slots = max(self.slots, len(comp.cards))
        self.stacked = None
        return self.ids[key]

    def arrays(self, dummy_column: int) -> tuple[np.ndarray, ...]:
        """(offsets, observed vars, observed strides, cells, columns, cell columns, valid).

        ``cells`` (m, k, J) numbers each (variable slot, state) of a member's table entries
        locally (slot * max card + state; padding goes to one spare cell at the end), so the
        posteriors are sums into a small table per component; ``columns`` (m, cells) maps
        those local cells to output columns (padding to ``dummy_column``).
        """
        if self.stacked is None:
            m, f, j, k = len(self.members), self.factors, self.size, self.slots
            p = self.members[0].observed_vars.shape[1]
            width = max(int(c.cards.max()) for c in self.members)
            spare = k * width
            offsets = np.zeros((m, f, j), dtype=np.int64)  # padding reads entry 0: log 1
            obs_vars = np.zeros((m, f, p), dtype=np.int64)
            obs_strides = np.zeros((m, f, p), dtype=np.int64)
            cells = np.full((m, k, j), spare, dtype=np.int64)
            columns = np.full((m, spare + 1), dummy_column, dtype=np.int64)
            valid = np.zeros((m, j), dtype=bool)
            for i, c in enumerate(self.members):
                nf, nj = c.offsets.shape
                nk = len(c.cards)
                offsets[i, :nf, :nj] = c.offsets
                obs_vars[i, :nf] = c.observed_vars
                obs_strides[i, :nf] = c.observed_strides
                cells[i, :nk, :nj] = np.arange(nk)[:, None] * width + c.states
                for slot in range(nk):
                    columns[i, slot * width:slot * width + c.cards[slot]] = (
                        c.first_columns[slot] + np.arange(c.cards[slot]))
                valid[i, :nj] = True
            # the output column of each (slot, table entry), for tables summed by bincount
            cell_columns = np.take_along_axis(columns, cells.reshape(m, -1), 1).reshape(m, k, j)
            self.stacked = (offsets, obs_vars, obs_strides, cells, columns, cell_columns, valid)
        return self.stacked


class Tables:
    """A network's CPTs flattened for gathers, its moral edges and the components seen so far."""

    def __init__(self, structure: Structure, cpts: Sequence[np.ndarray], max_work: float) -> None:
        n = len(structure.cards)
        self.max_work = max_work
        self.cards = np.asarray(structure.cards, dtype=np.int64)
        self.columns = np.concatenate([[0], np.cumsum(self.cards)]).astype(np.int64)
        self.variable_of_column = np.repeat(np.arange(n), self.cards)
        scopes = [(v, *structure.parents[v]) for v in range(n)]
        width = max(len(s) for s in scopes)
        self.scope_vars = np.zeros((n, width), dtype=np.int64)
        self.scope_strides = np.zeros((n, width), dtype=np.int64)
        self.strides: list[dict[int, int]] = []
        self.set_cpts(cpts)
        sizes = np.array([1] + [np.asarray(c).size for c in cpts])
        self.start = np.cumsum(sizes)[:-1]
        for v, scope in enumerate(scopes):
            shape = [structure.cards[u] for u in scope]
            stride = [math.prod(shape[i + 1:]) for i in range(len(shape))]
            self.strides.append(dict(zip(scope, stride, strict=True)))
            self.scope_vars[v, :len(scope)] = scope
            self.scope_strides[v, :len(scope)] = stride
        self.scope_valid = np.zeros((n, width), dtype=bool)
        for v, scope in enumerate(scopes):
            self.scope_valid[v, :len(scope)] = True
        self.in_scope = np.zeros((n, n), dtype=bool)  # [family, variable]
        for v, scope in enumerate(scopes):
            self.in_scope[v, list(scope)] = True
        pairs = {(min(a, b), max(a, b)) for s in scopes for a in s for b in s if a != b}
        self.edges = np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)
        self.families_of = [np.flatnonzero(self.in_scope[:, u]) for u in range(n)]
        self.buckets: dict[int, _Bucket] = {}
        self.where: dict[bytes, tuple[int, int]] = {}  # set key -> (bucket size, id in bucket)
        self.width = width

    def set_cpts(self, cpts: Sequence[np.ndarray]) -> None:
        """Put new CPT values in (same shapes): the index tables depend on the structure only,
        so EM reuses them across iterations."""
        with np.errstate(divide="ignore"):
            # entry 0 holds log 1: padded factors read it
            logs = [np.zeros(1)] + [np.log(np.asarray(c, dtype=np.float64)).ravel() for c in cpts]
        self.flat_log = np.concatenate(logs)
        self.flat_prob = np.exp(self.flat_log)
        positive = self.flat_log[np.isfinite(self.flat_log)]
        self.log_floor = float(positive.min()) if positive.size else 0.0

    def component(self, variables: np.ndarray) -> _Component:
        cards = self.cards[variables]
        size = int(np.prod(cards))
        joint = np.indices(cards).reshape(len(variables), -1)  # (k, J) state of each variable
        families = np.unique(np.concatenate([self.families_of[u] for u in variables]))
        members = set(variables.tolist())
        offsets = np.empty((len(families), size), dtype=np.int64)
        obs_vars = np.zeros((len(families), self.width), dtype=np.int64)
        obs_strides = np.zeros((len(families), self.width), dtype=np.int64)
        for i, w in enumerate(families):
            offsets[i] = self.start[w]
            p = 0
            for u, stride in self.strides[w].items():
                if u in members:
                    offsets[i] += joint[variables.tolist().index(u)] * stride
                else:
                    obs_vars[i, p], obs_strides[i, p] = u, stride
                    p += 1
        return _Component(size, offsets, obs_vars, obs_strides, joint, self.columns[variables],
                          cards)

    def locate(self, key: bytes, variables: np.ndarray) -> tuple[int, int]:
        """(bucket size, id in bucket) of a set of hidden variables; built on first sight.

        The id is -1 for a set whose enumeration would cost more than ``max_work`` (its
        table size times its number of factors): rows holding it go to the compiled plans.
        """
        hit = self.where.get(key)
        if hit is None:
            size = int(np.prod(self.cards[variables]))
            bucket_size = _bucket_size(size)
            factors = len(np.unique(np.concatenate([self.families_of[u] for u in variables])))
            if size > MAX_TABLE or bucket_size * factors > self.max_work:
                hit = (bucket_size, -1)
            else:
                bucket = self.buckets.setdefault(bucket_size, _Bucket(bucket_size))
                hit = (bucket_size, bucket.add(key, self.component(variables)))
            self.where[key] = hit
        return hit


def _bucket_size(size: int) -> int:
    """Tables are padded to the next power of 2 or 1.5 times one: at most a third is padding."""
    power = 1 << max(size - 1, 0).bit_length()
    return power * 3 // 4 if size <= power * 3 // 4 and power >= 4 else power


def tables_for(structure: Structure, cpts: Sequence[np.ndarray], max_work: float) -> Tables:
    """Tables cached on the CPT list (a ``CptList``), so each network pays for them once."""
    cache = getattr(cpts, "_local_tables", None)
    if cache is None:
        cache = {}
        try:
            cpts._local_tables = cache  # type: ignore[attr-defined]
        except AttributeError:  # a plain list or tuple: no cache
            pass
    if max_work not in cache:
        cache[max_work] = Tables(structure, getattr(cpts, "arrays", None) or cpts, max_work)
    return cache[max_work]
