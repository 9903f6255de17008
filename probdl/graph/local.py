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

from . import local_tables
from .local_elimination import eliminate
from .local_tables import MAX_TABLE, Tables, tables_for
from .plan import Structure

__all__ = ["answer_local", "answerable", "expected_counts", "soft_columns"]

# Products of factors stay in probability space while they cannot fall below exp(-600).
_LOG_SAFE = -600.0


def answer_local(structure: Structure, cpts: Sequence[np.ndarray], states: np.ndarray,
                 observed: np.ndarray, max_work: float = float(MAX_TABLE) * 32,
                 posteriors: bool = True, eliminate_costly: bool = True,
                 memory_budget: float = float("inf"), soft: np.ndarray | None = None
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
    soft : (B, sum of cards), optional: soft evidence, each variable's likelihood of each of its
        states side by side (ones where a variable has none). It multiplies in as a factor on
        its variable, hidden or observed.

    Returns
    -------
    done : bool (B,), the rows answered here. The elimination hands back rows whose products
        underflow, whose tables are zero or which need too much memory or a step over
        ``MAX_TABLE`` entries; they are enumerated whole in log space instead where each of
        their components has at most ``MAX_TABLE`` joint states, and left out otherwise (and,
        with ``eliminate_costly=False``, every row with a costly component is left out).
    log_z : (D,) log P(evidence) of the answered rows (``-inf`` where it is impossible).
    post : (D, sum of cards) posteriors of every variable side by side (one-hot where observed).
    """
    tables = tables_for(structure, cpts, max_work)
    done, log_z, post, costly = _enumerate(tables, states, observed, posteriors, soft=soft)
    if not posteriors:
        post = post[:, :0]
    left = np.flatnonzero(~done)
    if eliminate_costly and left.size:
        # rows with a costly component: their costly variables are summed out one at a time
        # along the elimination tree (local_elimination.py); the cheap components and the
        # constants above are theirs already, and the tree's families are exactly the ones
        # left out of them (those with a costly member)
        ve_done, ve_log_z, ve_post = eliminate(tables, structure, states[left], costly[left],
                                               posteriors, memory_budget,
                                               None if soft is None else soft[left])
        rows = left[ve_done]
        log_z[rows] += ve_log_z[ve_done]
        if posteriors:
            replace = costly[rows][:, tables.variable_of_column]
            post[rows] = np.where(replace, ve_post[ve_done], post[rows])
        done[rows] = True
        # rows the tree handed back (a product underflowed, a zero table, a huge step):
        # enumerated whole in log space where every component fits in MAX_TABLE entries
        retry = left[~ve_done]
        if retry.size:
            whole = tables_for(structure, cpts, float("inf"))
            r_done, r_log_z, r_post, _ = _enumerate(
                whole, states[retry], observed[retry], posteriors,
                soft=None if soft is None else soft[retry], log_safe=float("inf"))
            rows = retry[r_done]
            log_z[rows], done[rows] = r_log_z[r_done], True
            if posteriors:
                post[rows] = r_post[r_done]
    return done, log_z[done], post[done]


def _layout(tables: Tables, hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The components of every row's hidden cells: per component its row and the id of its
    variable set in ``tables.components`` (-1: too costly to enumerate), and the (B, n) mask
    of the variables in costly components."""
    from .kernels import label_components  # numba: compiled on use

    b, n = hidden.shape
    cell_comp = np.full((b, n), -1, dtype=np.int64)
    comp_row = np.empty(int(hidden.sum()), dtype=np.int64)
    small = n < local_tables.INT_KEY_BITS  # sets as integer bit masks, all looked up at once
    keys = np.empty(comp_row.size if small else 0, dtype=np.int64)
    found = label_components(np.ascontiguousarray(hidden), tables.adj_start, tables.adj,
                             cell_comp, comp_row, keys)
    comp_row = comp_row[:found]
    if small:
        distinct, set_of_comp = np.unique(keys[:found], return_inverse=True)
        bit = np.int64(1) << np.arange(n, dtype=np.int64)
        located = tables.known.lookup(distinct, lambda k: tables.locate(
            k.to_bytes(8, "little"), np.flatnonzero(k & bit)))[:, 0]
    else:
        members = np.zeros((found, n), dtype=bool)
        r, v = np.nonzero(cell_comp >= 0)
        members[cell_comp[r, v], v] = True
        packed = np.ascontiguousarray(np.packbits(members, axis=1))
        keys = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
        distinct, first, set_of_comp = np.unique(keys, return_index=True, return_inverse=True)
        where = tables.where
        located = np.array([where[k] if k in where else tables.locate(k, np.flatnonzero(members[i]))
                            for k, i in zip(map(bytes, distinct), first, strict=True)],
                           dtype=np.int64)
    comp_id = located.reshape(-1)[set_of_comp.reshape(-1)]
    # index -1 (an observed cell) reads the appended False
    costly = np.append(comp_id < 0, False)[cell_comp]
    return comp_row, comp_id, costly


def answerable(tables: Tables, observed: np.ndarray) -> np.ndarray:
    """(B,) bool: the rows whose hidden components are all cheap enough to enumerate (what
    :func:`expected_counts` answers), found without evaluating anything."""
    return ~_layout(tables, ~observed)[2].any(1)


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
               counts: np.ndarray | None = None, soft: np.ndarray | None = None,
               log_safe: float | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The enumeration of :func:`answer_local` (costly components left out), over all rows.

    Returns ``done`` (B,), log_z (B,): the constants plus the cheap components' log
    normalizers, posteriors (B, columns; no rows without ``posteriors``) with the cheap
    components filled in, and the mask (B, n) of the variables in costly components (whose
    rows are not done). With ``count_weights``, the expected family counts of the done rows
    are added into ``counts`` (and only the done rows' log_z is complete). ``log_safe``
    (default ``_LOG_SAFE``; inf: always) sets when tables are summed in log space.
    """
    from .kernels import enumerate_components, observed_families  # numba: compiled on use

    b = states.shape[0]
    states = np.ascontiguousarray(states, dtype=np.int64)
    comp_row, comp_id, costly = _layout(tables, ~observed)
    done = ~costly.any(1)
    log_z = np.empty(b)
    post = np.zeros((b if posteriors else 0, int(tables.columns[-1])))
    weights = np.zeros(0) if count_weights is None else np.asarray(count_weights, dtype=np.float64)
    soft, soft_floor = _soft(soft)
    observed_families(states, np.ascontiguousarray(observed), tables.scope_vars,
                      tables.scope_strides, tables.scope_len, tables.start, tables.flat_log,
                      tables.columns, log_z, post, np.zeros(0) if counts is None else counts,
                      weights, done, soft)
    keep = comp_id >= 0
    if counts is not None:
        keep &= done[comp_row]
    f = tables.flat()
    enumerate_components(
        comp_row[keep], comp_id[keep], states,
        tables.flat_prob, tables.flat_log, tables.log_floor,
        _LOG_SAFE if log_safe is None else log_safe, f["c_size"],
        f["c_fstart"], f["f_offstart"], f["f_offsets"], f["f_ostart"], f["o_var"], f["o_stride"],
        f["c_vstart"], f["v_column"], f["v_card"], log_z, post,
        np.zeros(0) if counts is None else counts, weights, soft, soft_floor)
    if not posteriors:
        post = np.zeros((b, 0))
    return done, log_z, post, costly


def _soft(soft: np.ndarray | None) -> tuple[np.ndarray, float]:
    """Soft evidence as the compiled loops take it (no rows: none) and the log of its smallest
    positive entry (0 without)."""
    if soft is None:
        return np.ones((0, 1)), 0.0
    soft = np.ascontiguousarray(soft, dtype=np.float64)
    positive = soft[soft > 0]
    return soft, float(np.log(positive.min())) if positive.size else 0.0


def soft_columns(cards: Sequence[int], soft: dict, size: int) -> tuple[np.ndarray | None,
                                                                        np.ndarray]:
    """Soft evidence (variable index -> (B, k) likelihoods) side by side, (B, sum of cards) with
    ones where a variable has none, each likelihood scaled to a maximum of 1 per row; and the
    log of the scales per row (to add back to log P(e)). None when there is no soft evidence."""
    if not soft:
        return None, np.zeros(size)
    offsets = np.concatenate([[0], np.cumsum(cards)])
    out = np.ones((size, int(offsets[-1])))
    scale = np.zeros(size)
    for v, lik in soft.items():
        lik = np.asarray(lik.detach().cpu() if hasattr(lik, "detach") else lik, dtype=np.float64)
        top = lik.max(1, keepdims=True)
        out[:, offsets[v]:offsets[v + 1]] = lik / top
        scale += np.log(top[:, 0])
    return out, scale
