"""Compiled per-row passes over the junction tree: sum-product, max-product and sampling.

    # called by probdl.graph.inference.rows.run_rows for each row, on the network's tree or
    # on a tree built for the row (the same packed layout: Engine.tree_arrays, rowtree.build)
    _row(r, buf, off, cpt, pot, lmin, factor_on, states, hidden, ..., log_z, post, ...)

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

from .odometer import _advance, _choose, _inner, _last, _layout, _start, _strides, row_needs
from .runs import (
    FLOOR,
    LOG_FLOOR,
    _belief_run,
    _collect_run,
    _distribute_run,
    _fixed_entry,
    _scatter_run,
    _times,
)

__all__ = ["FLOOR", "row_needs"]


@njit(cache=True, nogil=True)
def _homes(c, h, q, hv_start, hv_pos, hidx, cl_start, cl_var, columns, digit, home_col,
           home_digit, with_post):
    """Clique c's hidden home variables for the tight loops: each one's posterior column at
    the odometer's slow digits and its fast digit (or -1); returns how many."""
    nh = 0
    for k in range(hv_start[c], hv_start[c + 1] if with_post else hv_start[c]):
        d = hidx[hv_pos[k]]
        if d >= 0:
            v = cl_var[cl_start[c] + hv_pos[k]]
            home_col[nh] = columns[v] + (0 if d >= h - q else digit[d])
            home_digit[nh] = d - (h - q) if d >= h - q else -1
            nh += 1
    return nh


@njit(cache=True, nogil=True)
def _row(r, buf, off, cpt, pot, lmin, factor_on, states, hidden, soft, weights, lg, maxprod, down,
         uniforms, log_z, post, counts, pot_counts, failed, assign, ws, S, offs, dig, work,
         scratch):
    """One row's passes on the tree packed in ``buf``/``off`` (:func:`.layout.pack`: the
    network's, :attr:`Engine.tree_arrays`, or a row's own), with the scratch of
    :func:`.rows._workspace` (``ws``: one index vector a row) and ``work`` holding its
    tables."""
    cl_start = buf[off[0]:off[1]]
    cl_var = buf[off[1]:off[2]]
    cl_parent = buf[off[2]:off[3]]
    cards = buf[off[3]:off[4]]
    columns = buf[off[4]:off[5]]
    sep_start = buf[off[5]:off[6]]
    sep_cpos = buf[off[6]:off[7]]
    sep_ppos = buf[off[7]:off[8]]
    gr_start = buf[off[8]:off[9]]
    gk_start = buf[off[9]:off[10]]
    gk_list = buf[off[10]:off[11]]
    fa_start = buf[off[11]:off[12]]
    fa_var = buf[off[12]:off[13]]
    fs_start = buf[off[13]:off[14]]
    fa_stride = buf[off[14]:off[15]]
    cpt_start = buf[off[15]:off[16]]
    hv_start = buf[off[16]:off[17]]
    hv_pos = buf[off[17]:off[18]]
    pot_start = buf[off[18]:off[19]]
    pot_cards = buf[off[19]:off[20]]
    fa_base = buf[off[20]:off[21]]
    gp_off = ws[0]
    gm_off = ws[1]
    gsz = ws[2]
    base = ws[3]
    idx = ws[4]
    hidx = ws[5]
    hcard = ws[6]
    digit = ws[7]
    last = ws[8]
    home_col = ws[9]
    home_digit = ws[10]
    tab_off = ws[11]
    up_off = ws[12]
    dn_off = ws[13]
    vary = ws[14]
    m = cl_start.size - 1
    ng = gk_start.size - 1
    with_soft = soft.shape[0] > 0
    with_post = post.shape[0] > 0
    with_counts = counts.size > 0 or pot_counts.size > 0
    prune = factor_on.size > 0
    one = 0.0 if lg else 1.0
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
    lmsg = 0.0
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
                        fa_var, fs_start, fa_stride, cpt_start, fa_base, sep_start, sep_cpos,
                        gr_start, gk_start, gk_list, sep_ppos, S, base, pot_start,
                        pot_cards, prune)
        with_pot = pot_start[c] >= 0 and not prune
        nch = gr_start[c + 1] - gr_start[c]
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
        fast = not lg and not with_soft and not prune
        run = 1 if fast else _last(h, T, S, hcard, last)  # the slow loop's inner digit
        if fast:  # the common case as a tight loop: factors times children, summed
            # every factor is at most 1: products of non-zero factors can only fall below
            # FLOOR if the smallest non-zero ones can (``lmin``: the CPTs' and potentials'
            # log smallest non-zero entry, ``lmsg``: the messages' so far in this row)
            kids = gk_start[gr_start[c + 1]] - gk_start[gr_start[c]]
            bound = (lmin[1] if with_pot else K * lmin[0]) + kids * lmsg
            R, q = _inner(h, T, S, hcard, offs, dig, vary)
            for blk in range(size // R):
                lost |= _collect_run(R, blk * R, tab, up, K, nch, gr_start[c], gp_off, idx,
                                     offs, vary, pot if with_pot else cpt, work,
                                     bound < LOG_FLOOR)
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
        small = 1.0
        for s in range(msg):
            if lg:
                work[up + s] -= top
            else:
                work[up + s] /= top
                if 0.0 < work[up + s] < small:
                    small = work[up + s]
        lmsg = min(lmsg, np.log(small))
        total += top if lg else np.log(top)
        if parent < 0:
            # a root's message (to nobody) is its total; keep it as a message of 1
            work[up] = 0.0 if lg else 1.0
    if dead:
        log_z[r] = -np.inf
        if lost and not lg:  # zero only by underflow (many factors in one clique): logarithms
            failed[r] = True
        return
    log_z[r] = total
    if lost and not lg:
        failed[r] = True
        return
    if down == 0:
        return
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
                        fa_var, fs_start, fa_stride, cpt_start, fa_base, sep_start, sep_cpos,
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
        for i in range(nch):
            g = gr_start[c] + i
            for s in range(gsz[g]):
                work[gm_off[g] + s] = -np.inf if lg else 0.0
                if lg:
                    scratch[gm_off[g] + s] = 0.0
        # without expected counts, one pass: unnormalized beliefs spread onto the children's
        # separators and the posteriors, which are divided by the clique's sum after
        spread = not lg and not with_counts
        run = _last(h, T, S, hcard, last)
        _start(h, T, idx, base, digit)
        z = 0.0
        top = -np.inf
        R, q = 1, 0
        if not lg:  # probabilities: a tight loop, normalized in the next pass
            # offs, dig and vary depend on the clique only: the second loop below reuses them
            R, q = _inner(h, T, S, hcard, offs, dig, vary)
            for blk in range(size // R):
                zb = _belief_run(R, tab + blk * R, dn, K, has_parent, idx, offs, vary, work)
                if spread:
                    nh = _homes(c, h, q, hv_start, hv_pos, hidx, cl_start, cl_var, columns,
                                digit, home_col, home_digit, with_post)
                    _scatter_run(R, tab + blk * R, zb, nch, gr_start[c], gm_off, idx, offs,
                                 vary, K, work, post, r, home_col, home_digit, dig, nh)
                z += zb
                _advance(h - q, digit, hcard, S, idx, T)
        if spread and with_post:
            for k in range(hv_start[c], hv_start[c + 1]):
                if hidx[hv_pos[k]] >= 0:
                    v = cl_var[cl_start[c] + hv_pos[k]]
                    for s in range(columns[v], columns[v + 1]):
                        post[r, s] /= z
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
        # the tight loop scales the beliefs itself; counts outside a potential need them as is
        fast = not lg and not spread and with_pot
        if not lg and not fast and not spread:
            for j in range(size):
                work[tab + j] /= z
        _start(h, T, idx, base, digit)  # run, R and q as for the loop above
        if fast:  # the common case: the belief summed onto each group's separator (not lg)
            for blk in range(size // R):
                nh = _homes(c, h, q, hv_start, hv_pos, hidx, cl_start, cl_var, columns, digit,
                            home_col, home_digit, with_post)
                _distribute_run(R, tab + blk * R, nch, gr_start[c], gm_off, idx, offs, vary, K,
                                work, pot_counts, weights[r] if with_counts else 0.0, post,
                                r, home_col, home_digit, dig, nh, 1.0 / z)
                _advance(h - q, digit, hcard, S, idx, T)
        for blk in range(0 if fast or spread else size // run):
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
