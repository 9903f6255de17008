"""The loop over rows: each row on the network's tree or on a tree built for its own evidence.

    # called by probdl.graph.inference.engine.Engine._call
    run_rows(*engine.tree_arrays, engine.arrays.net_args(), route, need, budget, ...)

The maths: a row's cost on a tree is the sum of its clique tables over their hidden members
(plus messages), ``need``; a tree triangulated for the row's evidence alone (observed
variables out of the moral graph) can be far smaller, at the price of building it (greedy
elimination, milliseconds at most). The engine routes rows whose tables would outweigh the
building (``route`` 1); the row then runs on whichever tree is smaller, so routing never
costs more than building. Both trees share one layout, so one compiled pass
(:func:`.kernels._row`) answers either; nothing is kept between rows or calls.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .kernels import _row
from .odometer import RUN
from .rowtree import build, builder_scratch

__all__ = ["run_rows", "run_shared_rows"]


@njit(cache=True, nogil=True)
def _workspace(buf, off):
    """The per-row scratch arrays the passes need on a packed tree (sized by its widest clique,
    its most factors and children groups): index vectors, strides, run offsets, digits."""
    cl_start, cards = buf[off[0]:off[1]], buf[off[3]:off[4]]
    gr_start, gk_start, fa_start = buf[off[8]:off[9]], buf[off[9]:off[10]], buf[off[11]:off[12]]
    m = cl_start.size - 1
    mw, kw, cw = 1, 1, 0
    for c in range(m):
        mw = max(mw, cl_start[c + 1] - cl_start[c])
        kw = max(kw, fa_start[c + 1] - fa_start[c])
        cw = max(cw, gr_start[c + 1] - gr_start[c])
    ng = gk_start.size - 1
    t = kw + 1 + cw
    run_width = max(RUN, cards.max()) if cards.size else RUN  # one digit always fits
    # gp_off, gm_off, gsz (children groups: their messages' product, the belief summed onto
    # their separator, its size), base, idx, hidx, hcard, digit, last (strides of the fastest
    # digit), home_col, home_digit, tab_off, up_off, dn_off, vary (whether a target depends
    # on the fast digits): one row each, as kernels._row reads them
    ints = np.zeros((15, max(ng + 1, t, mw, m + 1)), dtype=np.int64)
    return (ints, np.zeros((mw, t), dtype=np.int64),
            np.zeros((t, run_width), dtype=np.int64),  # offsets of the fast digits
            np.zeros((mw, run_width), dtype=np.int64))  # their values at each of their states


@njit(cache=True, nogil=True)
def run_rows(buf, off, net, route, need, cost, gain, budget, target, kinds, more, cpt,
             pot, lmin, factor_on, states, hidden, soft, weights, width, lg, maxprod, down,
             uniforms, log_z, post, counts, pot_counts, failed, assign, used):
    """Every row's passes, on the network's tree (packed in ``buf``/``off``) or, where
    ``route`` says (1: if that costs less than ``gain`` times ``cost``, the row's cost on
    the network's tree, whose workspace is ``need``; 2: always), on a tree built for the
    row's own evidence (:func:`.rowtree.build`, heuristics ``kinds``, ``more``; a query's
    ``target`` >= 0 roots it and only collects); route-1 rows stop building once 32 have
    shown it rarely pays. ``used`` says which ran (0 the network's tree, 1 the row's own;
    2 and 3: neither, that tree's workspace would exceed ``budget`` entries).
    ``down``: 0 collect only (log P(e); max log P(x, e) with ``maxprod``), 1 also distribute
    (posteriors into ``post``, expected counts into ``counts``; either may be empty), 2 draw
    the hidden variables into ``assign`` with ``uniforms`` (B, at least as many as cliques
    and variables), 3 with ``maxprod``: the MAP state into ``assign``.
    ``maxprod`` needs ``lg`` (max-product runs on logarithms) and ``cpt`` holding logs.
    ``pot`` holds the compiled clique potentials (logs with ``lg``); expected counts of a
    clique with one go to ``pot_counts`` at its entries, the others' to ``counts``."""
    ws, S, offs, dig = _workspace(buf, off)
    work = np.empty(max(width, 1))
    scratch = np.empty(work.size if lg else 1)  # running log-sum-exp sums: logarithms only
    n = net[4].size
    own_rows = False
    for r in range(route.size):
        own_rows |= route[r] > 0
    bscratch = builder_scratch(n if own_rows else 0)
    on = factor_on if factor_on.size else np.ones(n, dtype=np.bool_)
    no_factors = factor_on[:0]
    no_consts = np.zeros(0, dtype=np.int64)
    tried = taken = 0
    for r in range(states.shape[0]):
        # the tree this row runs on: the network's, or its own (one call site below)
        tb, to, fo, d, ows, oS, ooffs, odig, wants = (buf, off, factor_on, down, ws, S, offs,
                                                      dig, need[r])
        const, consts = 0.0, no_consts
        # candidates build their tree until 32 have shown it rarely pays (< 1 in 8 used it)
        if route[r] == 2 or (route[r] == 1 and (tried < 32 or 8 * taken >= tried)):
            obuf, ooff, oconst, oconsts, own_need, own_cost, _ = build(
                r, net, states, hidden, on, target, cpt, lg, kinds, more, bscratch)
            tried += 1
            if route[r] == 2 or own_cost < gain * cost[r]:
                taken += 1
                const, consts = oconst, oconsts
                used[r] = 1
                if const == -np.inf and own_need <= budget:  # an observed family of P 0
                    log_z[r] = -np.inf
                    continue
                ows, oS, ooffs, odig = _workspace(obuf, ooff)
                tb, to, fo, wants = obuf, ooff, no_factors, own_need
                d = 4 if (target >= 0 and down == 1) else down
        if wants > budget:
            used[r] += 2
            continue
        if wants > work.size:
            work = np.empty(int(wants))
            scratch = np.empty(work.size if lg else 1)
        _row(r, tb, to, cpt, pot, lmin, fo, states, hidden, soft, weights, lg, maxprod, d, uniforms,
             log_z, post, counts, pot_counts, failed, assign, ows, oS, ooffs, odig, work,
             scratch)
        if consts.size and not failed[r] and log_z[r] > -np.inf:
            log_z[r] += const
            if down == 1 and counts.size:
                for e in consts:
                    counts[e] += weights[r]


@njit(cache=True, nogil=True)
def run_shared_rows(buf, off, cpt, pot, lmin, factor_on, states, hidden, soft, weights, width, lg,
                    maxprod, down, uniforms, log_z, post, counts, pot_counts, failed, assign):
    """:func:`run_rows` for calls where every row runs on the network's tree: it does not
    compile the builder of rows' own trees, so a process that never needs one (few hidden
    variables, small networks) does not pay for compiling it."""
    ws, S, offs, dig = _workspace(buf, off)
    work = np.empty(max(width, 1))
    scratch = np.empty(work.size if lg else 1)
    for r in range(states.shape[0]):
        _row(r, buf, off, cpt, pot, lmin, factor_on, states, hidden, soft, weights, lg, maxprod,
             down, uniforms, log_z, post, counts, pot_counts, failed, assign, ws, S, offs, dig,
             work, scratch)
