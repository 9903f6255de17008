"""A junction tree for one row's evidence, for rows whose cliques the network's tree keeps large.

    # inside Engine.run: a row whose tables on the network's tree would hold more than
    # REDUCE_PER_VARIABLE * n**2 entries is answered on a tree triangulated for its evidence
    engine_for_row = reduced_engine(engine, observed_row, states_row)

The maths: hard evidence removes a variable from the graph (its CPT is a table over its family
with that state fixed), so the moral graph that matters for a row links only hidden variables
that share a family. Triangulating that graph can give far smaller cliques than the network's
tree restricted to the row's hidden members (fill-in edges through observed variables are
gone). The row's tree has the hidden cliques of that triangulation; each CPT goes to the
smallest clique holding its family's hidden members, with the family's observed members added
there as fixed members (they cost nothing: the odometer walks hidden members only). Observed
members may then break the running-intersection property, which does not matter: messages
range over hidden separator members only. Triangulating costs milliseconds per row, so only
rows whose tables would be much larger than that take this path; everything else shares the
network's tree.
"""

from __future__ import annotations

import math

import numpy as np

from .junction import JunctionTree, build, reroot

__all__ = ["REDUCE_PER_VARIABLE", "reduced_engine", "split_run", "split_walk"]

# A row goes to its own tree when its tables on the network's tree hold more than this times
# n^2 entries (n variables): building a row's tree costs about that many table entries' time,
# growing with the square of the network's size (measured on munin1, 186 variables, and link,
# 724; see docs/tuning-log.md).
REDUCE_PER_VARIABLE = 270.0


def reduced_engine(engine, observed: np.ndarray, states: np.ndarray, factor_on=None,
                   target: int | None = None):
    """An Engine (same CPTs) on a tree triangulated for one row's evidence: ``observed``
    (n,) and the row's ``states`` (n,), whose observed values its potentials take; CPTs left
    out by ``factor_on`` (a query's barren variables) are not in the tree at all; with
    ``target``, the tree is rooted at the clique where its marginal is read."""
    # the engine's own classes (engine.py imports this module, so it is not imported here)
    engine_class, arrays_class = type(engine), type(engine.arrays)
    n = len(engine.cards)
    hidden = ~np.asarray(observed, dtype=bool)
    # the hidden members of every family must end up in one clique: one pseudo-family per CPT
    groups = [[u for u in (v, *engine.parents[v]) if hidden[u]]
              if factor_on is None or factor_on[v] else [] for v in range(n)]
    cards = [k if hidden[v] else 1 for v, k in enumerate(engine.cards)]
    fake_parents: list[list[int]] = [[] for _ in range(n)]
    extra_cards = []
    for g in groups:
        if len(g) >= 2:
            fake_parents.append(list(g))
            extra_cards.append(1)
    tree = build(cards + extra_cards, fake_parents, ("weighted-min-fill", "min-degree"))
    cliques = [sorted((u for u in c if u < n and hidden[u]),
                      key=lambda u: (engine.cards[u], u)) for c in tree.cliques]
    sizes = [math.prod(engine.cards[u] for u in c) for c in cliques]
    family_home, home = [], []
    members = [set(c) for c in cliques]
    holding: list[list[int]] = [[] for _ in range(n)]
    for k, c in enumerate(cliques):
        for u in c:
            holding[u].append(k)
    smallest = min(range(len(cliques)), key=lambda k: (sizes[k], k))
    for v in range(n):
        g = set(groups[v])
        holders = [k for k in holding[groups[v][0]] if g <= members[k]] if g else [smallest]
        on = factor_on is None or factor_on[v]
        family_home.append(min(holders, key=lambda k: (sizes[k], k)) if on else -1)
    for v in range(n):
        if family_home[v] >= 0:
            members[family_home[v]].update((v, *engine.parents[v]))
        else:  # a CPT left out is not in the tree; its (fixed) variable just needs a clique
            members[smallest].add(v)
        home.append(min(holding[v], key=lambda k: (sizes[k], k)) if hidden[v] else
                    family_home[v] if family_home[v] >= 0 else smallest)
    final = tuple(tuple(sorted(c, key=lambda u: (engine.cards[u], u))) for c in members)
    big = int(np.argmax(sizes)) if sizes else 0
    reduced = JunctionTree(final, tree.parent, tuple(family_home), tuple(home),
                           tree.heuristic, int(sum(sizes)), int(max(sizes, default=1)),
                           final[big] if final else ())
    if target is not None:
        reduced = reroot(reduced, home[target])
    arrays = arrays_class(reduced, engine.cards, engine.parents, fixed=dict(zip(
        np.flatnonzero(~hidden).tolist(), states[~hidden].tolist(), strict=True)))
    return engine_class(reduced, arrays, engine.cards, engine.parents,
                  engine.unflatten(engine.flat), engine.names)


def _rows(soft, rows):
    return None if soft is None else np.asarray(soft, dtype=np.float64)[rows]


def split_run(engine, heavy, states, hidden, soft, want, weights, factor_on, budget,
              target=None) -> dict:
    """``engine.run`` with the ``heavy`` rows each on its own tree, the rest together; with
    ``target`` (one variable's posterior wanted) each tree is rooted at its clique and only
    collected (the other posteriors are left out)."""
    light = np.setdiff1d(np.arange(len(states)), heavy)
    weights = np.ones(len(states)) if weights is None else np.asarray(weights, np.float64)
    out = engine.run(states[light], hidden[light], _rows(soft, light), want, weights[light],
                     factor_on, budget, target)
    log_z = np.zeros(len(states))
    post = np.zeros((len(states) if want == "post" else 0, int(engine.columns[-1])))
    log_z[light] = out["log_z"]
    if want == "post":
        post[light] = out["post"]
    counts = out["counts"]
    for r in heavy:
        one = slice(r, r + 1)
        own = reduced_engine(engine, ~hidden[r], states[r], factor_on, target)
        sub = own.run(states[one], hidden[one], _rows(soft, one), want, weights[one], None,
                      budget, target)
        log_z[r] = sub["log_z"][0]
        if want == "post":
            post[r] = sub["post"][0]
        if want == "counts":
            counts = counts + sub["counts"]
    return {"log_z": log_z, "post": post, "counts": counts}


def split_walk(engine, heavy, states, hidden, down, rng, budget, soft):
    """``engine._walk`` (MAP or draws) with the ``heavy`` rows each on its own tree."""
    light = np.setdiff1d(np.arange(len(states)), heavy)
    best = np.zeros(len(states))
    assign = np.zeros_like(states)
    best[light], assign[light] = engine._walk(states[light], hidden[light], down, rng, budget,
                                              _rows(soft, light))
    for r in heavy:
        one = slice(r, r + 1)
        best[one], assign[one] = reduced_engine(engine, ~hidden[r], states[r])._walk(
            states[one], hidden[one], down, rng, budget, _rows(soft, one))
    return best, assign
