"""Queries on a BayesNet: posteriors, all marginals per row, log-likelihood and MAP.

    from probdl.graph import BayesNet
    bn = BayesNet.example("asia")
    bn.query(["lung", "bronc"], evidence={"dysp": "yes"}, joint=True)
    bn.map({"dysp": "yes", "xray": "yes"})          # completed row + log P(state | evidence)

Each function validates the evidence, hands a batch of encoded rows to the engine and turns the
answer back into labels. Evidence of probability zero raises InferenceError (never NaN).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..errors import InferenceError
from .engine import Batch, run

__all__ = ["as_frame", "log_likelihood", "map_states", "marginals", "query"]


def as_frame(rows) -> pd.DataFrame:
    """A DataFrame of rows from a DataFrame, a dict (one case) or a Series."""
    if isinstance(rows, pd.DataFrame):
        return rows
    if isinstance(rows, pd.Series):
        return rows.to_frame().T
    if isinstance(rows, dict):
        return pd.DataFrame({k: [v] for k, v in rows.items()}, index=[0])
    raise InferenceError(f"rows must be a pandas DataFrame (one case per row, NaN = unobserved) "
                         f"or a dict variable -> state; got {type(rows).__name__}")


def _batch(bn, rows, soft_evidence) -> Batch:
    states, observed = bn._encode(rows)
    soft = bn._soft_tensors(soft_evidence, states.shape[0], torch.float64, bn.device)
    return Batch(states, observed, soft)


def _targets(bn, targets) -> list[str]:
    if isinstance(targets, str):
        targets = [targets]
    if not isinstance(targets, list | tuple | set | pd.Index | np.ndarray):
        raise InferenceError(f"targets must be a variable name or a list of names, got "
                             f"{targets!r}")
    targets = [bn._check_var(str(t)) for t in targets]
    if not targets:
        raise InferenceError("no target variables given; name at least one variable")
    if len(set(targets)) != len(targets):
        raise InferenceError(f"targets {targets} name a variable twice")
    return targets


def _raise_if_impossible(log_z: np.ndarray) -> None:
    bad = np.flatnonzero(~np.isfinite(log_z))
    if bad.size:
        raise InferenceError(
            f"the evidence has probability zero under the network (row(s) "
            f"{bad[:10].tolist()}); no posterior exists: check for contradictory observations")


def _raise_if_nan(tables) -> None:
    """Posteriors that came out NaN: products of CPT entries underflowed float64 inside a
    compiled plan (entries near 1e-200 and below, multiplied within one contraction step)."""
    bad = sorted({int(r) for t in map(np.asarray, tables) if t.size
                  for r in np.flatnonzero(np.isnan(t.reshape(len(t), -1)).any(1))})
    if bad:
        raise InferenceError(
            f"the posterior of row(s) {bad[:10]} is not a number: products of CPT entries "
            f"underflowed float64 in the compiled plans (entries near 1e-200 or below); "
            f"bn.marginals on the CPU answers such rows in log space where their hidden "
            f"variables form components of at most 65,536 joint states")


def _cpts(bn):
    return bn._torch_cpts(bn.device, torch.float64)


def query(bn, targets, evidence, soft_evidence, joint: bool, method: str, n: int, seed: int):
    targets = _targets(bn, targets)
    if evidence and not isinstance(evidence, dict):
        raise InferenceError(f"evidence must be a dict variable -> state label, e.g. "
                             f"{{'smoke': 'yes'}}; got {type(evidence).__name__}")
    evidence = dict(evidence or {})
    both = [t for t in targets if t in evidence]
    if both:
        raise InferenceError(f"{both} are both targeted and observed; drop them from the "
                             f"targets or from the evidence")
    batch = _batch(bn, evidence, soft_evidence)
    if method == "sampling":
        from .sampling import likelihood_weighting
        table = likelihood_weighting(bn, targets, batch, n, seed)
    elif method == "exact":
        idx = tuple(bn._index[t] for t in targets)
        if joint or len(targets) == 1:
            log_z, table = run(bn._structure, _cpts(bn), batch, "joint", idx,
                               memory_budget=bn.memory_budget)
            table = table[0].cpu().numpy()
        else:
            log_z, posts = run(bn._structure, _cpts(bn), batch, "marginals", idx,
                               memory_budget=bn.memory_budget)
            table = [posts[i][0].cpu().numpy() for i in idx]
        _raise_if_impossible(log_z.cpu().numpy())
        _raise_if_nan([np.asarray(table)[None]] if joint or len(targets) == 1
                      else [t[None] for t in table])
    else:
        raise InferenceError(f"unknown method {method!r}; use 'exact' or 'sampling'")
    if joint:
        index = pd.MultiIndex.from_product([bn._states[t] for t in targets], names=targets)
        return pd.Series(np.asarray(table).reshape(-1), index=index, name="probability")
    if isinstance(table, np.ndarray):  # one target, or sampling's joint table
        table = [table.sum(axis=tuple(j for j in range(len(targets)) if j != i))
                 for i in range(len(targets))]
    return {t: pd.Series(p, index=bn._series_index(t), name=t, copy=False)
            for t, p in zip(targets, table, strict=True)}


def marginals(bn, rows, soft_evidence=None) -> dict[str, np.ndarray]:
    batch = _batch(bn, rows, soft_evidence)
    log_z, posts = run(bn._structure, _cpts(bn), batch, "marginals",
                       memory_budget=bn.memory_budget)
    _raise_if_impossible(log_z.cpu().numpy())
    out = {v: posts[i].cpu().numpy() for i, v in enumerate(bn._variables)}
    _raise_if_nan(out.values())
    return out


def log_likelihood(bn, rows) -> np.ndarray:
    """log P(observed part) per row; ``-inf`` where that part is impossible."""
    batch = _batch(bn, rows, None)
    with torch.no_grad():
        return run(bn._structure, _cpts(bn), batch, "logz",
                   memory_budget=bn.memory_budget).cpu().numpy()


def map_states(bn, rows, targets=None) -> pd.DataFrame:
    frame = as_frame(rows)
    batch = _batch(bn, frame, None)
    index = frame.index
    if targets is None:
        log_z, best, assign = run(bn._structure, _cpts(bn), batch, "map",
                                  memory_budget=bn.memory_budget)
        log_z = log_z.cpu().numpy()
        _raise_if_impossible(log_z)
        codes = assign.cpu().numpy()
        out = {v: np.asarray(bn._states[v], dtype=object)[codes[:, i]]
               for i, v in enumerate(bn._variables)}
        out["log_prob"] = best.cpu().numpy() - log_z
        return pd.DataFrame(out, index=index)
    targets = _targets(bn, targets)
    idx = tuple(bn._index[t] for t in targets)
    seen = batch.observed[:, list(idx)]
    if seen.any():
        row, col = np.argwhere(seen)[0]
        raise InferenceError(f"{targets[col]!r} is both a MAP target and observed (row {row}); "
                             f"drop it from the targets or blank the cell")
    with torch.no_grad():
        log_z, table = run(bn._structure, _cpts(bn), batch, "joint", idx,
                           memory_budget=bn.memory_budget)
    _raise_if_impossible(log_z.cpu().numpy())
    flat = table.flatten(1)  # reshape(B, -1) fails on zero rows
    prob, arg = flat.max(1)
    codes = np.unravel_index(arg.cpu().numpy(), [bn._structure.cards[i] for i in idx])
    out = {t: np.asarray(bn._states[t], dtype=object)[c]
           for t, c in zip(targets, codes, strict=True)}
    out["log_prob"] = np.log(prob.cpu().numpy())
    return pd.DataFrame(out, index=index)
