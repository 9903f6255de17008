"""Index tables for :mod:`probdl.graph.local`: flattened CPTs and one entry per component seen.

    import numpy as np, torch
    from probdl.graph import BayesNet
    from probdl.graph.local_tables import tables_for
    bn = BayesNet.example("asia")
    cpts = bn._torch_cpts(torch.device("cpu"), torch.float64)
    tables = tables_for(bn._structure, cpts, max_work=1e4)
    tables.locate(b"\\x80", np.array([0]))  # the set {asia}: its id in tables.components

A set of hidden variables always needs the same gathers, whatever the rows: which CPTs touch it
(its factors), where each of its joint states sits in each factor's flattened table, which
observed variables complete each factor's index. These are built once per set, on first sight,
and laid end to end (``Tables.flat``) for the compiled loop that evaluates every component of a
batch (:func:`probdl.graph.kernels.enumerate_components`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .plan import Structure

__all__ = ["INT_KEY_BITS", "MAX_TABLE", "KeyIndex", "Tables", "tables_for"]

# Largest table ever enumerated, or built by one step of the elimination tree (memory bound);
# the engine's cost rule (``max_work``) stops enumeration well below it.
MAX_TABLE = 65536
# Keys (sets of variables, step patterns) of fewer bits than this are looked up as integers,
# all at once; wider ones one by one through a dict.
INT_KEY_BITS = 63


@dataclass
class _Component:
    """What enumerating one set S of hidden variables needs (independent of the rows)."""

    size: int  # joint table entries, prod of the cards of S
    offsets: np.ndarray  # (F, J): flat index of each factor at each joint state, minus the base
    observed_vars: list[np.ndarray]  # per factor: the observed members of its family
    observed_strides: list[np.ndarray]  # and their strides: base = sum of state * stride
    first_columns: np.ndarray  # (k,): output column of each variable's first state
    cards: np.ndarray  # (k,)


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
        self.scope_len = np.array([len(scope) for scope in scopes], dtype=np.int64)
        self.in_scope = np.zeros((n, n), dtype=bool)  # [family, variable]
        for v, scope in enumerate(scopes):
            self.in_scope[v, list(scope)] = True
        pairs = {(min(a, b), max(a, b)) for s in scopes for a in s for b in s if a != b}
        self.edges = np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)
        ends = np.concatenate([self.edges, self.edges[:, ::-1]])
        ends = ends[np.argsort(ends[:, 0], kind="stable")]
        self.adj = np.ascontiguousarray(ends[:, 1])  # neighbours of u: adj[adj_start[u]:...]
        self.adj_start = np.searchsorted(ends[:, 0], np.arange(n + 1)).astype(np.int64)
        self.families_of = [np.flatnonzero(self.in_scope[:, u]) for u in range(n)]
        self.components: list[_Component] = []
        self.where: dict[bytes, int] = {}  # set key -> id in components (-1: too costly)
        self.known = KeyIndex(1)  # the same for sets keyed by an integer bit mask (n < 63)
        self._flat: dict[str, np.ndarray] | None = None

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

    def gathers(self, families, state_of: dict[int, np.ndarray], size: int
                ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """What a table over some hidden variables needs from these families.

        ``state_of`` maps each hidden variable to its state at each of the table's ``size``
        entries. Families with no hidden member are skipped (constants, counted elsewhere).
        Returns each kept family's flat CPT index at every entry minus the row's base, and the
        observed members and strides that give the base (sum of state * stride).
        """
        offsets, obs_vars, obs_strides = [], [], []
        for f in families:
            if not any(u in state_of for u in self.strides[f]):
                continue
            offset = np.full(size, self.start[f], dtype=np.int64)
            observed = [(u, s) for u, s in self.strides[f].items() if u not in state_of]
            for u, s in self.strides[f].items():
                if u in state_of:
                    offset += state_of[u] * s
            offsets.append(offset)
            obs_vars.append(np.array([u for u, _ in observed], dtype=np.int64))
            obs_strides.append(np.array([s for _, s in observed], dtype=np.int64))
        return np.array(offsets, dtype=np.int64).reshape(-1, size), obs_vars, obs_strides

    def component(self, variables: np.ndarray) -> _Component:
        cards = self.cards[variables]
        size = math.prod(int(k) for k in cards)
        joint = np.indices(cards).reshape(len(variables), -1)  # (k, J) state of each variable
        families = np.unique(np.concatenate([self.families_of[u] for u in variables]))
        state_of = dict(zip(variables.tolist(), joint, strict=True))
        offsets, obs_vars, obs_strides = self.gathers(families.tolist(), state_of, size)
        return _Component(size, offsets, obs_vars, obs_strides, self.columns[variables], cards)

    def locate(self, key: bytes, variables: np.ndarray) -> int:
        """Id of a set of hidden variables in ``components``, built on first sight; -1 for a
        set whose enumeration would cost more than ``max_work`` (its table size times its
        number of factors): the caller eliminates those instead."""
        hit = self.where.get(key)
        if hit is None:
            # Python integers: a product over dozens of variables overflows int64
            size = math.prod(int(k) for k in self.cards[variables])
            factors = len(np.unique(np.concatenate([self.families_of[u] for u in variables])))
            if size > MAX_TABLE or size * factors > self.max_work:
                hit = -1
            else:
                self.components.append(self.component(variables))
                self._flat = None
                hit = len(self.components) - 1
            self.where[key] = hit
        return hit

    def flat(self) -> dict[str, np.ndarray]:
        """Every component's gathers end to end, as :func:`~probdl.graph.kernels.
        enumerate_components` reads them: per component ``c_*`` (factors from ``c_fstart``,
        variables from ``c_vstart``), per factor ``f_*`` (offsets from ``f_offstart``, observed
        members from ``f_ostart``), per variable its first output column and its card."""
        if self._flat is None:
            cs = self.components
            self._flat = {
                "c_size": np.array([c.size for c in cs], dtype=np.int64),
                "c_fstart": starts([c.offsets.shape[0] for c in cs]),
                **flat_gathers([c.offsets for c in cs], [c.observed_vars for c in cs],
                               [c.observed_strides for c in cs]),
                "c_vstart": starts([c.cards.size for c in cs]),
                "v_column": concat([c.first_columns for c in cs]),
                "v_card": concat([c.cards for c in cs]),
            }
        return self._flat


class KeyIndex:
    """Integer keys -> rows of integer values, looked up for a whole array at once (a binary
    search in the sorted keys seen so far); the values of unseen keys come from a callback."""

    def __init__(self, width: int) -> None:
        self.keys = np.empty(0, dtype=np.int64)
        self.values = np.empty((0, width), dtype=np.int64)

    def lookup(self, keys: np.ndarray, make) -> np.ndarray:
        """(K, width) values of ``keys`` (distinct); ``make(key)`` gives an unseen key's."""
        pos = np.minimum(np.searchsorted(self.keys, keys), max(self.keys.size - 1, 0))
        hit = (self.keys[pos] == keys) if self.keys.size else np.zeros(keys.size, dtype=bool)
        out = np.empty((keys.size, self.values.shape[1]), dtype=np.int64)
        out[hit] = self.values[pos[hit]]
        miss = np.flatnonzero(~hit)
        if miss.size:
            out[miss] = np.array([make(int(k)) for k in keys[miss]],
                                 dtype=np.int64).reshape(miss.size, -1)
            keys_all = np.concatenate([self.keys, keys[miss]])
            order = np.argsort(keys_all, kind="stable")
            self.keys = keys_all[order]
            self.values = np.concatenate([self.values, out[miss]])[order]
        return out


def flat_gathers(offsets: Sequence, observed_vars: Sequence, observed_strides: Sequence) -> dict:
    """Per-owner (component or step pattern) lists of per-factor gathers, end to end.

    Each argument holds one sequence per owner with one array per factor: its table offsets,
    its observed variables and their strides. The compiled kernels read them as flat arrays
    with start indices.
    """
    offsets = [f for owner in offsets for f in owner]
    o_var = [v for owner in observed_vars for v in owner]
    o_stride = [s for owner in observed_strides for s in owner]
    return {
        "f_offstart": starts([f.size for f in offsets]),
        "f_offsets": concat(offsets),
        "f_ostart": starts([v.size for v in o_var]),
        "o_var": concat(o_var),
        "o_stride": concat(o_stride),
    }


def starts(counts: list[int]) -> np.ndarray:
    """Where each of a sequence of runs of these lengths begins, and the end (len + 1)."""
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)


def concat(arrays: list[np.ndarray]) -> np.ndarray:
    """The arrays end to end as int64 (empty when there are none)."""
    return np.concatenate(arrays).astype(np.int64) if arrays else np.zeros(0, dtype=np.int64)


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
