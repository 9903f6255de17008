"""Rows that observe most variables: exact answers by enumerating small independent components.

    import numpy as np, torch
    from probdl.graph import BayesNet
    from probdl.graph.local import answer_local
    bn = BayesNet.example("alarm")
    rows = bn.sample(1000, seed=0)
    rows = rows.mask(np.random.default_rng(0).random(rows.shape) < 0.1)   # blank 10% of cells
    states, observed = bn._encode(rows)
    cpts = bn._torch_cpts(torch.device("cpu"), torch.float64)
    done, log_z, post = answer_local(bn._structure, cpts, states, observed)

Why this is exact: given hard evidence e, the unnormalized posterior of the hidden variables is
the product of all CPTs restricted to e. A CPT whose family is fully observed is a constant. The
others link the hidden variables that share a family (the moral graph restricted to the hidden
variables), and the connected components of that graph are independent given e. So
log P(e) = sum of the constants + sum over components of log Z_component, and each hidden
variable's posterior comes from its own component's table alone.

Why it is fast: when a row hides a few variables, its components are tiny (most hold a single
variable), so each one's table can simply be enumerated: a gather from the flattened log-CPTs,
a sum over its factors, a normalization. All components of all rows are done together, padded
into a few buckets by table size, so one call costs a fixed number of numpy operations instead
of a contraction of the whole network per row, and nothing is compiled per evidence pattern.
Rows with a component larger than ``max_table`` entries are left to the compiled plans.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .plan import Structure

__all__ = ["MAX_TABLE", "answer_local"]

# Largest component table ever enumerated here (memory bound of the padded buckets); the
# engine's cost rule (``max_work``) usually stops well below it.
MAX_TABLE = 65536
# Padded gather work per chunk (elements): bounds the memory of one numpy call.
_CHUNK_ELEMS = 2_000_000
# Products of factors stay in probability space while they cannot fall below exp(-600).
_LOG_SAFE = -600.0
# Components with fewer (variable, table entry) pairs than this add into the posteriors in
# one bincount over all of them; larger ones sum into a small table each first.
_SMALL_TABLE = 256
# Levels of conditioning on one variable (each multiplies a row by that variable's states)
# before a row with a costly component is left to the compiled plans.
MAX_SPLITS = 4


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


class _Tables:
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
        with np.errstate(divide="ignore"):
            # entry 0 holds log 1: padded factors read it
            logs = [np.zeros(1)] + [np.log(np.asarray(c, dtype=np.float64)).ravel() for c in cpts]
        sizes = np.array([x.size for x in logs])
        self.flat_log = np.concatenate(logs)
        self.flat_prob = np.exp(self.flat_log)
        positive = self.flat_log[np.isfinite(self.flat_log)]
        self.log_floor = float(positive.min()) if positive.size else 0.0
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


def _tables(structure: Structure, cpts: Sequence[np.ndarray], max_work: float) -> _Tables:
    """Tables cached on the CPT list (a ``CptList``), so each network pays for them once."""
    cache = getattr(cpts, "_local_tables", None)
    if cache is None:
        cache = {}
        try:
            cpts._local_tables = cache  # type: ignore[attr-defined]
        except AttributeError:  # a plain list or tuple: no cache
            pass
    if max_work not in cache:
        cache[max_work] = _Tables(structure, getattr(cpts, "arrays", None) or cpts, max_work)
    return cache[max_work]


def _components(tables: _Tables, hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hidden cells (row, variable) labelled by component: (rows of cells, label of cells)."""
    b, n = hidden.shape
    e = tables.edges
    linked = hidden[:, e[:, 0]] & hidden[:, e[:, 1]]
    r, k = np.nonzero(linked)
    graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r * n + e[k, 0], r * n + e[k, 1])),
                       shape=(b * n, b * n))
    _, labels = connected_components(graph, directed=False)
    cell = np.flatnonzero(hidden.ravel())
    return cell, labels[cell]


def answer_local(structure: Structure, cpts: Sequence[np.ndarray], states: np.ndarray,
                 observed: np.ndarray, max_work: float = float(MAX_TABLE) * 32,
                 posteriors: bool = True, splits: int = MAX_SPLITS,
                 focus: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact log P(e) and all posteriors for the rows whose hidden components are small.

    Parameters
    ----------
    structure : the network's :class:`~probdl.graph.plan.Structure`.
    cpts : the CPT arrays in variable order, or the engine's ``CptList`` (which then caches the
        flattened tables and the components seen, so later calls skip building them).
    states, observed : (B, n) state indices and observed mask; hard evidence only.
    max_work : a component is enumerated only if its (padded) table size times its number of
        factors is at most this; rows with a costlier one are left out (``done`` False).
    posteriors : False computes log P(e) only (``post`` then has no columns).
    splits : levels of conditioning allowed for rows with a costly component.
    focus : (B, n) bool, optional. Only the components of these hidden variables are answered;
        ``log_z`` then leaves out the other components' factors, and their posteriors stay 0
        (used by the splitting: copies of a row re-answer its costly components only).

    Returns
    -------
    done : bool (B,), the rows answered here: those whose components are all cheap enough.
    log_z : (D,) log P(evidence) of the answered rows (``-inf`` where it is impossible).
    post : (D, sum of cards) posteriors of every variable side by side (one-hot where observed).
    """
    tables = _tables(structure, cpts, max_work)
    done, log_z, post, costly = _enumerate(tables, states, observed, posteriors, focus)
    left = np.flatnonzero(~done)
    if not posteriors:
        post = post[:, :0]
    if splits <= 0 or not left.size:
        return done, log_z[done], post[done]
    # Rows with a costly component: condition on one of its variables, i.e. replace the row by
    # one copy per state of that variable with the variable observed, and answer the copies'
    # costly components again (the variable is gone and what it linked often falls apart).
    # With Z_x the copy's answer, P(e) = (this row's cheap part) * sum_x Z_x / (the constant
    # factors, counted in both) and the costly variables' posteriors mix the copies' by Z_x.
    costly = costly[left]
    e = tables.edges
    r, k = np.nonzero(costly[:, e[:, 0]] & costly[:, e[:, 1]])
    n = costly.shape[1]
    ends = np.concatenate([r * n + e[k, 0], r * n + e[k, 1]])
    degree = np.bincount(ends, minlength=costly.size).reshape(costly.shape)  # costly neighbours
    pivot = np.argmax(np.where(costly, degree, -1), axis=1)
    copies = tables.cards[pivot]
    owner = np.repeat(np.arange(left.size), copies)
    first = np.concatenate([[0], np.cumsum(copies)[:-1]])
    value = np.arange(owner.size) - first[owner]
    split_states = states[left][owner]
    split_observed = observed[left][owner]
    split_states[np.arange(owner.size), pivot[owner]] = value
    split_observed[np.arange(owner.size), pivot[owner]] = True
    sub_done, sub_log_z, sub_post = answer_local(
        structure, cpts, split_states, split_observed, max_work, posteriors, splits - 1,
        costly[owner])
    complete = np.logical_and.reduceat(sub_done, first)
    whole = np.flatnonzero(complete[owner])  # copies of rows whose every copy was answered
    # sub_* hold answered copies only: index them by rank among answered copies
    rank = np.cumsum(sub_done) - 1
    copy_log_z = sub_log_z[rank[whole]]
    group = owner[whole]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(group)) + 1]) if whole.size else whole
    segment = np.searchsorted(starts, np.arange(whole.size), side="right") - 1
    top = np.maximum.reduceat(copy_log_z, starts) if whole.size else copy_log_z
    top = np.where(np.isfinite(top), top, 0.0)
    weight = np.exp(copy_log_z - top[segment])
    total = np.add.reduceat(weight, starts) if whole.size else weight
    rows = left[complete]
    constants = _constants(tables, states[rows], ~observed[rows])
    with np.errstate(divide="ignore"):
        # a copy whose constants are impossible (a pivot state ruled out) has P(e) = 0
        log_z[rows] = np.where(np.isfinite(constants),
                               log_z[rows] - np.where(np.isfinite(constants), constants, 0.0)
                               + np.log(total) + top, -np.inf)
    if posteriors and whole.size:
        share = weight / np.where(total > 0, total, 1.0)[segment]
        mixed = np.add.reduceat(sub_post[rank[whole]] * share[:, None], starts, axis=0)
        # columns of the costly variables come from the copies; the pivot is among them
        replace = costly[complete][:, tables.variable_of_column]
        post[rows] = np.where(replace, mixed, post[rows])
    done[rows] = True
    return done, log_z[done], post[done]


def _constants(tables: _Tables, states: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """Sum of the log CPT entries of the families with no hidden variable, per row."""
    base = (states[:, tables.scope_vars] * tables.scope_strides).sum(-1) + tables.start
    touched = (hidden[:, tables.scope_vars] & tables.scope_valid).any(-1)
    return np.where(touched, 0.0, tables.flat_log[base]).sum(1)


def _enumerate(tables: _Tables, states: np.ndarray, observed: np.ndarray, posteriors: bool,
               focus: np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One pass of :func:`answer_local` without splitting, over full-length arrays.

    Returns ``done`` (B,), log_z (B,): the constants plus the cheap components' log
    normalizers, posteriors (B, columns) with the cheap components filled in, and the mask
    (B, n) of the variables in costly components (whose rows are not done).
    """
    b, n = states.shape
    hidden = ~observed
    ncols = int(tables.columns[-1])
    cell, label = _components(tables, hidden if focus is None else hidden & focus)
    comp_of_cell = np.unique(label, return_inverse=True)[1].reshape(-1)
    n_comp = int(comp_of_cell.max()) + 1 if cell.size else 0
    members = np.zeros((n_comp, n), dtype=bool)
    members[comp_of_cell, cell % n] = True
    comp_row = np.zeros(n_comp, dtype=np.int64)
    comp_row[comp_of_cell] = cell // n
    packed = np.ascontiguousarray(np.packbits(members, axis=1))
    keys = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
    distinct, first, set_of_comp = np.unique(keys, return_index=True, return_inverse=True)
    set_of_comp = set_of_comp.reshape(-1)
    located = [tables.where.get(k) or tables.locate(k, np.flatnonzero(members[i]))
               for k, i in zip(map(bytes, distinct), first, strict=True)]
    bucket_of_set = np.array([s for s, _ in located], dtype=np.int64).reshape(-1)
    id_of_set = np.array([i for _, i in located], dtype=np.int64).reshape(-1)
    costly_comp = (id_of_set < 0)[set_of_comp]
    costly = np.zeros((b, n), dtype=bool)
    which, var = np.nonzero(members[costly_comp])
    costly[comp_row[costly_comp][which], var] = True
    done = ~costly.any(1)
    log_z = _constants(tables, states, hidden)
    post = np.zeros((b, ncols + 1))  # the last column absorbs padded scatters
    rows_seen, vars_seen = np.nonzero(observed)
    post[rows_seen, tables.columns[vars_seen] + states[rows_seen, vars_seen]] = 1.0

    keep = ~costly_comp
    comp_bucket = bucket_of_set[set_of_comp]
    comp_id = id_of_set[set_of_comp]
    flat_states = states.ravel()
    z_rows, z_logs, out_cells, out_weights = [], [], [], []
    flat_post = post.reshape(-1)
    for size, bucket in tables.buckets.items():
        chosen = np.flatnonzero(keep & (comp_bucket == size))
        if not chosen.size:
            continue
        offsets, obs_vars, obs_strides, cells, columns, cell_columns, valid = bucket.arrays(ncols)
        # a product of this many factors cannot underflow unless CPT entries are tiny
        in_logs = bucket.factors * tables.log_floor < _LOG_SAFE
        step = max(1, _CHUNK_ELEMS // (bucket.factors * bucket.size))
        for lo in range(0, chosen.size, step):
            part = chosen[lo:lo + step]
            ids, rows = comp_id[part], comp_row[part]
            base = (flat_states[rows[:, None, None] * n + obs_vars[ids]]
                    * obs_strides[ids]).sum(-1)  # (C, F) flat index of the observed part
            index = offsets[ids]
            index += base[:, :, None]  # (C, F, J)
            if in_logs:
                logs = np.where(valid[ids], tables.flat_log[index].sum(1), -np.inf)
                top = logs.max(1, keepdims=True)
                top = np.where(np.isfinite(top), top, 0.0)
                weights = np.exp(logs - top)
            else:
                weights = tables.flat_prob[index].prod(1)
                weights *= valid[ids]
                top = np.zeros((len(part), 1))
            z = weights.sum(1, keepdims=True)
            weights /= np.where(z > 0, z, 1.0)
            with np.errstate(divide="ignore"):
                z_logs.append((np.log(z) + top)[:, 0])
            z_rows.append(rows)
            if not posteriors:
                continue
            if bucket.size * bucket.slots < _SMALL_TABLE:  # summed below, in one call
                out_cells.append((rows[:, None, None] * (ncols + 1) + cell_columns[ids]).ravel())
                out_weights.append(np.broadcast_to(
                    weights[:, None, :], (len(part), bucket.slots, bucket.size)).ravel())
                continue
            # large tables: sum each component's table into its own (slot, state) cells (a
            # scatter into a small table per component is much faster than into the whole
            # output), then put those cells in place: no two components share a column
            local = torch.from_numpy(cells[ids].reshape(len(part), -1))
            spread = torch.from_numpy(weights)[:, None, :].expand(-1, bucket.slots, -1)
            sums = torch.zeros(len(part), columns.shape[1], dtype=torch.float64)
            sums.scatter_add_(1, local, spread.reshape(len(part), -1))
            flat_post[rows[:, None] * (ncols + 1) + columns[ids]] = sums.numpy()
    if z_rows:
        log_z += np.bincount(np.concatenate(z_rows), np.concatenate(z_logs), minlength=b)
    if out_cells:
        flat_post += np.bincount(np.concatenate(out_cells), np.concatenate(out_weights),
                                 minlength=flat_post.size)
    return done, log_z, post[:, :ncols], costly
