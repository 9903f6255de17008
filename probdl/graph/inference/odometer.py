"""The odometer the compiled passes share: a clique's hidden members, strides, and choices.

    from probdl.graph.inference.odometer import row_needs   # workspace entries per row

The maths: a row fixes its observed variables, so clique C ranges over the joint states of its
hidden members only, enumerated as an odometer (the last hidden member fastest). Every array
the pass reads (the clique's compiled potential or each CPT, the message to the parent, each
child's message) is indexed by a base (the fixed members' states times their strides) plus the
digits times their strides, so advancing one digit moves every index by a constant. Separator
messages range over the hidden separator members in the child's member order, strides taken
with the same rule on both sides of the separator.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Joint states of the fastest digits that the tight loops run per odometer step (longer runs
# spend less on stepping the odometer; the offsets table is targets x RUN). 128 (was 64) once
# _inner built the table cheaply: insurance at 20% observed 10% faster, alarm 5%; 256 lost.
RUN = 128
# The fixed part of a row's cost (row_needs), in entry reads: a clique's odometer set up, a
# clique with nothing hidden answered from its potential (docs/tuning-log.md).
COST_PER_CLIQUE = 400.0
COST_FIXED_ONE = 8.0


@njit(cache=True, nogil=True)
def _layout(c, r, cl_start, cl_var, cards, hidden, sep_start, sep_cpos, hidx, hcard):
    """Hidden members of clique c in row r: ``hidx`` (member -> digit or -1), their cards;
    returns (number hidden, table size, message size)."""
    h = 0
    size = 1
    for p in range(cl_start[c + 1] - cl_start[c]):
        v = cl_var[cl_start[c] + p]
        if hidden[r, v]:
            hidx[p] = h
            hcard[h] = cards[v]
            size *= cards[v]
            h += 1
        else:
            hidx[p] = -1
    msg = 1
    for q in range(sep_start[c], sep_start[c + 1]):
        d = hidx[sep_cpos[q]]
        if d >= 0:
            msg *= hcard[d]
    return h, size, msg


@njit(cache=True, nogil=True)
def row_needs(cl_start, cl_var, cards, sep_start, sep_cpos, gr_start, gk_start, gk_list,
              fa_start, hv_start, pot_start, states, hidden, need, biggest, cost):
    """Workspace entries each row needs (tables and both messages of every clique, each child
    group's product and marginal, as float), the clique with the largest table of each row,
    and the row's cost: over cliques, table entries times the reads and writes each entry
    takes in the passes (its factors, children groups twice, home variables, three more),
    plus a fixed cost per clique (laying out its odometer)."""
    m = cl_start.size - 1
    width = 1
    for c in range(m):
        width = max(width, cl_start[c + 1] - cl_start[c])
    hidx = np.empty(width, dtype=np.int64)
    hcard = np.empty(width, dtype=np.int64)
    for r in range(states.shape[0]):
        total = 0.0
        top = -1.0
        work = 0.0
        for c in range(m):
            size = 1.0
            for p in range(cl_start[c + 1] - cl_start[c]):
                v = cl_var[cl_start[c] + p]
                if hidden[r, v]:
                    size *= cards[v]
            msg = 1.0
            for q in range(sep_start[c], sep_start[c + 1]):
                v = cl_var[cl_start[c] + sep_cpos[q]]
                if hidden[r, v]:
                    msg *= cards[v]
            total += size + 2.0 * msg
            if size > top:
                top = size
                biggest[r] = c
            if size == 1.0 and pot_start[c] >= 0:
                work += COST_FIXED_ONE
                continue
            reads = 3.0 + (1.0 if pot_start[c] >= 0 else fa_start[c + 1] - fa_start[c])
            reads += 2.0 * (gr_start[c + 1] - gr_start[c]) + hv_start[c + 1] - hv_start[c]
            work += size * reads + COST_PER_CLIQUE
        for g in range(gk_start.size - 1):
            ch = gk_list[gk_start[g]]
            msg = 1.0
            for q in range(sep_start[ch], sep_start[ch + 1]):
                v = cl_var[cl_start[ch] + sep_cpos[q]]
                if hidden[r, v]:
                    msg *= cards[v]
            total += msg * (2.0 if gk_start[g + 1] - gk_start[g] > 1 else 1.0)
        need[r] = total
        cost[r] = work
    return hidx, hcard


@njit(cache=True, nogil=True)
def _strides(c, r, cl_start, cl_var, cards, states, hidden, hidx, fa_start, fa_var, fs_start,
             fa_stride, cpt_start, fa_base, sep_start, sep_cpos, gr_start, gk_start, gk_list,
             sep_ppos, S, base, pot_start, pot_cards, prune):
    """Fill the odometer's stride matrix S (digit x target) and the targets' bases: the
    clique's potential (its CPTs multiplied at compile time, when it has one and no CPT is
    left out) or else each of its CPTs (flat index), its message to the parent, and the
    product of each group of children sharing a separator (``fa_base``: each CPT's offset of
    family members outside the clique, zero on the network's tree). Returns (targets,
    potential or CPT targets)."""
    M = cl_start[c + 1] - cl_start[c]
    pot = pot_start[c] >= 0 and not prune
    K = 1 if pot else fa_start[c + 1] - fa_start[c]
    nch = gr_start[c + 1] - gr_start[c]
    T = K + 1 + nch
    for i in range(M):
        for t in range(T):
            S[i, t] = 0
    if pot:
        b = pot_start[c]
        st = 1
        for p in range(M - 1, -1, -1):
            v = cl_var[cl_start[c] + p]
            if hidx[p] >= 0:
                S[hidx[p], 0] = st
            else:  # a row's own tree folds its observed states in (their pot card is 1)
                b += (states[r, v] % pot_cards[v]) * st
            st *= pot_cards[v]
        base[0] = b
    for k in range(0 if pot else K):
        f = fa_start[c] + k
        b = cpt_start[fa_var[f]] + fa_base[f]  # a row's own tree: its observed members
        for p in range(M):
            s = fa_stride[fs_start[f] + p]
            if s == 0:
                continue
            if hidx[p] >= 0:
                S[hidx[p], k] = s
            else:
                b += states[r, cl_var[cl_start[c] + p]] * s
        base[k] = b
    st = 1
    for q in range(sep_start[c + 1] - 1, sep_start[c] - 1, -1):
        d = hidx[sep_cpos[q]]
        if d >= 0:
            S[d, K] = st
            st *= cards[cl_var[cl_start[c] + sep_cpos[q]]]
    base[K] = 0
    for i in range(nch):
        ch = gk_list[gk_start[gr_start[c] + i]]  # the group's first child: same separator
        st = 1
        for q in range(sep_start[ch + 1] - 1, sep_start[ch] - 1, -1):
            d = hidx[sep_ppos[q]]
            if d >= 0:
                S[d, K + 1 + i] = st
                st *= cards[cl_var[cl_start[c] + sep_ppos[q]]]
        base[K + 1 + i] = 0
    return T, K


@njit(cache=True, nogil=True)
def _start(h, T, idx, base, digit):
    """The odometer at its first joint state: every digit 0, every index at its base."""
    for t in range(T):
        idx[t] = base[t]
    for i in range(h):
        digit[i] = 0


@njit(cache=True, nogil=True)
def _last(h, T, S, hcard, last):
    """The fastest digit's strides into ``last`` and its card: the passes run it as an inner
    loop (index = outer index + digit * stride) and the odometer over the other digits."""
    if h == 0:
        for t in range(T):
            last[t] = 0
        return 1
    for t in range(T):
        last[t] = S[h - 1, t]
    return hcard[h - 1]


@njit(cache=True, nogil=True)
def _inner(h, T, S, hcard, offs, dig, vary):
    """The fastest digits whose joint states number at most ``RUN`` (at least one digit):
    every target's index offset at each of those states into ``offs`` (targets x states), the
    digits' values into ``dig``, whether each target depends on them into ``vary``; returns
    (states R, digits q). The tight loops run these R states per step of the odometer over
    the other digits."""
    if h == 0:
        for t in range(T):
            offs[t, 0] = 0
            vary[t] = 0
        return 1, 0
    q = 1
    R = hcard[h - 1]
    while q < h and R * hcard[h - 1 - q] <= RUN:
        R *= hcard[h - 1 - q]
        q += 1
    for t in range(T):
        vary[t] = 0
        for i in range(h - q, h):
            if S[i, t] != 0:
                vary[t] = 1
    # built a digit at a time, fastest first: the states so far repeated for each further
    # value of the next digit (offsets of targets that do not vary are never read)
    for t in range(T):
        offs[t, 0] = 0
    blk = 1
    for j in range(q - 1, -1, -1):
        i = h - q + j
        for e in range(blk):
            dig[j, e] = 0
        for k in range(1, hcard[i]):
            at = k * blk
            for t in range(T):
                if vary[t]:
                    step = k * S[i, t]
                    for e in range(blk):
                        offs[t, at + e] = offs[t, e] + step
            for e in range(blk):
                dig[j, at + e] = k
                for d in range(j + 1, q):
                    dig[d, at + e] = dig[d, e]
        blk *= hcard[i]
    return R, q


@njit(cache=True, nogil=True)
def _advance(h, digit, hcard, S, idx, T):
    """Next joint state of the hidden digits (last fastest), moving every target index."""
    i = h - 1
    while i >= 0:
        digit[i] += 1
        for t in range(T):
            idx[t] += S[i, t]
        if digit[i] < hcard[i]:
            return
        for t in range(T):
            idx[t] -= hcard[i] * S[i, t]
        digit[i] = 0
        i -= 1


@njit(cache=True, nogil=True)
def _choose(c, r, h, size, T, K, S, base, idx, digit, hidx, hcard, work, tab, cl_start, cl_var,
            sep_start, sep_cpos, cl_parent, states, assign, uniforms, best, logs):
    """Fix clique c's hidden members not fixed yet: the first maximal entry (``best``) or a
    draw, among the entries whose separator members equal what the parent chose."""
    want = 0
    if cl_parent[c] >= 0:
        st = 1
        for q in range(sep_start[c + 1] - 1, sep_start[c] - 1, -1):
            d = hidx[sep_cpos[q]]
            if d >= 0:
                want += assign[r, cl_var[cl_start[c] + sep_cpos[q]]] * st
                st *= hcard[d]
    _start(h, T, idx, base, digit)
    top = -np.inf
    pick = -1
    for j in range(size):
        if idx[K] == want:
            x = work[tab + j] if logs else np.log(work[tab + j])
            if x > top:
                top = x
                pick = j
        _advance(h, digit, hcard, S, idx, T)
    if not best:
        u = uniforms[r, c]
        mass = 0.0
        _start(h, T, idx, base, digit)
        for j in range(size):
            if idx[K] == want:
                x = work[tab + j] if logs else np.log(work[tab + j])
                mass += np.exp(x - top)
            _advance(h, digit, hcard, S, idx, T)
        goal = u * mass
        mass = 0.0
        _start(h, T, idx, base, digit)
        for j in range(size):
            if idx[K] == want:
                x = work[tab + j] if logs else np.log(work[tab + j])
                w = np.exp(x - top)
                if w > 0.0:
                    pick = j
                    mass += w
                    if mass > goal:
                        break
            _advance(h, digit, hcard, S, idx, T)
    if pick < 0:
        return
    # digits of the chosen entry, last fastest
    rest = pick
    for i in range(h - 1, -1, -1):
        digit[i] = rest % hcard[i]
        rest //= hcard[i]
    for p in range(cl_start[c + 1] - cl_start[c]):
        d = hidx[p]
        if d >= 0:
            assign[r, cl_var[cl_start[c] + p]] = digit[d]
