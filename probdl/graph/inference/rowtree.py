"""A junction tree for one row's evidence, triangulated and laid out in compiled code.

    # inside rows.run_rows, for a row routed to its own tree:
    scratch = builder_scratch(n)
    buf, off, const, consts, need, work, size = build(r, net, states, hidden, on, target, cpt,
                                                      lg, kinds, more, scratch)

The maths: hard evidence removes a variable from the graph (a CPT then ranges over its
family's hidden members only, its observed members fixed), so the moral graph that matters for
a row links the hidden members of each family. Triangulating that graph (greedy elimination:
weighted min-fill, min-fill or min-weight, the smallest total kept) can give far smaller
cliques than the network's tree restricted to the row's hidden members, because fill-in edges
through observed variables are gone. Eliminating v makes the clique {v} + its neighbours; the
clique links to the clique of its first neighbour eliminated later (a tree with the
running-intersection property); a clique holding nothing beyond its child's separator is
merged into the child. Each CPT goes to the clique where the first of its hidden members was
eliminated (that clique holds all of them), its observed members folded into a base offset; a
CPT with no hidden member is a constant factor of P(e). A single query's tree is rooted at the
clique where its target was eliminated. The result is laid out exactly like the network's tree
(:meth:`Engine.tree_arrays`), so the same compiled passes run on it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .elimination import eliminate
from .odometer import row_needs

__all__ = ["build", "builder_scratch"]


@njit(cache=True, nogil=True)
def builder_scratch(n):
    """Work arrays for :func:`build`, reused across the rows of one call."""
    ints = np.zeros((16, n + 1), dtype=np.int64)
    # adjacency as bits (row a, word b // 64); the last row gathers the vertices to rescore
    return (ints, np.zeros((n + 1, n // 64 + 1), dtype=np.uint64),
            np.zeros((n, n), dtype=np.int64),
            np.zeros((2, n), dtype=np.float64),
            np.zeros(n * (n + 1) // 2 + n + 1, dtype=np.int64))


@njit(cache=True, nogil=True)
def _minus_ones(size):
    out = np.empty(size, dtype=np.int64)
    out[:] = -1
    return out


@njit(cache=True, nogil=True)
def _find(alias, i):
    while alias[i] != i:
        alias[i] = alias[alias[i]]
        i = alias[i]
    return i


@njit(cache=True, nogil=True)
def _sorted_members(c, cm, cstart, gv, cards, n, out, at):
    """Clique c's variables by (card, id), as on the network's tree, into out[at:]."""
    lo, hi = cstart[c], cstart[c + 1]
    for i in range(hi - lo):
        g = gv[cm[lo + i]]
        out[at + i] = cards[g] * (n + 1) + g
    for i in range(1, hi - lo):  # insertion sort: cliques are short
        x = out[at + i]
        j = i - 1
        while j >= 0 and out[at + j] > x:
            out[at + j + 1] = out[at + j]
            j -= 1
        out[at + j + 1] = x
    for i in range(hi - lo):
        out[at + i] = out[at + i] % (n + 1)


@njit(cache=True, nogil=True)
def build(r, net, states, hidden, on, target, cpt, lg, kinds, more, scratch):
    """Row r's own tree: (the tree packed as :func:`.layout.pack` does, log of its constant
    factors, their CPT entries, workspace entries, cost (:func:`.odometer.row_needs`), total
    clique size). ``on``: the CPTs in
    the model; ``target`` >= 0 roots the tree at the clique where that variable was
    eliminated; ``cpt`` (logs with ``lg``) values the constants; ``kinds``: the heuristics
    tried, the smallest total kept, the later ones only while the best total exceeds
    ``more`` entries per hidden variable."""
    cards = net[4]
    n = cards.size
    ints = scratch[0]
    loc, gv, link, alias, newid, cstart, pos = (ints[7], ints[8], ints[9], ints[10], ints[11],
                                                ints[6], ints[3])
    cm = scratch[4]
    h = np.int64(0)  # not a literal: callees compile once, for int64
    for v in range(n):
        if hidden[r, v]:
            loc[v] = h
            gv[h] = v
            h += 1
        else:
            loc[v] = -1
    # the first heuristic recorded; the next ones only where the tables would outweigh them,
    # recorded again if one wins (h < 0, h >= 0: booleans that are not literals, so
    # eliminate compiles once)
    best_kind = kinds[0]
    best = eliminate(h, best_kind, gv, net, on, loc, scratch, h >= 0)
    cost = best
    for kind in kinds[1:]:
        if best <= more * h:
            break
        total = eliminate(h, kind, gv, net, on, loc, scratch, h < 0)
        if total < best:
            best, best_kind = total, kind
    if best < cost:
        cost = eliminate(h, best_kind, gv, net, on, loc, scratch, h >= 0)
    # link each clique to its first neighbour eliminated later; merge non-maximal cliques
    for i in range(h):
        alias[i] = i
        p = -1
        for k in range(cstart[i] + 1, cstart[i + 1]):
            if p < 0 or pos[cm[k]] < p:
                p = pos[cm[k]]
        link[i] = p
    for i in range(h):
        if alias[i] != i:
            continue
        size = cstart[i + 1] - cstart[i]
        p = link[i]
        while p >= 0 and alias[p] == p and cstart[p + 1] - cstart[p] == size - 1:
            alias[p] = i  # clique p is clique i without v_i: nothing more than its separator
            size -= 1
            p = link[p]
        link[i] = p
    for i in range(h):
        if alias[i] == i and link[i] >= 0:
            link[i] = _find(alias, link[i])
    # number the kept cliques parents first (depth first from the roots; the target's first)
    kept = np.int64(0)
    for i in range(h):
        newid[i] = -1
        if alias[i] == i:
            kept += 1
    deg = np.zeros(h + 1, dtype=np.int64)
    for i in range(h):
        if alias[i] == i and link[i] >= 0:
            deg[i] += 1
            deg[link[i]] += 1
    adj_start = np.zeros(h + 1, dtype=np.int64)
    for i in range(h):
        adj_start[i + 1] = adj_start[i] + deg[i]
    fill = adj_start[:h].copy()
    adjl = np.empty(max(adj_start[h], 1), dtype=np.int64)
    for i in range(h):
        if alias[i] == i and link[i] >= 0:
            adjl[fill[i]] = link[i]
            fill[i] += 1
            adjl[fill[link[i]]] = i
            fill[link[i]] += 1
    parent = _minus_ones(kept)
    old = np.empty(kept, dtype=np.int64)
    stack = np.empty(kept + 1, dtype=np.int64)
    nid = np.int64(0)
    for s in range(-1, h):
        start = s
        if s < 0:
            if target < 0 or loc[target] < 0:
                continue
            start = _find(alias, pos[loc[target]])
        elif alias[s] != s or link[s] >= 0 or newid[s] >= 0:
            continue
        if newid[start] >= 0:
            continue
        top = 0
        stack[0] = start
        newid[start] = nid
        old[nid] = start
        nid += 1
        while top >= 0:
            c = stack[top]
            top -= 1
            for k in range(adj_start[c], adj_start[c + 1]):
                x = adjl[k]
                if newid[x] < 0:
                    newid[x] = nid
                    old[nid] = x
                    parent[nid] = newid[c]
                    nid += 1
                    top += 1
                    stack[top] = x
    return _lay_out(r, h, kept, old, parent, newid, alias, net, states, hidden, on, cpt, lg,
                    scratch, cost, target)


@njit(cache=True, nogil=True)
def _lay_out(r, h, m, old, parent, newid, alias, net, states, hidden, on, cpt, lg, scratch,
             cost, target):
    """The tree arrays of the kept cliques (``old[c]`` is new clique c's elimination step)."""
    cpt_start, cards, columns = net[3], net[4], net[5]
    n = cards.size
    ints, cm = scratch[0], scratch[4]
    loc, gv, mpos, cstart, pos = ints[7], ints[8], ints[12], ints[6], ints[3]
    cl_start = np.zeros(m + 1, dtype=np.int64)
    for c in range(m):
        cl_start[c + 1] = cl_start[c] + cstart[old[c] + 1] - cstart[old[c]]
    cl_var = np.empty(cl_start[m], dtype=np.int64)
    for c in range(m):
        _sorted_members(old[c], cm, cstart, gv, cards, n, cl_var, cl_start[c])
    for v in range(n):
        mpos[v] = -1
    sep_start, sep_c, sep_p = _separators(m, parent, cl_start, cl_var, mpos)
    gr_start, gk_start, gk_list = _groups(m, parent, cl_start, cl_var, sep_start, sep_c)
    fa_start, fa_var, fs_start, fa_stride, fa_base, const, consts = _factors(
        r, m, cl_start, cl_var, newid, alias, net, states, on, cpt, lg, loc, pos, mpos)
    first = loc[target] if target >= 0 else -1
    hv_start, hv_pos = _homes(h, m, cl_start, cl_var, cards, loc, gv, first)
    need = np.zeros(1)
    work = np.zeros(1)
    no_pot = _minus_ones(m)
    row_needs(cl_start, cl_var, cards, sep_start, sep_c, gr_start, gk_start, gk_list, fa_start,
              hv_start, no_pot, states[r:r + 1], hidden[r:r + 1], need,
              np.zeros(1, dtype=np.int64), work)
    # packed as layout.pack does (the order of TreeArrays.tree_args, then potentials, bases)
    sizes = (m + 1, cl_var.size, m, n, columns.size, m + 1, sep_c.size, sep_p.size, m + 1,
             gk_start.size, gk_list.size, m + 1, fa_var.size, fs_start.size, fa_stride.size,
             n, m + 1, hv_pos.size, m, n, fa_base.size)
    off = np.zeros(len(sizes) + 1, dtype=np.int64)
    for i, size in enumerate(sizes):
        off[i + 1] = off[i] + size
    buf = np.empty(off[-1], dtype=np.int64)
    for i, part in enumerate((cl_start, cl_var, parent, cards, columns, sep_start, sep_c,
                              sep_p, gr_start, gk_start, gk_list, fa_start, fa_var, fs_start,
                              fa_stride, cpt_start, hv_start, hv_pos, no_pot, cards,
                              fa_base)):
        for k in range(part.size):  # (loops: slice assignment compiles far slower)
            buf[off[i] + k] = part[k]
    return buf, off, const, consts, need[0], work[0], cost


@njit(cache=True, nogil=True)
def _same_sep(x, y, cl_start, cl_var, sep_start, sep_c):
    """Whether cliques x and y have the same separator variables (both in (card, id) order)."""
    if sep_start[x + 1] - sep_start[x] != sep_start[y + 1] - sep_start[y]:
        return False
    for k in range(sep_start[x + 1] - sep_start[x]):
        if (cl_var[cl_start[x] + sep_c[sep_start[x] + k]]
                != cl_var[cl_start[y] + sep_c[sep_start[y] + k]]):
            return False
    return True


@njit(cache=True, nogil=True)
def _separators(m, parent, cl_start, cl_var, mpos):
    """Separators: members shared with the parent, positions on both sides (child's order);
    ``mpos`` (-1 everywhere) is left as it was found."""
    sep_start = np.zeros(m + 1, dtype=np.int64)
    sep_c = np.empty(cl_start[m], dtype=np.int64)
    sep_p = np.empty(cl_start[m], dtype=np.int64)
    ns = 0
    for c in range(m):
        p = parent[c]
        if p >= 0:
            for k in range(cl_start[p], cl_start[p + 1]):
                mpos[cl_var[k]] = k - cl_start[p]
            for k in range(cl_start[c], cl_start[c + 1]):
                if mpos[cl_var[k]] >= 0:
                    sep_c[ns] = k - cl_start[c]
                    sep_p[ns] = mpos[cl_var[k]]
                    ns += 1
            for k in range(cl_start[p], cl_start[p + 1]):
                mpos[cl_var[k]] = -1
        sep_start[c + 1] = ns
    return sep_start, sep_c[:ns].copy(), sep_p[:ns].copy()


@njit(cache=True, nogil=True)
def _groups(m, parent, cl_start, cl_var, sep_start, sep_c):
    """Children grouped by separator (the same variables: one product of their messages)."""
    gr_start = np.zeros(m + 1, dtype=np.int64)
    gk_start = np.zeros(m + 1, dtype=np.int64)
    gk_list = np.empty(m, dtype=np.int64)
    first = np.empty(m, dtype=np.int64)
    kids = np.zeros(m + 1, dtype=np.int64)
    for c in range(m):
        if parent[c] >= 0:
            kids[parent[c] + 1] += 1
    for c in range(m):
        kids[c + 1] += kids[c]
    fill = kids[:m].copy()
    child = np.empty(m, dtype=np.int64)
    for c in range(m):
        if parent[c] >= 0:
            child[fill[parent[c]]] = c
            fill[parent[c]] += 1
    ng = 0
    nk = 0
    grp = np.empty(m, dtype=np.int64)
    for c in range(m):
        g0 = ng
        # group heads are the distinct separators; members follow their head
        for a in range(kids[c + 1] - kids[c]):
            grp[a] = -1
        heads = 0
        for a in range(kids[c + 1] - kids[c]):
            x = child[kids[c] + a]
            for b in range(heads):
                y = first[g0 + b]
                if _same_sep(x, y, cl_start, cl_var, sep_start, sep_c):
                    grp[a] = b
                    break
            if grp[a] < 0:
                first[g0 + heads] = x
                grp[a] = heads
                heads += 1
        ng = g0 + heads
        for b in range(heads):
            gk_start[g0 + b] = nk
            for a in range(kids[c + 1] - kids[c]):
                if grp[a] == b:
                    gk_list[nk] = child[kids[c] + a]
                    nk += 1
        gr_start[c + 1] = ng
    gk_start[ng] = nk
    gk_start = gk_start[:ng + 1].copy()
    return gr_start, gk_start, gk_list[:nk].copy()


@njit(cache=True, nogil=True)
def _factors(r, m, cl_start, cl_var, newid, alias, net, states, on, cpt, lg, loc, pos, mpos):
    """CPT homes (the clique where the first of their hidden members was eliminated), their
    strides and observed offsets; constants (no hidden member): their log and entries."""
    fam_start, fam_var, fam_stride, cpt_start, cards = net[0], net[1], net[2], net[3], net[4]
    n = cards.size
    home = _minus_ones(n)
    const = 0.0
    consts = np.empty(n, dtype=np.int64)
    nconst = 0
    nfa = np.zeros(m + 1, dtype=np.int64)
    for v in range(n):
        if not on[v]:
            continue
        first_pos = -1
        offset = 0
        for p in range(fam_start[v], fam_start[v + 1]):
            u = fam_var[p]
            if loc[u] >= 0:
                if first_pos < 0 or pos[loc[u]] < first_pos:
                    first_pos = pos[loc[u]]
            else:
                offset += states[r, u] * fam_stride[p]
        if first_pos < 0:  # nothing hidden: a constant factor of P(e)
            x = cpt[cpt_start[v] + offset]
            const += x if lg else (np.log(x) if x > 0.0 else -np.inf)
            consts[nconst] = cpt_start[v] + offset
            nconst += 1
            continue
        home[v] = newid[_find(alias, first_pos)]
        nfa[home[v] + 1] += 1
    fa_start = np.zeros(m + 1, dtype=np.int64)
    for c in range(m):
        fa_start[c + 1] = fa_start[c] + nfa[c + 1]
    nf = fa_start[m]
    fa_var = np.empty(nf, dtype=np.int64)
    fa_base = np.zeros(nf, dtype=np.int64)
    fs_start = np.empty(nf, dtype=np.int64)
    fill = fa_start[:m].copy()
    for v in range(n):
        if home[v] >= 0:
            fa_var[fill[home[v]]] = v
            fill[home[v]] += 1
    total_strides = 0
    for c in range(m):
        for f in range(fa_start[c], fa_start[c + 1]):
            fs_start[f] = total_strides
            total_strides += cl_start[c + 1] - cl_start[c]
    fa_stride = np.zeros(total_strides, dtype=np.int64)
    for c in range(m):
        for k in range(cl_start[c], cl_start[c + 1]):
            mpos[cl_var[k]] = k - cl_start[c]
        for f in range(fa_start[c], fa_start[c + 1]):
            v = fa_var[f]
            for p in range(fam_start[v], fam_start[v + 1]):
                u = fam_var[p]
                if loc[u] >= 0:
                    fa_stride[fs_start[f] + mpos[u]] = fam_stride[p]
                else:
                    fa_base[f] += states[r, u] * fam_stride[p]
        for k in range(cl_start[c], cl_start[c + 1]):
            mpos[cl_var[k]] = -1
    return fa_start, fa_var, fs_start, fa_stride, fa_base, const, consts[:nconst].copy()


@njit(cache=True, nogil=True)
def _homes(h, m, cl_start, cl_var, cards, loc, gv, first):
    """Each hidden variable's posterior is read at the smallest clique holding it; ``first``
    (a query's target, as a hidden index; -1 if none) at the root clique 0, which holds it:
    a query's tree is only collected, so only the root's beliefs are formed."""
    hv_start = np.zeros(m + 1, dtype=np.int64)
    hv_home = _minus_ones(h)
    smallest = np.empty(h)
    smallest[:] = np.inf
    for c in range(m):
        size = 1.0
        for k in range(cl_start[c], cl_start[c + 1]):
            size *= cards[cl_var[k]]
        for k in range(cl_start[c], cl_start[c + 1]):
            i = loc[cl_var[k]]
            if size < smallest[i]:
                smallest[i] = size
                hv_home[i] = c
    if first >= 0:
        hv_home[first] = 0
    for i in range(h):
        hv_start[hv_home[i] + 1] += 1
    for c in range(m):
        hv_start[c + 1] += hv_start[c]
    hv_pos = np.empty(h, dtype=np.int64)
    fill = hv_start[:m].copy()
    for i in range(h):
        c = hv_home[i]
        for k in range(cl_start[c], cl_start[c + 1]):
            if cl_var[k] == gv[i]:
                hv_pos[fill[c]] = k - cl_start[c]
        fill[c] += 1
    return hv_start, hv_pos
