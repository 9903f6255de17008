"""Grouping rows by evidence pattern, and the plan layout (relevant, absorbed, lambda) per group.

    from probdl.graph.grouping import groups, key_variables, layout
    for pattern, rows in groups(observed, key_variables(bn._structure)):
        relevant, absorbed, lambdas = layout(bn._structure, "marginals", observed[rows].any(0),
                                             pattern, soft=set(), targets=())

A group's pattern marks the variables its plan absorbs (gathers per row); pattern None is the
universal plan, where all evidence enters as one-hot vectors.
"""

from __future__ import annotations

import numpy as np

from .plan import Structure, compile_plan

__all__ = ["KEY_GROUP_FLOPS", "KEY_VARIABLES", "MIN_GROUP", "groups", "key_variables", "layout",
           "universal_flops"]

# A pattern gets its own (absorbed, pruned) plan once this many rows share it; fewer rows go to
# the universal plan, whose compile is paid once per network.
MIN_GROUP = 16
# Rows whose whole pattern is rare are grouped by which of this many "key" variables they observe.
KEY_VARIABLES = 6
KEY_GROUP_FLOPS = 20_000  # ... only when the universal plan costs this much per row


def _unique_rows(mask: np.ndarray):
    """(first row of each distinct mask row, inverse index, counts)."""
    packed = np.packbits(mask, axis=1)
    keys = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, first, inverse, counts = np.unique(keys, return_index=True, return_inverse=True,
                                          return_counts=True)
    return first, inverse.reshape(-1), counts


def universal_flops(structure: Structure, optimize: str = "thorough") -> float:
    """Multiply-adds per row of the universal plan (every variable a lambda, nothing absorbed).

    ``optimize="greedy"`` gives a quick estimate (within about 2x of the thorough path on the
    bundled networks, found in milliseconds where the thorough search takes seconds on pigs).
    """
    n = len(structure.cards)
    return compile_plan(structure, tuple(range(n)), (), tuple(range(n)), (), optimize
                        ).flops_per_row


def key_variables(structure: Structure, count: int = KEY_VARIABLES) -> np.ndarray:
    """The variables whose absorption shrinks a plan most: many states, many neighbours.

    None for networks whose universal plan is cheap: there, more groups only add overhead
    (measured: alarm 3x slower with key groups, insurance 20% faster).
    """
    if universal_flops(structure) < KEY_GROUP_FLOPS:
        return np.zeros(0, dtype=np.int64)
    score = [k * (1 + len(structure.parents[v]) + len(structure.children[v]))
             for v, k in enumerate(structure.cards)]
    return np.argsort(score, kind="stable")[::-1][:count]


def groups(observed: np.ndarray, keys: np.ndarray | None = None
            ) -> list[tuple[np.ndarray | None, np.ndarray]]:
    """Split rows into (pattern, row indices): the variables a pattern marks are absorbed.

    Rows sharing their whole observed pattern with many others get that pattern. The rest are
    grouped by which of the first ``depth`` ``keys`` variables they observe (all keys first, then
    fewer), and those are absorbed (the other observed variables enter as one-hot vectors). What
    is left shares the universal plan (pattern None), which absorbs nothing.
    """
    n_rows = observed.shape[0]
    if n_rows == 0:
        return []
    if n_rows == 1:
        return [(observed[0], np.zeros(1, dtype=np.int64))]
    first, inverse, counts = _unique_rows(observed)
    own = counts >= MIN_GROUP
    if len(first) <= 4:
        own[:] = True
    out: list[tuple[np.ndarray | None, np.ndarray]] = []
    for p in np.flatnonzero(own):
        out.append((observed[first[p]], np.flatnonzero(inverse == p)))
    rest = np.flatnonzero(~own[inverse])
    # then by which of the first `depth` key variables they observe, deepest first, so that a
    # row whose full key pattern is rare still gets most of its key variables absorbed
    for depth in range(len(keys) if keys is not None else 0, 0, -1):
        if not rest.size:
            break
        sub = observed[np.ix_(rest, keys[:depth])]
        first, inverse, counts = _unique_rows(sub)
        left = []
        for p in range(len(first)):
            members = rest[inverse == p]
            if counts[p] >= MIN_GROUP and sub[first[p]].any():
                pattern = np.zeros(observed.shape[1], dtype=bool)
                pattern[keys[:depth]] = sub[first[p]]
                out.append((pattern, members))
            else:
                left.append(members)
        rest = np.concatenate(left) if left else np.zeros(0, dtype=np.int64)
    if rest.size:
        out.append((None, np.sort(rest)))
    return out


def layout(structure: Structure, mode: str, observed_any: np.ndarray, pattern, soft: set[int],
            targets: tuple[int, ...]):
    """Relevant variables, absorbed ones and lambda vectors for one group of rows."""
    n = len(structure.cards)
    seen = set(np.flatnonzero(observed_any).tolist())
    absorbed = set() if pattern is None else set(np.flatnonzero(pattern).tolist()) - soft
    clamped = seen - absorbed
    if mode == "map" or (mode == "marginals" and not targets):
        relevant = tuple(range(n))
    else:
        relevant = structure.ancestors(seen | soft | set(targets))
    if mode == "marginals" and not targets:
        lambdas = tuple(v for v in relevant if v not in absorbed)
    elif mode == "marginals":
        lambdas = tuple(v for v in relevant if v not in absorbed
                        and (v in targets or v in clamped or v in soft))
    else:
        lambdas = tuple(v for v in relevant if v in clamped or v in soft)
    return relevant, tuple(sorted(absorbed)), lambdas
