"""Filling missing cells with distributions: posteriors, MAP completions, multiple imputation.

    from probdl.graph import BayesNet
    bn = BayesNet.example("asia")
    rows = bn.sample(5, seed=0)
    rows.loc[0, "lung"] = None
    filled, probs = bn.impute(rows)          # probs["lung"]: (5, 2) P(lung | each row)
    draws, _ = bn.impute(rows, n_samples=3)  # three completed frames drawn from the posterior

Every missing cell gets its exact posterior given the row's observed cells from the network's
engine (one junction-tree pass per distinct row); ``joint=True`` takes the engine's max-product
MAP state (the same path as ``bn.map``) and ``n_samples`` its exact draws from each row's joint
posterior (forward filtering on the tree, backward sampling). Variables of the network with no
column in ``rows`` are summed out, except with ``joint=True`` (see :func:`impute`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from probdl.errors import DataError, InferenceError
from probdl.graph.learning.counts import NetSpec, decode_rows, encode_rows

__all__ = ["impute", "posteriors"]


def impute(
    bn: Any,
    rows: pd.DataFrame,
    joint: bool = False,
    n_samples: int | None = None,
    seed: int = 0,
    batch_size: int = 4096,
) -> tuple[pd.DataFrame | list[pd.DataFrame], dict[str, np.ndarray]]:
    """Complete ``rows`` by ``bn``: MAP states and the posterior of every missing cell.

    Parameters
    ----------
    bn : BayesNet
        The fitted network; it is not modified.
    rows : pandas.DataFrame
        Columns are variables of ``bn`` (any subset), states as labels, NaN where missing.
    joint : bool
        False: each missing cell gets its own most probable state (maximizes the expected
        number of correct cells). True: each row gets the most probable joint completion of all
        its unobserved variables, those without a column included (the most probable explanation).
    n_samples : int, optional
        Draw this many completions from the joint posterior of each row's missing cells (multiple
        imputation; variables without a column are summed out) instead of a MAP completion.
    seed : int
        Seeds the draws of ``n_samples``.
    batch_size : int
        Rows per contraction block (memory grows with it, not with the number of rows).

    Returns
    -------
    filled : pandas.DataFrame or list of DataFrame
        ``rows`` with every missing cell filled (a list of ``n_samples`` frames when drawing).
    probs : dict
        Column with at least one missing cell -> numpy (B, k): the posterior of that column in
        each row, over ``bn.states[column]``; rows where it is observed hold a one-hot vector.

    Raises
    ------
    DataError
        Bad rows (see :func:`probdl.graph.learning.counts.encode_rows`) or bad ``n_samples``.
    InferenceError
        A row whose observed values have probability zero under ``bn``.
    """
    if n_samples is not None and (not isinstance(n_samples, (int, np.integer)) or n_samples < 1):
        raise DataError(f"n_samples must be a positive integer or None, got {n_samples!r}")
    spec = NetSpec.from_network(bn)
    codes = encode_rows(rows, spec, learning=False)
    columns = [str(c) for c in rows.columns]
    position = {v: i for i, v in enumerate(spec.variables)}
    holes = [c for c in columns if (codes[:, position[c]] < 0).any()]
    engine = bn.engine("cpu")
    unique, inverse = np.unique(codes, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    states, hidden = np.maximum(unique, 0), unique < 0
    probs = _posteriors(bn, unique, inverse, holes, batch_size)
    if n_samples is not None:
        rng = np.random.default_rng(seed)
        draws = []
        for _ in range(int(n_samples)):
            drawn = _in_blocks(
                lambda s, h: engine.sample(s, h, rng, memory_budget=bn.memory_budget),
                np.maximum(codes, 0), codes < 0, batch_size)
            sampled = np.where(codes < 0, drawn, codes)
            draws.append(_frame(rows, sampled, spec, columns))
        return draws, probs
    completed = codes.copy()
    if joint and not holes:
        # nothing to fill, but an impossible row must still be refused (posteriors, which
        # check that, had no target to run for)
        _check_possible(_log_z(engine, states, hidden, batch_size, bn.memory_budget),
                        unique, spec)
    elif joint:
        best = _in_blocks(lambda s, h: engine.map(s, h, memory_budget=bn.memory_budget)[1],
                          states, hidden, batch_size)[inverse]
        for c in holes:
            j = position[c]
            completed[:, j] = np.where(codes[:, j] < 0, best[:, j], codes[:, j])
    else:
        for c in holes:
            j = position[c]
            completed[:, j] = np.where(codes[:, j] < 0, probs[c].argmax(axis=1), codes[:, j])
    return _frame(rows, completed, spec, columns), probs


def posteriors(bn: Any, codes: np.ndarray, targets: list[str],
               batch_size: int = 4096) -> dict[str, np.ndarray]:
    """P(target | observed part of each row), (B, k) per target, for rows given as codes
    (``bn.variables`` order, -1 where missing); distinct rows are answered once."""
    if not targets:
        return {}
    unique, inverse = np.unique(codes, axis=0, return_inverse=True)
    return _posteriors(bn, unique, inverse.reshape(-1), targets, batch_size)


def _posteriors(bn: Any, unique: np.ndarray, inverse: np.ndarray, targets: list[str],
                batch_size: int) -> dict[str, np.ndarray]:
    """:func:`posteriors` of the distinct rows ``unique``, spread back to rows by ``inverse``;
    refuses rows of probability zero (InferenceError)."""
    engine = bn.engine("cpu")
    out = {}
    if not targets:
        return out
    states, hidden = np.maximum(unique, 0), unique < 0
    post = np.zeros((len(unique), int(engine.columns[-1])))
    log_z = np.zeros(len(unique))
    for lo in range(0, len(unique), batch_size):
        part = slice(lo, lo + batch_size)
        result = engine.run(states[part], hidden[part], want="post",
                            memory_budget=bn.memory_budget)
        post[part], log_z[part] = result["post"], result["log_z"]
    _check_possible(log_z, unique, NetSpec.from_network(bn))
    for t in targets:
        j = engine.position[t]
        out[t] = post[:, engine.columns[j]:engine.columns[j + 1]][inverse]
    return out


def _in_blocks(step, states: np.ndarray, hidden: np.ndarray, batch_size: int) -> np.ndarray:
    """``step(states, hidden)`` -> (rows, n) codes, over blocks of ``batch_size`` rows."""
    parts = [step(states[lo:lo + batch_size], hidden[lo:lo + batch_size])
             for lo in range(0, len(states), batch_size)]
    return np.concatenate(parts) if parts else np.zeros_like(states)


def _log_z(engine, states, hidden, batch_size, budget) -> np.ndarray:
    parts = [engine.run(states[lo:lo + batch_size], hidden[lo:lo + batch_size], want="logz",
                        memory_budget=budget)["log_z"]
             for lo in range(0, len(states), batch_size)]
    return np.concatenate(parts) if parts else np.zeros(0)


def _check_possible(log_z: np.ndarray, block: np.ndarray, spec: NetSpec) -> None:
    impossible = np.flatnonzero(~np.isfinite(log_z))
    if impossible.size:
        row = block[impossible[0]]
        seen = {v: spec.states[v][row[j]] for j, v in enumerate(spec.variables) if row[j] >= 0}
        raise InferenceError(
            f"{impossible.size} row(s) have probability zero under the network, e.g. the row "
            f"with observed values {seen}; check the data or fit the network with prior > 0"
        )


def _frame(rows: pd.DataFrame, codes: np.ndarray, spec: NetSpec, columns: list[str]):
    frame = decode_rows(codes, spec, columns, index=rows.index)
    frame.columns = rows.columns
    return frame
