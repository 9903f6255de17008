"""A network's junction tree: triangulation heuristics, cliques, separators and factor homes.

    from probdl.graph import BayesNet
    from probdl.graph.inference.junction import build
    bn = BayesNet.example("alarm")
    cards = [len(bn.states[v]) for v in bn.variables]
    parents = [[bn.variables.index(p) for p in bn.parents(v)] for v in bn.variables]
    tree = build(cards, parents)
    tree.heuristic, tree.total_size, tree.largest   # the kept triangulation and its cost

The maths: eliminating the variables of the moral graph in some order adds fill-in edges and
makes the graph chordal; the sets {v} + (neighbours of v when eliminated) are its cliques
(non-maximal ones are merged away), and linking each clique to the clique of the first of its
other members eliminated later gives a tree with the running-intersection property. Every
family (a variable and its parents) is complete in the moral graph, so it lies in some clique:
its CPT is multiplied there. Sum-product on that tree is exact, and its cost is governed by the
total number of clique entries, so each heuristic (min-fill, weighted min-fill, min-degree,
min-weight) is tried and the order with the smallest total kept.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["HEURISTICS", "JunctionTree", "build", "elimination_order"]

HEURISTICS = ("min-fill", "weighted-min-fill", "min-degree", "min-weight")


@dataclass(frozen=True)
class JunctionTree:
    """Cliques in an order where every parent precedes its children (roots first)."""

    cliques: tuple[tuple[int, ...], ...]  # member variables of each clique, by (card, id)
    parent: tuple[int, ...]  # parent clique, -1 for a root (one root per connected part)
    family_home: tuple[int, ...]  # clique where each variable's CPT is multiplied
    home: tuple[int, ...]  # smallest clique holding each variable (its marginal is read there)
    heuristic: str
    total_size: int  # sum over cliques of the product of their members' cards
    largest: int  # entries of the largest clique
    largest_clique: tuple[int, ...]


def _moral(cards: Sequence[int], parents: Sequence[Sequence[int]]) -> list[set[int]]:
    nbrs: list[set[int]] = [set() for _ in cards]
    for v, ps in enumerate(parents):
        family = (v, *ps)
        for a in family:
            nbrs[a].update(u for u in family if u != a)
    return nbrs


def _score(kind: str, v: int, nbrs: list[set[int]], logk: Sequence[float]) -> tuple:
    ns = nbrs[v]
    weight = logk[v] + sum(logk[u] for u in ns)
    if kind == "min-degree":
        return (len(ns), weight)
    if kind == "min-weight":
        return (weight, len(ns))
    fill = 0.0
    listed = list(ns)
    for i, a in enumerate(listed):
        na = nbrs[a]
        for b in listed[i + 1:]:
            if b not in na:
                fill += (logk[a] + logk[b]) if kind == "weighted-min-fill" else 1.0
    return (fill, weight)


def elimination_order(cards: Sequence[int], parents: Sequence[Sequence[int]],
                      kind: str) -> list[int]:
    """A greedy elimination order of the moral graph by heuristic ``kind`` (ties: weight, id).

    Scores are kept in a heap and recomputed only for the variables an elimination can affect
    (the neighbours of the eliminated one and, for fill scores, their neighbours).
    """
    nbrs = _moral(cards, parents)
    logk = [math.log(k) for k in cards]
    version = [0] * len(cards)
    heap = [(_score(kind, v, nbrs, logk), v, 0) for v in range(len(cards))]
    heapq.heapify(heap)
    done = [False] * len(cards)
    order: list[int] = []
    while heap:
        _, v, ver = heapq.heappop(heap)
        if done[v] or ver != version[v]:
            continue
        done[v] = True
        order.append(v)
        ns = nbrs[v]
        for a in ns:
            nbrs[a].discard(v)
            nbrs[a].update(u for u in ns if u != a)
        touched = set(ns)
        if kind in ("min-fill", "weighted-min-fill"):
            for a in ns:
                touched.update(nbrs[a])
        for u in touched:
            if not done[u]:
                version[u] += 1
                heapq.heappush(heap, (_score(kind, u, nbrs, logk), u, version[u]))
    return order


def _tree_from_order(cards, parents, order):
    """Maximal elimination cliques and their tree (clique ids are positions in ``order``)."""
    n = len(cards)
    nbrs = _moral(cards, parents)
    position = [0] * n
    for i, v in enumerate(order):
        position[v] = i
    members, parent = [], []
    for v in order:
        rest = nbrs[v]
        members.append(frozenset(rest | {v}))
        parent.append(min(rest, key=position.__getitem__) if rest else -1)
        for a in rest:
            nbrs[a].discard(v)
            nbrs[a].update(u for u in rest if u != a)
    # clique of v (index position[v]) links to the clique of its first neighbour eliminated later
    link = [position[p] if p >= 0 else -1 for p in parent]
    # merge a clique into its child when it holds nothing more than that child's separator
    alias = list(range(n))

    def find(i):
        while alias[i] != i:
            alias[i] = alias[alias[i]]
            i = alias[i]
        return i

    for i in range(n):  # children come before parents in elimination order
        p = link[i]
        if p < 0 or alias[i] != i:  # a root, or merged into a child already
            continue
        p = link[i] = find(p)
        if members[p] <= members[i]:
            alias[p] = i
            members[i] = members[i] | members[p]
            link[i] = link[p]
    kept = [i for i in range(n) if alias[i] == i]
    for i in kept:
        p = link[i]
        link[i] = find(p) if p >= 0 else -1
    return members, link, kept


def _roots_first(nodes, parent) -> list[int]:
    """``nodes`` ordered roots first, every parent before its children (depth first)."""
    children: dict[int, list[int]] = {i: [] for i in nodes}
    roots = []
    for i in nodes:
        (children[parent[i]].append(i) if parent[i] >= 0 else roots.append(i))
    ordered, queue = [], sorted(roots, reverse=True)
    while queue:
        i = queue.pop()
        ordered.append(i)
        queue.extend(sorted(children[i], reverse=True))
    return ordered


def build(cards: Sequence[int], parents: Sequence[Sequence[int]],
          heuristics: Sequence[str] = HEURISTICS) -> JunctionTree:
    """The junction tree of the smallest total clique size over ``heuristics``."""
    cards = [int(k) for k in cards]
    best = None
    for kind in heuristics:
        order = elimination_order(cards, parents, kind)
        members, link, kept = _tree_from_order(cards, parents, order)
        total = sum(math.prod(cards[u] for u in members[i]) for i in kept)
        if best is None or total < best[0]:
            best = (total, kind, members, link, kept)
    total, kind, members, link, kept = best
    ordered = _roots_first(kept, link)
    new_id = {old: k for k, old in enumerate(ordered)}
    # members by (card, id): the largest-card hidden member is the fastest odometer digit
    cliques = tuple(tuple(sorted(members[i], key=lambda u: (cards[u], u))) for i in ordered)
    parent = tuple(new_id[link[i]] if link[i] >= 0 else -1 for i in ordered)
    sizes = [math.prod(cards[u] for u in c) for c in cliques]
    family_home, home = [], []
    sets = [set(c) for c in cliques]
    holding: list[list[int]] = [[] for _ in cards]
    for k, c in enumerate(cliques):
        for u in c:
            holding[u].append(k)
    for v in range(len(cards)):
        family = {v, *parents[v]}
        holders = [k for k in holding[v] if family <= sets[k]]
        family_home.append(min(holders, key=lambda k: (sizes[k], k)))
        home.append(min(holding[v], key=lambda k: (sizes[k], k)))
    big = int(np.argmax(sizes)) if sizes else 0
    return JunctionTree(cliques, parent, tuple(family_home), tuple(home), kind, int(total),
                        int(max(sizes, default=0)), cliques[big] if cliques else ())
