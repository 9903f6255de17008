"""The tight loops of the compiled passes: runs of the fastest odometer digits, and products.

    # used by probdl.graph.inference.kernels; each handles R joint states of a clique's fastest
    # hidden digits, whose index offsets into every array it reads are precomputed (``offs``)

The maths: a clique table entry is the product of its factors (a compiled potential, or the
CPTs homed at the clique, each read at base + offset) and of its children groups' messages;
collect sums the entries onto the message to the parent, distribute multiplies by the
parent's message and sums the belief onto each child group's separator and into the home
variables' posteriors. A product of two non-zero numbers below ``FLOOR`` has lost digits: the
row is flagged and answered again in logarithms.
"""

from __future__ import annotations

import math

from numba import njit

__all__ = ["FLOOR", "LOG_FLOOR"]

FLOOR = 1e-290
LOG_FLOOR = math.log(FLOOR)


@njit(cache=True, nogil=True)
def _times_run(R, t0, b, offs, src, work, check):
    """work[t0 + e] *= src[b + offs[e]] over a run; whether a product lost digits (only
    looked at with ``check``: the caller knows when no product of non-zero factors can)."""
    if not check:
        for e in range(R):
            work[t0 + e] *= src[b + offs[e]]
        return False
    lost = False
    for e in range(R):
        val = work[t0 + e]
        x = src[b + offs[e]]
        p = val * x
        lost |= (p < FLOOR) & (val != 0.0) & (x != 0.0)
        work[t0 + e] = p
    return lost


@njit(cache=True, nogil=True)
def _collect_run(R, j0, tab, up, K, nch, g0, gp_off, idx, offs, vary, src, work, check):
    """The fastest digits (``R`` joint states, index offsets ``offs``) as tight loops in the
    collect pass (probabilities): each entry the product of the clique's ``K`` factors read
    from ``src`` (its compiled potential, K = 1, or its CPTs) and of its children groups'
    products, stored and summed into the message. Factors that do not depend on the fast
    digits (``vary`` 0) are one number for the run; the others are multiplied in one at a
    time over the run (one gather and one multiply per inner loop). Returns whether a
    product lost digits (the varying factors' products only with ``check``)."""
    lost = False
    t0 = tab + j0
    val = 1.0
    for t in range(K + 1 + nch):
        if vary[t] or t == K:
            continue
        x = src[idx[t]] if t < K else work[gp_off[g0 + t - K - 1] + idx[t]]
        p = val * x
        lost |= (p < FLOOR) & (val != 0.0) & (x != 0.0)
        val = p
    for e in range(R):
        work[t0 + e] = val
    for t in range(K):
        if vary[t]:
            lost |= _times_run(R, t0, idx[t], offs[t], src, work, check)
    for t in range(K + 1, K + 1 + nch):
        if vary[t]:
            lost |= _times_run(R, t0, idx[t] + gp_off[g0 + t - K - 1], offs[t], work, work,
                               check)
    b = up + idx[K]
    if vary[K]:
        for e in range(R):
            work[b + offs[K, e]] += work[t0 + e]
    else:
        z = 0.0
        for e in range(R):
            z += work[t0 + e]
        work[b] += z
    return lost


@njit(cache=True, nogil=True)
def _fixed_entry(c, r, cl_start, cl_var, states, pot_start, pot_cards):
    """Where clique c's potential holds row r's states (every member fixed)."""
    at = pot_start[c]
    st = 1
    for p in range(cl_start[c + 1] - cl_start[c] - 1, -1, -1):
        v = cl_var[cl_start[c] + p]
        at += (states[r, v] % pot_cards[v]) * st
        st *= pot_cards[v]
    return at


@njit(cache=True, nogil=True)
def _times(val, x, lg):
    """val * x (val + x with logarithms), and whether two non-zero factors lost digits."""
    if lg:
        return val + x, False
    p = val * x
    return p, (p < FLOOR) & (val != 0.0) & (x != 0.0)


@njit(cache=True, nogil=True)
def _belief_run(R, t0, dn, K, has_parent, idx, offs, vary, work):
    """The fastest digits: table entries times the parent's message (in place); returns
    their sum."""
    z = 0.0
    if has_parent and vary[K]:
        b = dn + idx[K]
        for e in range(R):
            x = work[t0 + e] * work[b + offs[K, e]]
            work[t0 + e] = x
            z += x
        return z
    m = work[dn + idx[K]] if has_parent else 1.0
    for e in range(R):
        x = work[t0 + e] * m
        work[t0 + e] = x
        z += x
    return z


@njit(cache=True, nogil=True)
def _distribute_run(R, t0, nch, g0, gm_off, idx, offs, vary, K, work, pot_counts, wt, post, r,
                    home_col, home_digit, dig, nh, scale):
    """The fastest digits in the distribute pass (probabilities): the beliefs (the table
    entries times ``scale``, their normalizer, in place: the table is not read again) summed
    onto each child group's separator, into the posteriors of the ``nh`` home variables
    (:func:`_scatter_run`) and, weighted, into the potential's expected counts when ``wt`` is
    not 0."""
    z = 0.0
    for e in range(R):
        x = work[t0 + e] * scale
        work[t0 + e] = x
        z += x
    _scatter_run(R, t0, z, nch, g0, gm_off, idx, offs, vary, K, work, post, r, home_col,
                 home_digit, dig, nh)
    if wt != 0.0:
        b = idx[0]
        if vary[0]:
            for e in range(R):
                pot_counts[b + offs[0, e]] += wt * work[t0 + e]
        else:
            pot_counts[b] += wt * z


@njit(cache=True, nogil=True)
def _scatter_run(R, t0, z, nch, g0, gm_off, idx, offs, vary, K, work, post, r, home_col,
                 home_digit, dig, nh):
    """The beliefs of a run (``z`` their sum) summed onto each child group's separator and
    into the posteriors of the ``nh`` home variables (column ``home_col`` plus the entry's
    value of fast digit ``home_digit``, if any); a target that does not depend on the fast
    digits (``vary`` 0) gets the run's sum once. Without expected counts the distribute pass
    calls it on beliefs left unnormalized (:func:`_belief_run`'s products): the messages to
    children are rescaled anyway and the posteriors are divided by the clique's sum after."""
    for i in range(nch):
        t = K + 1 + i
        b = gm_off[g0 + i] + idx[t]
        if vary[t]:
            for e in range(R):
                work[b + offs[t, e]] += work[t0 + e]
        else:
            work[b] += z
    for q in range(nh):
        d = home_digit[q]
        if d >= 0:
            col = home_col[q]
            for e in range(R):
                post[r, col + dig[d, e]] += work[t0 + e]
        else:
            post[r, home_col[q]] += z
