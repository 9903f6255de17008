"""Filling missing cells with distributions: posteriors, MAP completions, multiple imputation.

    from probdl.graph import BayesNet
    bn = BayesNet.example("asia")
    rows = bn.sample(5, seed=0)
    rows.loc[0, "lung"] = None
    filled, probs = bn.impute(rows)          # probs["lung"]: (5, 2) P(lung | each row)
    draws, _ = bn.impute(rows, n_samples=3)  # three completed frames drawn from the posterior

Every missing cell gets its exact posterior given the row's observed cells, from one batched
contraction of the network per block of distinct rows (the posterior of variable v in row r is
``lambda_v * d log P(row_r) / d lambda_v`` for the evidence vectors lambda). Variables of the
network with no column in ``rows`` are summed out, except with ``joint=True`` (see :func:`impute`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from probdl.errors import DataError, InferenceError
from probdl.graph.counts import BatchedNetwork, NetSpec, decode_rows, encode_rows

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
        Bad rows (see :func:`probdl.graph.counts.encode_rows`) or bad ``n_samples``.
    InferenceError
        A row whose observed values have probability zero under ``bn``.
    """
    if n_samples is not None and (not isinstance(n_samples, (int, np.integer)) or n_samples < 1):
        raise DataError(f"n_samples must be a positive integer or None, got {n_samples!r}")
    from probdl.graph.engine import single_thread

    with single_thread():
        return _impute(bn, rows, joint, n_samples, seed, batch_size)


def _impute(bn, rows, joint, n_samples, seed, batch_size):
    spec = NetSpec.from_network(bn)
    codes = encode_rows(rows, spec, learning=False)
    columns = [str(c) for c in rows.columns]
    position = {v: i for i, v in enumerate(spec.variables)}
    holes = [c for c in columns if (codes[:, position[c]] < 0).any()]
    cpts = _cpts_of(bn, spec)
    network = BatchedNetwork(spec)
    probs = posteriors(network, cpts, codes, holes, batch_size)

    if n_samples is not None:
        rng = np.random.default_rng(seed)
        draws = []
        for _ in range(int(n_samples)):
            sampled = _sample_completion(network, cpts, codes, holes, rng, batch_size)
            draws.append(_frame(rows, sampled, spec, columns))
        return draws, probs
    completed = codes.copy()
    if joint:
        best = _joint_map(network, cpts, codes, batch_size)
        for c in holes:
            j = position[c]
            completed[:, j] = np.where(codes[:, j] < 0, best[:, j], codes[:, j])
    else:
        for c in holes:
            j = position[c]
            completed[:, j] = np.where(codes[:, j] < 0, probs[c].argmax(axis=1), codes[:, j])
    return _frame(rows, completed, spec, columns), probs


def posteriors(
    network: BatchedNetwork,
    cpts: dict[str, np.ndarray],
    codes: np.ndarray,
    targets: list[str],
    batch_size: int = 4096,
) -> dict[str, np.ndarray]:
    """P(target | observed part of each row), (B, k) per target, for rows given as codes."""
    import torch

    spec = network.spec
    position = {v: i for i, v in enumerate(spec.variables)}
    out = {t: np.zeros((len(codes), len(spec.states[t]))) for t in targets}
    if not targets:
        return out
    unique, inverse = np.unique(codes, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    theta = [torch.from_numpy(np.asarray(cpts[v], dtype=np.float64)) for v in spec.variables]
    wanted = {position[t] for t in targets}
    result = {t: np.empty((len(unique), len(spec.states[t]))) for t in targets}
    for start in range(0, len(unique), batch_size):
        block = unique[start:start + batch_size]
        evidence = _evidence(block, spec)
        for j in wanted:
            evidence[j].requires_grad_(True)
        log_p = network.log_prob(theta, evidence)
        _check_possible(log_p, block, spec)
        log_p.sum().backward()
        for t in targets:
            lam = evidence[position[t]]
            result[t][start:start + len(block)] = (lam.detach() * lam.grad).numpy()
    for t in targets:
        post = result[t] / result[t].sum(axis=1, keepdims=True)
        out[t] = post[inverse]
    return out


def _joint_map(network, cpts, codes, batch_size) -> np.ndarray:
    """Most probable joint state of all unobserved variables per row, as codes (B, V)."""
    import torch

    spec = network.spec
    with np.errstate(divide="ignore"):
        log_theta = [torch.from_numpy(np.log(np.asarray(cpts[v], dtype=np.float64)))
                     for v in spec.variables]
    best = np.empty_like(codes)
    for start in range(0, len(codes), batch_size):
        block = codes[start:start + batch_size]
        with np.errstate(divide="ignore"):
            log_evidence = [torch.log(e).requires_grad_(True) for e in _evidence(block, spec)]
        value = _max_log_prob(network, log_theta, log_evidence)
        _check_possible(value, block, spec)
        value.sum().backward()
        best[start:start + len(block)] = np.stack(
            [e.grad.argmax(dim=1).numpy() for e in log_evidence], axis=1
        )
    return best


def _max_log_prob(network: BatchedNetwork, log_cpts: list[Any], log_evidence: list[Any]) -> Any:
    """``max over unobserved states of log P(all variables)`` per row, (B,), in log space.

    Each elimination keeps one maximizing index (``torch.max``), so the gradient with
    respect to ``log_evidence`` is one-hot at a joint MAP state, consistent across variables.
    """
    operands = [(t, term, False) for t, term in zip(log_cpts, network.terms, strict=False)]
    operands += [
        (e, term, True)
        for e, term in zip(log_evidence, network.terms[len(log_cpts):], strict=True)
    ]
    batch = log_evidence[0].shape[0]
    for positions, kept in network.steps:
        picked = [operands[p] for p in positions]
        for p in sorted(positions, reverse=True):
            operands.pop(p)
        union = sorted({i for _, term, _ in picked for i in term})
        dropped = [i for i in union if i not in kept]
        order = list(kept) + dropped
        batched = any(b for _, _, b in picked)
        acc = None
        for t, term, b in picked:
            aligned = _align(t, term, b, order, batched, batch)
            acc = aligned if acc is None else acc + aligned
        lead = 1 if batched else 0
        shape = acc.shape[: lead + len(kept)]
        acc = acc.reshape(*shape, -1).max(dim=-1).values
        operands.append((acc, tuple(kept), batched))
    total = operands[0][0]
    for t, _, _ in operands[1:]:
        total = total + t
    return total


def _align(tensor: Any, term: tuple[int, ...], batched: bool, order: list[int],
           out_batched: bool, batch: int) -> Any:
    """View ``tensor`` (indices ``term``) broadcastable to indices ``order`` (batch first)."""
    source = (["batch"] if batched else []) + list(term)
    target = (["batch"] if out_batched else []) + list(order)
    perm = [source.index(i) for i in target if i in source]
    moved = tensor.permute(*perm) if perm != list(range(len(perm))) else tensor
    shape = [moved.shape[[i for i in target if i in source].index(i)] if i in source else 1
             for i in target]
    return moved.reshape(shape)


def _sample_completion(network, cpts, codes, holes, rng, batch_size) -> np.ndarray:
    """One draw from the joint posterior of the missing cells: column by column, each from its
    posterior given the observed cells and the cells drawn before it."""
    spec = network.spec
    position = {v: i for i, v in enumerate(spec.variables)}
    current = codes.copy()
    for c in holes:
        j = position[c]
        missing = np.flatnonzero(current[:, j] < 0)
        post = posteriors(network, cpts, current[missing], [c], batch_size)[c]
        cdf = np.cumsum(post, axis=1)
        draw = (rng.random(len(missing))[:, None] * cdf[:, -1:] >= cdf).sum(axis=1)
        current[missing, j] = np.minimum(draw, post.shape[1] - 1)
    return current


def _evidence(codes: np.ndarray, spec: NetSpec) -> list[Any]:
    from probdl.graph.em import evidence_tensors

    return evidence_tensors(codes, spec)


def _check_possible(log_p: Any, block: np.ndarray, spec: NetSpec) -> None:
    impossible = np.flatnonzero(~np.isfinite(log_p.detach().numpy()))
    if impossible.size:
        row = block[impossible[0]]
        seen = {v: spec.states[v][row[j]] for j, v in enumerate(spec.variables) if row[j] >= 0}
        raise InferenceError(
            f"{impossible.size} row(s) have probability zero under the network, e.g. the row "
            f"with observed values {seen}; check the data or fit the network with prior > 0"
        )


def _cpts_of(bn: Any, spec: NetSpec) -> dict[str, np.ndarray]:
    if hasattr(bn, "cpd") and not hasattr(bn, "get_cpds"):
        return {v: np.array(bn.cpd(v), dtype=np.float64) for v in spec.variables}
    return {v: bn.get_cpds(v).get_values().reshape(spec.shape(v)) for v in spec.variables}


def _frame(rows: pd.DataFrame, codes: np.ndarray, spec: NetSpec, columns: list[str]):
    frame = decode_rows(codes, spec, columns, index=rows.index)
    frame.columns = rows.columns
    return frame
