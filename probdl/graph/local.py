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
A component whose enumeration would cost too much (ten linked variables make a table of
10^4-10^5 entries) is summed out one variable at a time instead, along one elimination tree for
the whole network (:mod:`probdl.graph.local_elimination`); the rows that path hands back go to
the compiled plans. The same tables give EM's expected family counts (:func:`expected_counts`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .local_elimination import eliminate
from .local_tables import MAX_TABLE, Tables, tables_for
from .plan import Structure

__all__ = ["answer_local", "answerable", "expected_counts"]

# Padded gather work per chunk (elements): bounds the memory of one numpy call.
_CHUNK_ELEMS = 2_000_000
# Products of factors stay in probability space while they cannot fall below exp(-600).
_LOG_SAFE = -600.0
# Components with fewer (variable, table entry) pairs than this add into the posteriors in
# one bincount over all of them; larger ones sum into a small table each first.
_SMALL_TABLE = 256


def _components(tables: Tables, hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
                 posteriors: bool = True, eliminate_costly: bool = True,
                 memory_budget: float = float("inf")
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact log P(e) and all posteriors for the rows whose hidden components are small.

    Parameters
    ----------
    structure : the network's :class:`~probdl.graph.plan.Structure`.
    cpts : the CPT arrays in variable order, or the engine's ``CptList`` (which then caches the
        flattened tables and the components seen, so later calls skip building them).
    states, observed : (B, n) state indices and observed mask; hard evidence only.
    max_work : a component is enumerated only if its (padded) table size times its number of
        factors is at most this; costlier ones are summed out along the elimination tree.
    posteriors : False computes log P(e) only (``post`` then has no columns).
    eliminate_costly : False leaves rows with a costly component out (``done`` False) instead.
    memory_budget : bytes for the elimination's tables and messages (see
        :func:`~probdl.graph.local_elimination.eliminate`).

    Returns
    -------
    done : bool (B,), the rows answered here: all but those with a step of the elimination
        tree over ``MAX_TABLE`` entries (or, with ``eliminate_costly=False``, a costly component).
    log_z : (D,) log P(evidence) of the answered rows (``-inf`` where it is impossible).
    post : (D, sum of cards) posteriors of every variable side by side (one-hot where observed).
    """
    tables = tables_for(structure, cpts, max_work)
    done, log_z, post, costly = _enumerate(tables, states, observed, posteriors)
    if not posteriors:
        post = post[:, :0]
    left = np.flatnonzero(~done)
    if eliminate_costly and left.size:
        # rows with a costly component: their costly variables are summed out one at a time
        # along the elimination tree (local_elimination.py); the cheap components and the
        # constants above are theirs already, and the tree's families are exactly the ones
        # left out of them (those with a costly member)
        ve_done, ve_log_z, ve_post = eliminate(tables, structure, states[left], costly[left],
                                               posteriors, memory_budget)
        rows = left[ve_done]
        log_z[rows] += ve_log_z[ve_done]
        if posteriors:
            replace = costly[rows][:, tables.variable_of_column]
            post[rows] = np.where(replace, ve_post[ve_done], post[rows])
        done[rows] = True
    return done, log_z[done], post[done]


def _families(tables: Tables, states: np.ndarray, hidden: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """(B, n): each family's flat CPT index at the row's states, and whether it has a hidden
    variable (where the index is meaningless)."""
    base = (states[:, tables.scope_vars] * tables.scope_strides).sum(-1) + tables.start
    touched = (hidden[:, tables.scope_vars] & tables.scope_valid).any(-1)
    return base, touched


def _constants(tables: Tables, states: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """Sum of the log CPT entries of the families with no hidden variable, per row."""
    base, touched = _families(tables, states, hidden)
    return np.where(touched, 0.0, tables.flat_log[base]).sum(1)


def _layout(tables: Tables, hidden: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The components of every row's hidden cells and where their index tables are.

    Returns, per component, its row, its bucket size and its id in the bucket (-1: too costly
    to enumerate), and the (B, n) mask of the variables in costly components.
    """
    b, n = hidden.shape
    cell, label = _components(tables, hidden)
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
    comp_bucket = np.array([s for s, _ in located], dtype=np.int64).reshape(-1)[set_of_comp]
    comp_id = np.array([i for _, i in located], dtype=np.int64).reshape(-1)[set_of_comp]
    costly_comp = comp_id < 0
    costly = np.zeros((b, n), dtype=bool)
    which, var = np.nonzero(members[costly_comp])
    costly[comp_row[costly_comp][which], var] = True
    return comp_row, comp_bucket, comp_id, costly


def answerable(tables: Tables, observed: np.ndarray) -> np.ndarray:
    """(B,) bool: the rows whose hidden components are all cheap enough to enumerate (what
    :func:`expected_counts` answers), found without evaluating anything."""
    return ~_layout(tables, ~observed)[3].any(1)


def expected_counts(tables: Tables, states: np.ndarray, observed: np.ndarray,
                    weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EM's E-step for the rows whose hidden components are all cheap (no elimination).

    Parameters
    ----------
    tables : from :func:`~probdl.graph.local_tables.tables_for`, with the current CPTs put in
        by ``tables.set_cpts``.
    states, observed : (B, n) hard evidence; weights : (B,) row multiplicities.

    Returns
    -------
    done : bool (B,); log_z : (D,) log P(row) of the done rows; counts : the expected counts of
    every CPT entry over the done rows, weighted, laid out like ``tables.flat_log`` (entry 0
    is padding): sum_r w_r P(family config | row r) at each family's flat index.
    """
    counts = np.zeros_like(tables.flat_log)
    done, log_z, _, _ = _enumerate(tables, states, observed, False, weights, counts)
    return done, log_z[done], counts


def _enumerate(tables: Tables, states: np.ndarray, observed: np.ndarray, posteriors: bool,
               count_weights: np.ndarray | None = None,
               counts: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The enumeration of :func:`answer_local` (costly components left out), over all rows.

    Returns ``done`` (B,), log_z (B,): the constants plus the cheap components' log
    normalizers, posteriors (B, columns) with the cheap components filled in, and the mask
    (B, n) of the variables in costly components (whose rows are not done). With
    ``count_weights``, expected family counts of the done rows are added into ``counts``.
    """
    b, n = states.shape
    hidden = ~observed
    ncols = int(tables.columns[-1])
    comp_row, comp_bucket, comp_id, costly = _layout(tables, hidden)
    done = ~costly.any(1)
    base, touched = _families(tables, states, hidden)
    log_z = np.where(touched, 0.0, tables.flat_log[base]).sum(1)  # the constants
    if counts is not None:  # fully observed families count once per (done) row
        use = ~touched & done[:, None]
        counts += np.bincount(base[use], np.broadcast_to(count_weights[:, None], use.shape)[use],
                              minlength=counts.size)
    post = np.zeros((b, ncols + 1))  # the last column absorbs padded scatters
    rows_seen, vars_seen = np.nonzero(observed)
    post[rows_seen, tables.columns[vars_seen] + states[rows_seen, vars_seen]] = 1.0

    keep = comp_id >= 0
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
            if counts is not None:
                # each factor's entry at each joint state gets that state's posterior
                # (padded factors hit entry 0, padded states weigh nothing)
                mine = done[rows]
                share = weights[mine] * count_weights[rows[mine]][:, None]
                counts += np.bincount(index[mine].ravel(), np.broadcast_to(
                    share[:, None, :], index[mine].shape).ravel(), minlength=counts.size)
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
