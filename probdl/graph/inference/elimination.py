"""Greedy elimination of one row's hidden moral graph, compiled (the row's own triangulation).

    # inside rowtree.build: the total clique size of a heuristic, then the kept one recorded
    total = eliminate(h, kind, gv, net, on, loc, scratch, False)

The maths: the graph links the hidden members of every CPT's family (observed variables are
gone). Eliminating a vertex v adds fill-in edges between its neighbours and makes the clique
{v} + neighbours, of size the product of their cards. Greedy elimination picks the vertex of
the smallest score: min-fill (fill-in edges it would add), weighted min-fill (each edge
weighted by the log cards of its ends), or min-weight (log of the clique's size); ties go to
the smaller clique, then the lower index. Only vertices whose score can change are rescored:
the neighbours of v and the common neighbours of every fill-in edge (adjacency held as bits,
so those are word-wise ANDs).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["HUB", "eliminate"]

# Degree above which a vertex's fill-in is counted word-wise (see _score).
HUB = 24


@njit(cache=True, nogil=True)
def _score(u, kind, nb, nbc, adj, logk):
    """(primary, tie) greedy score of eliminating u: 0 min-fill, 1 weighted min-fill (fill-in
    edges weighted by their ends' log cards), 2 min-weight (log of the clique's size). A hub
    (more than HUB neighbours) counts its fill-in word-wise, weighted by its neighbours' mean
    log card: exact pairs would cost the square of its degree at every rescoring."""
    d = nbc[u]
    w = logk[u]
    for i in range(d):
        w += logk[nb[u, i]]
    if kind == 2:
        return w, float(d)
    fill = 0.0
    if d > HUB:
        missing = 0
        for i in range(d):
            a = nb[u, i]
            for k in range(adj.shape[1]):
                missing += _popcount(adj[u, k] & ~adj[a, k])
            missing -= 1  # a itself
        fill = missing / 2.0
        if kind == 1:
            fill *= 2.0 * (w - logk[u]) / d
        return fill, w
    for i in range(d):
        a = nb[u, i]
        for j in range(i + 1, d):
            b = nb[u, j]
            if not _has(adj, a, b):
                fill += (logk[a] + logk[b]) if kind == 1 else 1.0
    return fill, w


@njit(cache=True, nogil=True)
def _popcount(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return int((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


_ONE = np.uint64(1)
_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_CTZ = np.zeros(64, dtype=np.int64)
for _i in range(64):
    _CTZ[((1 << _i) * 0x03F79D71B4CB0A89 % 2**64) >> 58] = _i


@njit(cache=True, nogil=True)
def _has(adj, a, b):
    return (adj[a, b >> 6] >> np.uint64(b & 63)) & _ONE != 0


@njit(cache=True, nogil=True)
def _set(adj, a, b, on):
    if on:
        adj[a, b >> 6] |= _ONE << np.uint64(b & 63)
    else:
        adj[a, b >> 6] &= ~(_ONE << np.uint64(b & 63))


@njit(cache=True, nogil=True)
def _link(a, b, adj, nb, nbc):
    _set(adj, a, b, True)
    _set(adj, b, a, True)
    nb[a, nbc[a]] = b
    nbc[a] += 1
    nb[b, nbc[b]] = a
    nbc[b] += 1


@njit(cache=True, nogil=True)
def eliminate(h, kind, gv, net, on, loc, scratch, record):
    """Greedy elimination of the row's hidden moral graph by heuristic ``kind``; returns the
    total clique size. With ``record`` the cliques ({v} + neighbours, in elimination order)
    go to ``cm``/``cstart`` and the order to ``order``/``pos``. The adjacency matrix is left
    all zeros (every edge is removed as its end is eliminated)."""
    fam_start, fam_var, cards = net[0], net[1], net[4]
    ints, adj, nb, fl, cm = scratch
    nbc, alive, order, pos, cstart = ints[0], ints[1], ints[2], ints[3], ints[6]
    s1, s2 = fl[0], fl[1]
    logk = np.empty(h)
    words = adj.shape[1]
    todo = adj[adj.shape[0] - 1]  # vertices whose fill may have changed, as bits
    for i in range(h):
        nbc[i] = 0
        alive[i] = 1
        logk[i] = np.log(cards[gv[i]])
    for v in range(fam_start.size - 1):  # the hidden members of each family, pairwise
        if not on[v]:
            continue
        for p in range(fam_start[v], fam_start[v + 1]):
            a = loc[fam_var[p]]
            if a < 0:
                continue
            for q in range(p + 1, fam_start[v + 1]):
                b = loc[fam_var[q]]
                if b >= 0 and not _has(adj, a, b):
                    _link(a, b, adj, nb, nbc)
    for i in range(h):
        s1[i], s2[i] = _score(i, kind, nb, nbc, adj, logk)
    total = 0.0
    ncm = 0
    for step in range(h):
        v = -1
        for i in range(h):
            if alive[i] and (v < 0 or s1[i] < s1[v] or (s1[i] == s1[v] and s2[i] < s2[v])):
                v = i
        alive[v] = 0
        d = nbc[v]
        size = float(cards[gv[v]])
        for i in range(d):
            size *= cards[gv[nb[v, i]]]
        total += size
        if record:
            order[step] = v
            pos[v] = step
            cstart[step] = ncm
            cm[ncm] = v
            for i in range(d):
                cm[ncm + 1 + i] = nb[v, i]
            ncm += d + 1
        for i in range(d):  # fill-in: v's neighbours made pairwise adjacent
            a = nb[v, i]
            for j in range(i + 1, d):
                b = nb[v, j]
                if not _has(adj, a, b):
                    _link(a, b, adj, nb, nbc)
                    if kind < 2:  # the fill of their common neighbours drops
                        for w in range(words):
                            todo[w] |= adj[a, w] & adj[b, w]
        for i in range(d):  # v leaves the graph
            a = nb[v, i]
            for k in range(nbc[a]):
                if nb[a, k] == v:
                    nbc[a] -= 1
                    nb[a, k] = nb[a, nbc[a]]
                    break
            _set(adj, a, v, False)
            _set(adj, v, a, False)
            _set(adj, adj.shape[0] - 1, a, True)
        nbc[v] = 0
        for w in range(words):  # rescore: v's neighbours and the common neighbours above
            x = todo[w]
            todo[w] = np.uint64(0)
            while x != np.uint64(0):
                low = x & (~x + _ONE)
                x ^= low
                u = w * 64 + _CTZ[(low * _DEBRUIJN) >> np.uint64(58)]
                if alive[u]:
                    s1[u], s2[u] = _score(u, kind, nb, nbc, adj, logk)
    if record:
        cstart[h] = ncm
    return total
