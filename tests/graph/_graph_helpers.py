"""Small random networks and brute-force enumeration: the independent reference for the engine."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from probdl.graph import BayesNet


def random_net(seed: int, n_vars: int = 5, max_parents: int = 2, max_card: int = 3,
               zeros: bool = False) -> BayesNet:
    """A random DAG over ``n_vars`` variables with Dirichlet CPTs (some exact zeros if asked)."""
    rng = np.random.default_rng(seed)
    names = [f"V{i}" for i in range(n_vars)]
    states = {v: [f"s{j}" for j in range(rng.integers(2, max_card + 1))] for v in names}
    parents, cpts = {}, {}
    for i, v in enumerate(names):
        k = int(rng.integers(0, min(i, max_parents) + 1))
        ps = [names[j] for j in sorted(rng.choice(i, size=k, replace=False))] if k else []
        parents[v] = ps
        shape = [len(states[p]) for p in ps]
        table = rng.dirichlet(np.ones(len(states[v])), size=shape)
        if zeros:
            table = np.where(rng.random(table.shape) < 0.2, 0.0, table)
            table[..., 0] += table.sum(-1) == 0
            table = table / table.sum(-1, keepdims=True)
        cpts[v] = np.moveaxis(table, -1, 0)
    # shuffle the declaration order so that topological sorting is exercised
    order = list(rng.permutation(n_vars))
    return BayesNet({names[i]: states[names[i]] for i in order},
                    {names[i]: parents[names[i]] for i in order}, cpts)


def joint_table(bn: BayesNet) -> np.ndarray:
    """The full joint P(x_1, ..., x_n), axes in ``bn.variables`` order."""
    vs = bn.variables
    cards = [len(bn.states[v]) for v in vs]
    joint = np.ones(cards)
    for v in vs:
        axes = [vs.index(u) for u in (v, *bn.parents(v))]
        cpt = bn.cpd(v)
        shape = [1] * len(vs)
        order = np.argsort(axes)
        expanded = np.transpose(cpt, order)
        for a in axes:
            shape[a] = cards[a]
        joint = joint * expanded.reshape(shape)
    return joint


def evidence_mask(bn: BayesNet, row: pd.Series, soft=None, row_index: int = 0) -> np.ndarray:
    """The joint weighted by a row's hard and soft evidence."""
    vs = bn.variables
    joint = joint_table(bn)
    for j, v in enumerate(vs):
        k = len(bn.states[v])
        lam = np.ones(k)
        value = row.get(v, np.nan) if row is not None else np.nan
        if isinstance(value, str):
            lam = (np.asarray(bn.states[v]) == value).astype(float)
        if soft and v in soft:
            s = np.asarray(soft[v], dtype=float)
            lam = lam * (s[row_index] if s.ndim == 2 else s)
        shape = [1] * len(vs)
        shape[j] = k
        joint = joint * lam.reshape(shape)
    return joint


def all_configs(bn: BayesNet):
    return itertools.product(*[range(len(bn.states[v])) for v in bn.variables])
