"""The loop over rows: each row on the network's tree or on a tree built for its own evidence.

    # called by probdl.graph.inference.engine.Engine._call
    run_rows(*engine.tree_arrays, engine.arrays.net_args(), route, need, budget, ...)

The maths: a row's cost on a tree is the sum of its clique tables over their hidden members
(plus messages), ``need``; a tree triangulated for the row's evidence alone (observed
variables out of the moral graph) can be far smaller, at the price of building it (greedy
elimination, milliseconds at most). The engine routes rows whose tables would outweigh the
building (``route`` 1); the row then runs on whichever tree is smaller, so routing never
costs more than building. Both trees share one layout, so one compiled pass
(:func:`.kernels._row`) answers either. Calls on the same rows with other CPTs (EM's
iterations) can build the rows' own trees once (:func:`build_rows`) and hand them back.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .kernels import _row
from .odometer import RUN
from .rowtree import build, builder_scratch

__all__ = ["build_rows", "no_trees", "run_rows", "run_shared_rows"]


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
def _tries_own(route_r, tried, taken):
    """Whether a row builds its own tree: always where routed to it (2); a candidate (1) while
    fewer than 32 have been tried or at least 1 in 8 of those tried kept theirs."""
    return route_r == 2 or (route_r == 1 and (tried < 32 or 8 * taken >= tried))


@njit(cache=True, nogil=True)
def _keeps_own(route_r, own_cost, gain, cost_r):
    """Whether a built tree is used: always where routed to it, else when it is cheaper."""
    return route_r == 2 or own_cost < gain * cost_r


@njit(cache=True, nogil=True)
def run_rows(buf, off, net, route, need, cost, gain, budget, target, kinds, more, cpt,
             pot, lmin, factor_on, states, hidden, soft, weights, width, lg, maxprod, down,
             uniforms, log_z, post, counts, pot_counts, failed, assign, used, kept):
    """Every row's passes, on the network's tree (packed in ``buf``/``off``) or, where
    ``route`` says (1: if that costs less than ``gain`` times ``cost``, the row's cost on
    the network's tree, whose workspace is ``need``; 2: always), on a tree built for the
    row's own evidence (:func:`.rowtree.build`, heuristics ``kinds``, ``more``; a query's
    ``target`` >= 0 roots it and only collects); route-1 rows stop building once 32 have
    shown it rarely pays. ``used`` says which ran (0 the network's tree, 1 the row's own;
    2 and 3: neither, that tree's workspace would exceed ``budget`` entries). ``kept``: the
    rows' own trees from :func:`build_rows` (the same rows and evidence, other CPTs: nothing
    is built; the constants are valued with ``cpt``), or :func:`no_trees`.
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
    bscratch = builder_scratch(n if own_rows and not kept[0].size else 0)
    on = factor_on if factor_on.size else np.ones(n, dtype=np.bool_)
    no_factors = factor_on[:0]
    no_consts = np.zeros(0, dtype=np.int64)
    tried = taken = 0
    for r in range(states.shape[0]):
        # the tree this row runs on: the network's, or its own (one call site below)
        tb, to, fo, d, ows, oS, ooffs, odig, wants = (buf, off, factor_on, down, ws, S, offs,
                                                      dig, need[r])
        const, consts = 0.0, no_consts
        if kept[0].size:  # trees built once for these rows (EM): only the constants change
            if kept[0][r]:
                obuf = kept[1][kept[2][r]:kept[2][r + 1]]
                ooff, own_need = kept[3][r], kept[6][r]
                oconsts = kept[4][kept[5][r]:kept[5][r + 1]]
                oconst = 0.0
                for e in oconsts:
                    oconst += cpt[e] if lg else (np.log(cpt[e]) if cpt[e] > 0.0 else -np.inf)
                wanted = True
            else:
                wanted = False
        elif _tries_own(route[r], tried, taken):
            obuf, ooff, oconst, oconsts, own_need, own_cost, _ = build(
                r, net, states, hidden, on, target, cpt, lg, kinds, more, bscratch)
            tried += 1
            wanted = _keeps_own(route[r], own_cost, gain, cost[r])
        else:
            wanted = False
        if wanted:
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


def no_trees():
    """:func:`run_rows`'s ``kept`` when nothing is kept: every routed row builds its tree."""
    z = np.zeros(0, dtype=np.int64)
    return (np.zeros(0, dtype=np.bool_), z, z, np.zeros((0, 1), dtype=np.int64), z, z,
            np.zeros(0))


@njit(cache=True, nogil=True)
def build_rows(net, route, cost, gain, states, hidden, on, target, cpt, lg, kinds, more):
    """The own trees :func:`run_rows` would build and use for these rows, packed once for
    calls that differ in CPTs only (EM's iterations): (used, the trees' buffers one after
    another, their starts, offsets, constant CPT entries, their starts, workspaces)."""
    b = states.shape[0]
    bscratch = builder_scratch(net[4].size)
    use = np.zeros(b, dtype=np.bool_)
    bufs = [np.zeros(0, dtype=np.int64) for _ in range(0)]
    offs = [np.zeros(0, dtype=np.int64) for _ in range(0)]
    cons = [np.zeros(0, dtype=np.int64) for _ in range(0)]
    needs = np.zeros(b)
    tried = taken = 0
    for r in range(b):
        if _tries_own(route[r], tried, taken):  # the same rule as run_rows: the same trees
            obuf, ooff, _, oconsts, own_need, own_cost, _ = build(
                r, net, states, hidden, on, target, cpt, lg, kinds, more, bscratch)
            tried += 1
            if _keeps_own(route[r], own_cost, gain, cost[r]):
                taken += 1
                use[r] = True
                needs[r] = own_need
                bufs.append(obuf)
                offs.append(ooff)
                cons.append(oconsts)
                continue
        bufs.append(np.zeros(0, dtype=np.int64))
        offs.append(np.zeros(0, dtype=np.int64))
        cons.append(np.zeros(0, dtype=np.int64))
    width = 1
    for o in offs:
        width = max(width, o.size)
    bstart = np.zeros(b + 1, dtype=np.int64)
    cstart = np.zeros(b + 1, dtype=np.int64)
    off = np.zeros((b, width), dtype=np.int64)
    for r in range(b):
        bstart[r + 1] = bstart[r] + bufs[r].size
        cstart[r + 1] = cstart[r] + cons[r].size
        off[r, :offs[r].size] = offs[r]
    buf = np.empty(bstart[b], dtype=np.int64)
    con = np.empty(cstart[b], dtype=np.int64)
    for r in range(b):
        buf[bstart[r]:bstart[r + 1]] = bufs[r]
        con[cstart[r]:cstart[r + 1]] = cons[r]
    return use, buf, bstart, off, con, cstart, needs


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
