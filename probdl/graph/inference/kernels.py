"""Compiled per-row passes over the junction tree: sum-product, max-product and sampling.

    # called by probdl.graph.inference.engine.Engine; the arrays describe the compiled tree
    need = row_needs(tree_arrays..., states, hidden)          # workspace entries per row
    run_rows(tree_arrays..., states, hidden, ..., log_z, post, counts, failed)

The maths. Row r fixes its observed variables, so clique C only ranges over its hidden members
H_C(r): its table has prod_{h in H_C} card(h) entries (one entry when nothing is hidden), and a
separator message ranges over the hidden separator members. The schedule is the same for every
row; only the table sizes change, and the odometer below walks exactly the states consistent
with the row's evidence. Each table entry is the product of the CPT entries assigned to the
clique (an observed member adds ``state * stride`` to the flat CPT index, a hidden one is an
odometer digit), the children's messages and, on a variable's home clique, its soft evidence.

Collect (children first): message_C = sum over C minus the separator, rescaled to a maximum of
1; the log of each scale adds to log P(e), as does the log of the root's total. Distribute
(roots first, Hugin): belief_C = table_C * message from the parent, normalized; the message to
child K is sum over C minus S_K of belief_C / message_K (0 where message_K is 0, where the
belief is 0 too). A variable's posterior is read at its home clique; an assigned CPT's
expected count at entry i adds weight * belief at every clique entry that reads i.

A product of two non-zero numbers below ``FLOOR`` flags the row (it may have lost digits); the
caller runs such rows again with ``lg`` set, where tables hold logarithms and messages are
sums of exponentials taken about their running maximum. Max-product (``maxprod``) is the same
collect with max for sum, always in logarithms; it and posterior sampling walk back from the
roots, fixing each clique's separator to what its parent chose and taking the first maximal
entry (or a draw) among the consistent ones, in odometer order.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .odometer import RUN, _advance, _choose, _inner, _last, _layout, _start, _strides, row_needs

__all__ = ["FLOOR", "row_needs", "run_rows"]

FLOOR = 1e-290


@njit(cache=True, nogil=True, inline="always")
def _collect_run(R, j0, tab, up, K, nch, g0, gp_off, idx, offs, pot, work):
    """The fastest digits (``R`` joint states, index offsets ``offs``) as a tight loop in the
    collect pass (probabilities, compiled potential): each entry the potential times its
    children groups' products, stored and summed into the message; returns whether a product
    lost digits."""
    lost = False
    for e in range(R):
        val = pot[idx[0] + offs[0, e]]
        for i in range(nch):
            t = K + 1 + i
            x = work[gp_off[g0 + i] + idx[t] + offs[t, e]]
            p = val * x
            lost |= (p < FLOOR) & (val != 0.0) & (x != 0.0)
            val = p
        work[tab + j0 + e] = val
        work[up + idx[K] + offs[K, e]] += val
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


@njit(cache=True, nogil=True, inline="always")
def _times(val, x, lg):
    """val * x (val + x with logarithms), and whether two non-zero factors lost digits."""
    if lg:
        return val + x, False
    p = val * x
    return p, (p < FLOOR) & (val != 0.0) & (x != 0.0)


@njit(cache=True, nogil=True, inline="always")
def _belief_run(R, t0, dn, K, has_parent, idx, offs, work):
    """The fastest digits: table entries times the parent's message (in place); returns
    their sum."""
    z = 0.0
    for e in range(R):
        b = work[t0 + e] * (work[dn + idx[K] + offs[K, e]] if has_parent else 1.0)
        work[t0 + e] = b
        z += b
    return z


@njit(cache=True, nogil=True, inline="always")
def _distribute_run(R, t0, nch, g0, gm_off, idx, offs, K, work, pot_counts, wt, post, r,
                    home_col, home_digit, dig, nh, scale):
    """The fastest digits in the distribute pass (probabilities, compiled potential): the
    belief summed onto each child group's separator, into the posteriors of the ``nh`` home
    variables (column ``home_col`` plus the entry's value of fast digit ``home_digit``, if
    any) and, weighted, into the potential's expected counts when ``wt`` is not 0; the
    beliefs are the table entries times ``scale`` (their normalizer)."""
    for e in range(R):
        b = work[t0 + e] * scale
        for i in range(nch):
            t = K + 1 + i
            work[gm_off[g0 + i] + idx[t] + offs[t, e]] += b
        for q in range(nh):
            d = home_digit[q]
            post[r, home_col[q] + (dig[d, e] if d >= 0 else 0)] += b
        if wt != 0.0:
            pot_counts[idx[0] + offs[0, e]] += wt * b


@njit(cache=True, nogil=True)
def run_rows(cl_start, cl_var, cl_parent, cards, columns, sep_start, sep_cpos, sep_ppos,
             gr_start, gk_start, gk_list, fa_start, fa_var, fs_start, fa_stride, cpt_start,
             hv_start, hv_pos, pot_start, pot_cards, cpt, pot, factor_on, states, hidden, soft,
             weights, width, lg, maxprod, down, uniforms, log_z, post, counts, pot_counts,
             failed, assign):
    """Every row's passes. ``down``: 0 collect only (log P(e); max log P(x, e) with
    ``maxprod``), 1 also distribute (posteriors into ``post``, expected counts into
    ``counts``; either may be empty), 2 draw the hidden variables into ``assign`` with
    ``uniforms`` (B, cliques), 3 with ``maxprod``: the MAP state into ``assign``, 4 the
    posteriors of the roots' home variables only (a single query's tree is rooted at its
    target's clique).
    ``maxprod`` needs ``lg`` (max-product runs on logarithms) and ``cpt`` holding logs.
    ``pot`` holds the compiled clique potentials (logs with ``lg``); expected counts of a
    clique with one go to ``pot_counts`` at its entries, the others' to ``counts``."""
    m = cl_start.size - 1
    mw, kw, cw = 1, 1, 0
    for c in range(m):
        mw = max(mw, cl_start[c + 1] - cl_start[c])
        kw = max(kw, fa_start[c + 1] - fa_start[c])
        cw = max(cw, gr_start[c + 1] - gr_start[c])
    ng = gk_start.size - 1
    gp_off = np.zeros(ng + 1, dtype=np.int64)  # product of a group's messages (or the child's)
    gm_off = np.zeros(ng + 1, dtype=np.int64)  # the belief summed onto the group's separator
    gsz = np.zeros(ng + 1, dtype=np.int64)
    S = np.zeros((mw, kw + 1 + cw), dtype=np.int64)
    base = np.zeros(kw + 1 + cw, dtype=np.int64)
    idx = np.zeros(kw + 1 + cw, dtype=np.int64)
    hidx = np.empty(mw, dtype=np.int64)
    hcard = np.empty(mw, dtype=np.int64)
    digit = np.zeros(mw, dtype=np.int64)
    last = np.zeros(kw + 1 + cw, dtype=np.int64)  # strides of the fastest digit
    home_col = np.zeros(mw, dtype=np.int64)
    home_digit = np.zeros(mw, dtype=np.int64)
    run_width = max(RUN, cards.max()) if cards.size else RUN  # one digit always fits
    offs = np.zeros((kw + 1 + cw, run_width), dtype=np.int64)  # offsets of the fast digits
    dig = np.zeros((mw, run_width), dtype=np.int64)  # and their values at each of their states
    tab_off = np.zeros(m + 1, dtype=np.int64)
    up_off = np.zeros(m + 1, dtype=np.int64)
    dn_off = np.zeros(m + 1, dtype=np.int64)
    work = np.empty(width)
    scratch = np.empty(width if lg else 1)  # running log-sum-exp sums: logarithms only
    with_soft = soft.shape[0] > 0
    with_post = post.shape[0] > 0
    with_counts = counts.size > 0 or pot_counts.size > 0
    prune = factor_on.size > 0
    one = 0.0 if lg else 1.0
    for r in range(states.shape[0]):
        # ---- where each clique's table and messages live for this row
        pos = 0
        for c in range(m):
            h, size, msg = _layout(c, r, cl_start, cl_var, cards, hidden, sep_start, sep_cpos,
                                   hidx, hcard)
            tab_off[c] = pos
            pos += size
            up_off[c] = pos
            pos += msg
            dn_off[c] = pos
            pos += msg
        for g in range(ng):
            first = gk_list[gk_start[g]]
            gsz[g] = dn_off[first] - up_off[first]
            if gk_start[g + 1] - gk_start[g] > 1:
                gp_off[g] = pos
                pos += gsz[g]
            else:
                gp_off[g] = up_off[first]
            gm_off[g] = pos
            pos += gsz[g]
        total = 0.0
        lost = False
        dead = False
        # ---- collect: children (higher ids) first
        for c in range(m - 1, -1, -1):
            h, size, msg = _layout(c, r, cl_start, cl_var, cards, hidden, sep_start, sep_cpos,
                                   hidx, hcard)
            if h == 0 and pot_start[c] >= 0 and not prune:
                # nothing hidden: one potential entry; the children's messages are all 1
                val = pot[_fixed_entry(c, r, cl_start, cl_var, states, pot_start, pot_cards)]
                if (lg and val == -np.inf) or (not lg and val <= 0.0):
                    dead = True
                    break
                total += val if lg else np.log(val)
                work[up_off[c]] = 0.0 if lg else 1.0
                continue
            T, K = _strides(c, r, cl_start, cl_var, cards, states, hidden, hidx, fa_start,
                            fa_var, fs_start, fa_stride, cpt_start, sep_start, sep_cpos,
                            gr_start, gk_start, gk_list, sep_ppos, S, base, pot_start,
                            pot_cards, prune)
            with_pot = pot_start[c] >= 0 and not prune
            nch = gr_start[c + 1] - gr_start[c]
            run = _last(h, T, S, hcard, last)
            _start(h, T, idx, base, digit)
            tab = tab_off[c]
            up = up_off[c]
            parent = cl_parent[c]
            for s in range(msg):
                work[up + s] = -np.inf if lg else 0.0
                if lg:
                    scratch[up + s] = 0.0
            for i in range(nch):  # children sharing a separator: one product of their messages
                g = gr_start[c] + i
                if gk_start[g + 1] - gk_start[g] < 2:
                    continue
                for s in range(gsz[g]):
                    val = one
                    for q in range(gk_start[g], gk_start[g + 1]):
                        x = work[up_off[gk_list[q]] + s]
                        val, under = _times(val, x, lg)
                        lost |= under
                    work[gp_off[g] + s] = val
            fast = with_pot and not lg and not with_soft
            if fast:  # the common case as a tight loop: potential times children, summed
                R, q = _inner(h, T, S, hcard, offs, dig)
                for blk in range(size // R):
                    lost |= _collect_run(R, blk * R, tab, up, K, nch, gr_start[c], gp_off, idx,
                                         offs, pot, work)
                    _advance(h - q, digit, hcard, S, idx, T)
            for blk in range(0 if fast else size // run):
                for w in range(run):
                    j = blk * run + w
                    val = pot[(idx[0] + w * last[0])] if with_pot else one
                    for k in range(0 if with_pot else K):
                        if prune and not factor_on[fa_var[fa_start[c] + k]]:
                            continue
                        x = cpt[(idx[k] + w * last[k])]
                        val, under = _times(val, x, lg)
                        lost |= under
                    for i in range(nch):
                        at = idx[K + 1 + i] + w * last[K + 1 + i]
                        x = work[gp_off[gr_start[c] + i] + at]
                        val, under = _times(val, x, lg)
                        lost |= under
                    if with_soft:
                        for q in range(hv_start[c], hv_start[c + 1]):
                            d = hidx[hv_pos[q]]
                            if d < 0:
                                continue
                            v = cl_var[cl_start[c] + hv_pos[q]]
                            x = soft[r, columns[v] + (w if d == h - 1 else digit[d])]
                            val, under = _times(val, np.log(x) if lg else x, lg)
                            lost |= under
                    work[tab + j] = val
                    s = (idx[K] + w * last[K])
                    if maxprod:
                        if val > work[up + s]:
                            work[up + s] = val
                    elif lg:
                        # running log-sum-exp: scratch holds the sum about the running maximum
                        if val > work[up + s]:
                            scratch[up + s] = scratch[up + s] * np.exp(work[up + s] - val) + 1.0
                            work[up + s] = val
                        elif val > -np.inf:
                            scratch[up + s] += np.exp(val - work[up + s])
                    else:
                        work[up + s] += val
                _advance(h - 1, digit, hcard, S, idx, T)
            top = -np.inf if lg else 0.0
            for s in range(msg):
                if lg and not maxprod and work[up + s] > -np.inf:
                    work[up + s] += np.log(scratch[up + s])
                top = max(top, work[up + s])
            if (lg and top == -np.inf) or (not lg and top <= 0.0):
                dead = True
                break
            for s in range(msg):
                if lg:
                    work[up + s] -= top
                else:
                    work[up + s] /= top
            total += top if lg else np.log(top)
            if parent < 0:
                # a root's message (to nobody) is its total; keep it as a message of 1
                work[up] = 0.0 if lg else 1.0
        if dead:
            log_z[r] = -np.inf
            continue
        log_z[r] = total
        if lost and not lg:
            failed[r] = True
            continue
        if down == 0:
            continue
        # ---- distribute / walk back: parents (lower ids) first
        for c in range(m):
            if down == 4 and cl_parent[c] >= 0:
                continue  # the posteriors of the roots' home variables only
            h, size, msg = _layout(c, r, cl_start, cl_var, cards, hidden, sep_start, sep_cpos,
                                   hidx, hcard)
            if h == 0 and pot_start[c] >= 0 and not prune:
                # nothing hidden: the belief is 1, every message to a child is 1
                for i in range(gr_start[c], gr_start[c + 1]):
                    for q in range(gk_start[i], gk_start[i + 1]):
                        work[dn_off[gk_list[q]]] = 0.0 if lg else 1.0
                if with_counts and down == 1:
                    at = _fixed_entry(c, r, cl_start, cl_var, states, pot_start, pot_cards)
                    pot_counts[at] += weights[r]
                continue
            T, K = _strides(c, r, cl_start, cl_var, cards, states, hidden, hidx, fa_start,
                            fa_var, fs_start, fa_stride, cpt_start, sep_start, sep_cpos,
                            gr_start, gk_start, gk_list, sep_ppos, S, base, pot_start,
                            pot_cards, prune)
            with_pot = pot_start[c] >= 0 and not prune
            nch = gr_start[c + 1] - gr_start[c]
            tab = tab_off[c]
            if down == 2 or down == 3:
                _choose(c, r, h, size, T, K, S, base, idx, digit, hidx, hcard, work, tab,
                        cl_start, cl_var, sep_start, sep_cpos, cl_parent, states, assign,
                        uniforms, down == 3, lg)
                continue
            dn = dn_off[c]
            has_parent = cl_parent[c] >= 0
            # belief = table * message from the parent, normalized (kept as logs with lg)
            run = _last(h, T, S, hcard, last)
            _start(h, T, idx, base, digit)
            z = 0.0
            top = -np.inf
            if not lg:  # probabilities: a tight loop, normalized in the next pass
                R, q = _inner(h, T, S, hcard, offs, dig)
                for blk in range(size // R):
                    z += _belief_run(R, tab + blk * R, dn, K, has_parent, idx, offs, work)
                    _advance(h - q, digit, hcard, S, idx, T)
            for blk in range(0 if not lg else size // run):
                for w in range(run):
                    j = blk * run + w
                    if lg:
                        at = dn + idx[K] + w * last[K]
                        b = work[tab + j] + (work[at] if has_parent else 0.0)
                        top = max(top, b)
                    else:
                        at = dn + idx[K] + w * last[K]
                        b = work[tab + j] * (work[at] if has_parent else 1.0)
                        z += b
                    work[tab + j] = b
                _advance(h - 1, digit, hcard, S, idx, T)
            if lg:
                for j in range(size):
                    z += np.exp(work[tab + j] - top)
                lz = top + np.log(z)
                for j in range(size):
                    work[tab + j] -= lz
            elif not with_pot:
                for j in range(size):
                    work[tab + j] /= z
            for i in range(nch):
                g = gr_start[c] + i
                for s in range(gsz[g]):
                    work[gm_off[g] + s] = -np.inf if lg else 0.0
                    if lg:
                        scratch[gm_off[g] + s] = 0.0
            run = _last(h, T, S, hcard, last)
            _start(h, T, idx, base, digit)
            fast = with_pot and not lg
            if fast:  # the common case: the belief summed onto each group's separator
                R, q = _inner(h, T, S, hcard, offs, dig)
                for blk in range(size // R):
                    nh = 0
                    for k in range(hv_start[c], hv_start[c + 1] if with_post else hv_start[c]):
                        d = hidx[hv_pos[k]]
                        if d >= 0:
                            v = cl_var[cl_start[c] + hv_pos[k]]
                            home_col[nh] = columns[v] + (0 if d >= h - q else digit[d])
                            home_digit[nh] = d - (h - q) if d >= h - q else -1
                            nh += 1
                    _distribute_run(R, tab + blk * R, nch, gr_start[c], gm_off, idx, offs, K,
                                    work, pot_counts, weights[r] if with_counts else 0.0, post,
                                    r, home_col, home_digit, dig, nh, 1.0 / z)
                    _advance(h - q, digit, hcard, S, idx, T)
            for blk in range(0 if fast else size // run):
                for w in range(run):
                    j = blk * run + w
                    b = np.exp(work[tab + j]) if lg else work[tab + j]
                    for i in range(nch):
                        at = gm_off[gr_start[c] + i] + (idx[K + 1 + i] + w * last[K + 1 + i])
                        if lg:
                            x = work[tab + j]
                            if x == -np.inf:
                                continue
                            if x > work[at]:
                                scratch[at] = scratch[at] * np.exp(work[at] - x) + 1.0
                                work[at] = x
                            else:
                                scratch[at] += np.exp(x - work[at])
                        else:
                            work[at] += b
                    if with_post:
                        for q in range(hv_start[c], hv_start[c + 1]):
                            d = hidx[hv_pos[q]]
                            if d >= 0:
                                v = cl_var[cl_start[c] + hv_pos[q]]
                                post[r, columns[v] + (w if d == h - 1 else digit[d])] += b
                    if with_counts and with_pot:
                        pot_counts[(idx[0] + w * last[0])] += weights[r] * b
                    elif with_counts:
                        for k in range(K):
                            if not prune or factor_on[fa_var[fa_start[c] + k]]:
                                counts[(idx[k] + w * last[k])] += weights[r] * b
                _advance(h - 1, digit, hcard, S, idx, T)
            for i in range(nch):
                # each child's message: the belief on its separator divided by what it sent
                g = gr_start[c] + i
                for s in range(gsz[g]):
                    if lg and work[gm_off[g] + s] > -np.inf:
                        work[gm_off[g] + s] += np.log(scratch[gm_off[g] + s])
                for q in range(gk_start[g], gk_start[g + 1]):
                    ch = gk_list[q]
                    top = -np.inf if lg else 0.0
                    for s in range(gsz[g]):
                        u = work[up_off[ch] + s]
                        if lg:
                            x = work[gm_off[g] + s] - u if u > -np.inf else -np.inf
                        else:
                            x = work[gm_off[g] + s] / u if u > 0.0 else 0.0
                        work[dn_off[ch] + s] = x
                        top = max(top, x)
                    for s in range(gsz[g]):
                        if lg:
                            work[dn_off[ch] + s] -= top
                        elif top > 0.0:
                            work[dn_off[ch] + s] /= top
