"""Compiled loops of the local path: enumerating components, and both passes of elimination.

:func:`enumerate_components` evaluates every hidden component of every row
(:mod:`probdl.graph.local`); :func:`upward` and :func:`downward` run every row's steps of the
elimination tree (:mod:`probdl.graph.local_elimination`). Flat index arrays, built once per
component set or step pattern, say which CPT entries (and children's messages) multiply into
each table entry, so the loops only follow indices, whatever the rows hide. Compiled by numba
on first use and cached on disk.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# A table or message whose largest entry falls below this is too close to underflow for
# probability space; the row is handed back (the compiled plans rescale as they go).
TINY = 1e-250
# A product of two non-zero numbers below this has lost digits (or all of them): the row is
# handed back, and the caller enumerates it in log space.
FLOOR = 1e-290


@njit(inline="always")
def _times(a, b):
    """a * b, and whether two non-zero factors made a product below FLOOR (underflow)."""
    p = a * b
    return p, (p < FLOOR) & (a != 0.0) & (b != 0.0)  # no short-circuit: keeps loops branch-free


@njit(cache=True, nogil=True)
def label_components(hidden, adj_start, adj, cell_comp, comp_row, comp_key):
    """Connected components of each row's hidden variables in the moral graph (CSR ``adj``):
    each hidden cell's component in ``cell_comp`` (others stay -1), each component's row and,
    while ``comp_key`` has room, its variables as a bit mask. Returns the number found."""
    b, n = hidden.shape
    stack = np.empty(n, dtype=np.int64)
    found = 0
    for r in range(b):
        for v in range(n):
            if not hidden[r, v] or cell_comp[r, v] >= 0:
                continue
            cell_comp[r, v] = found
            comp_row[found] = r
            key = 0
            top = 0
            stack[0] = v
            top = 1
            while top:
                top -= 1
                u = stack[top]
                if comp_key.size:
                    key |= 1 << u
                for i in range(adj_start[u], adj_start[u + 1]):
                    w = adj[i]
                    if hidden[r, w] and cell_comp[r, w] < 0:
                        cell_comp[r, w] = found
                        stack[top] = w
                        top += 1
            if comp_key.size:
                comp_key[found] = key
            found += 1
    return found


@njit(cache=True, nogil=True)
def observed_families(states, observed, scope_vars, scope_strides, scope_len, start, flat_log,
                      columns, log_z, post, counts, weights, done, soft):
    """Each row's fully observed families: their log CPT entries summed into ``log_z`` and,
    weighted, counted into ``counts`` for ``done`` rows (skipped when empty); the observed
    variables' one-hot posteriors into ``post`` (skipped when it has no rows), and the log of
    their soft likelihood at the observed state into ``log_z`` (``soft`` with rows)."""
    b, n = states.shape
    for r in range(b):
        total = 0.0
        for f in range(n):
            base = start[f]
            whole = True
            for p in range(scope_len[f]):
                u = scope_vars[f, p]
                if not observed[r, u]:
                    whole = False
                    break
                base += states[r, u] * scope_strides[f, p]
            if whole:
                total += flat_log[base]
                if counts.size and done[r]:
                    counts[base] += weights[r]
        if soft.shape[0]:
            for v in range(n):
                if observed[r, v]:
                    total += np.log(soft[r, columns[v] + states[r, v]])
        log_z[r] = total
        if post.shape[0]:
            for v in range(n):
                if observed[r, v]:
                    post[r, columns[v] + states[r, v]] = 1.0


@njit(cache=True, nogil=True)
def enumerate_components(comp_row, comp_set, states, flat_prob, flat_log, log_floor, log_safe,
                         c_size,
                         c_fstart, f_offstart, f_offsets, f_ostart, o_var, o_stride, c_vstart,
                         v_column, v_card, log_z, post, counts, weights, soft, soft_floor):
    """Each component's joint table: the product of its factors at every joint state of its
    variables (mixed radix, last fastest), summed into ``log_z`` of its row; normalized, it
    adds into the row's posteriors (``post``, skipped when it has no rows) and, weighted, into
    the expected counts of every entry it touches (``counts``, skipped when empty). Soft
    evidence (``soft`` with rows: likelihoods per output column, smallest positive entry
    exp(``soft_floor``)) multiplies in per variable. A table whose product could fall below
    exp(``log_safe``) is summed in log space."""
    width = 1
    for g in range(c_size.size):
        width = max(width, c_size[g])
    table = np.empty(width)
    for c in range(comp_row.size):
        r, g = comp_row[c], comp_set[c]
        size = c_size[g]
        f0, f1 = c_fstart[g], c_fstart[g + 1]
        v0, v1 = c_vstart[g], c_vstart[g + 1]
        with_soft = soft.shape[0] > 0
        in_logs = (f1 - f0) * log_floor + (v1 - v0) * soft_floor * with_soft < log_safe
        for j in range(size):
            table[j] = 0.0 if in_logs else 1.0
        for f in range(f0, f1):
            base = 0
            for o in range(f_ostart[f], f_ostart[f + 1]):
                base += states[r, o_var[o]] * o_stride[o]
            first = f_offstart[f]
            if in_logs:
                for j in range(size):
                    table[j] += flat_log[f_offsets[first + j] + base]
            else:
                for j in range(size):
                    table[j] *= flat_prob[f_offsets[first + j] + base]
        if with_soft:
            stride = size
            for i in range(v0, v1):
                card = v_card[i]
                stride //= card
                col = v_column[i]
                for j in range(size):
                    lik = soft[r, col + (j // stride) % card]
                    if in_logs:
                        table[j] += np.log(lik)
                    else:
                        table[j] *= lik
        top = 0.0
        if in_logs:
            top = -np.inf
            for j in range(size):
                top = max(top, table[j])
            if top == -np.inf:
                top = 0.0
            for j in range(size):
                table[j] = np.exp(table[j] - top)
        z = 0.0
        for j in range(size):
            z += table[j]
        log_z[r] += np.log(z) + top
        if z <= 0.0:
            continue
        for j in range(size):
            table[j] /= z
        if post.shape[0]:
            stride = size
            for i in range(c_vstart[g], c_vstart[g + 1]):
                card = v_card[i]
                stride //= card
                col = v_column[i]
                for j in range(size):
                    post[r, col + (j // stride) % card] += table[j]
        if counts.size:
            w = weights[r]
            for f in range(f0, f1):
                base = 0
                for o in range(f_ostart[f], f_ostart[f + 1]):
                    base += states[r, o_var[o]] * o_stride[o]
                first = f_offstart[f]
                for j in range(size):
                    counts[f_offsets[first + j] + base] += w * table[j]


@njit(cache=True, nogil=True)
def _table(c, g, states, flat_prob, p_fstart, f_offstart, f_offsets, f_ostart, o_var, o_stride,
           p_size, out, soft, soft_column, hidden_v, m):
    """Product of the unit's factors (entry by entry) into ``out[:size]``, times the soft
    evidence on its variable when that is summed out here; children excluded. Returns the
    size and whether a product underflowed."""
    size = p_size[g]
    lost = False
    for j in range(size):
        out[j] = 1.0
    for f in range(p_fstart[g], p_fstart[g + 1]):
        base = 0
        for o in range(f_ostart[f], f_ostart[f + 1]):
            base += states[c, o_var[o]] * o_stride[o]
        first = f_offstart[f]
        for j in range(size):
            out[j], under = _times(out[j], flat_prob[f_offsets[first + j] + base])
            lost |= under
    if soft.shape[0] and hidden_v:
        for j in range(size):
            out[j], under = _times(out[j], soft[c, soft_column + j // m])
            lost |= under
    return size, lost


@njit(cache=True, nogil=True)
def upward(order, case, var, pid, states, start, up, saved_start, saved, flat_prob,
           p_fstart, f_offstart, f_offsets, f_ostart, o_var, o_stride, p_size, p_msg, p_hidden,
           p_kstart, k_var, k_offstart, k_offsets, columns, soft, log_z, failed):
    """Children first: each unit's factors (and soft evidence) times its children's messages,
    its variable summed out, rescaled to a maximum of 1 (the scale goes into ``log_z``),
    stored at its start. ``soft`` (rows, columns) holds likelihoods, or no rows."""
    width = 1
    for g in range(p_size.size):
        width = max(width, p_size[g])
    table = np.empty(width)
    for u in order:
        c, g = case[u], pid[u]
        if failed[c]:
            continue
        size, lost = _table(c, g, states, flat_prob, p_fstart, f_offstart, f_offsets, f_ostart,
                            o_var, o_stride, p_size, table, soft, columns[var[u]], p_hidden[g],
                            p_msg[g])
        s0 = saved_start[u]
        for j in range(size):
            saved[s0 + j] = table[j]
        for k in range(p_kstart[g], p_kstart[g + 1]):
            kid = start[c, k_var[k]]
            first = k_offstart[k]
            for j in range(size):
                table[j], under = _times(table[j], up[kid + k_offsets[first + j]])
                lost |= under
        if lost:
            failed[c] = True
            continue
        m = p_msg[g]
        mine = start[c, var[u]]
        for i in range(m):
            up[mine + i] = 0.0
        for j in range(size):
            up[mine + j % m] += table[j]
        top = 0.0
        for i in range(m):
            top = max(top, up[mine + i])
        if top < TINY:
            failed[c] = True
            continue
        for i in range(m):
            up[mine + i] /= top
        log_z[c] += np.log(top)


@njit(cache=True, nogil=True)
def downward(order, case, var, pid, start, up, down, saved_start, saved, p_size, p_msg,
             p_hidden, p_kstart, k_var, k_size, k_offstart, k_offsets, columns, post, failed):
    """Parents first: the unit's factors times its parent's message; with all children's
    messages too it is the belief (its variable's posterior when hidden); without one child's
    it is that child's message from above, summed onto the child's scope. Products of the
    other children come from running prefix and suffix products (no child is gathered twice)."""
    width, most = 1, 0
    for g in range(p_size.size):
        width = max(width, p_size[g])
        most = max(most, p_kstart[g + 1] - p_kstart[g])
    rest = np.empty(width)
    other = np.empty(width)
    sums = np.empty(width)
    kids = np.empty((most, width))
    after = np.empty((most + 1, width))  # after[i]: product of children i, i+1, ...
    for i in range(down.size):
        down[i] = 1.0  # roots keep 1; every other message is written by its parent first
    for step in range(order.size - 1, -1, -1):
        u = order[step]
        c, g = case[u], pid[u]
        if failed[c]:
            continue
        size, m = p_size[g], p_msg[g]
        mine = start[c, var[u]]
        s0 = saved_start[u]
        lost = False
        for j in range(size):
            rest[j], under = _times(saved[s0 + j], down[mine + j % m])
            lost |= under
        k0, nk = p_kstart[g], p_kstart[g + 1] - p_kstart[g]
        for i in range(nk):
            kid = start[c, k_var[k0 + i]]
            first = k_offstart[k0 + i]
            for j in range(size):
                kids[i, j] = up[kid + k_offsets[first + j]]
        for j in range(size):
            after[nk, j] = 1.0
        for i in range(nk - 1, -1, -1):
            for j in range(size):
                after[i, j], under = _times(after[i + 1, j], kids[i, j])
                lost |= under
        if lost:
            failed[c] = True
            continue
        # ``rest`` becomes the running product of the factors, the parent's message and the
        # children before i: times after[i + 1] it is everything but child i
        for i in range(nk):
            k = k0 + i
            for j in range(size):
                other[j], under = _times(rest[j], after[i + 1, j])
                lost |= under
            for t in range(k_size[k]):
                sums[t] = 0.0
            first = k_offstart[k]
            for j in range(size):
                sums[k_offsets[first + j]] += other[j]
            top = 0.0
            for t in range(k_size[k]):
                top = max(top, sums[t])
            if top < TINY or lost:
                failed[c] = True
                break
            kid = start[c, k_var[k]]
            for t in range(k_size[k]):
                down[kid + t] = sums[t] / top
            for j in range(size):
                rest[j], under = _times(rest[j], kids[i, j])
                lost |= under
        if lost:
            failed[c] = True
        if failed[c] or not p_hidden[g]:
            continue
        card = size // m
        for t in range(card):
            sums[t] = 0.0
        for j in range(size):
            sums[j // m] += rest[j]
        total = 0.0
        for t in range(card):
            total += sums[t]
        if total <= 0.0:
            failed[c] = True
            continue
        col = columns[var[u]]
        for t in range(card):
            post[c, col + t] = sums[t] / total
