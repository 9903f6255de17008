"""Queries on a BayesNet, answered by its engine: posteriors, all marginals, log-likelihood, MAP.

    from probdl.graph import BayesNet
    bn = BayesNet.example("asia")
    bn.query(["lung", "bronc"], evidence={"dysp": "yes"}, joint=True)
    bn.map({"dysp": "yes", "xray": "yes"})          # completed row + log P(state | evidence)

The maths. A single query sums out barren variables first (those that are neither targets nor
evidence nor ancestors of either: their CPTs sum to one), which leaves the engine only the
network's relevant part. A joint posterior over targets t_1..t_k is read from rows that fix
t_1..t_{k-1} to each of their joint states: P(t_1..t_{k-1}, e) from each row's log P, times
the row's posterior of t_k. Evidence of probability zero raises InferenceError (never NaN).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from ...errors import InferenceError

__all__ = ["as_frame", "log_likelihood", "map_states", "marginals", "query", "soft_array"]


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


def soft_array(bn, soft, batch: int) -> np.ndarray | None:
    """Soft evidence (var -> (k,) or (B, k) likelihoods) validated, side by side (B, cols)
    with ones where a variable has none; None without soft evidence."""
    if not soft:
        return None
    engine = bn.engine()
    out = np.ones((batch, int(engine.columns[-1])))
    for var, vec in soft.items():
        var = bn.check_variable(var)
        j = engine.position[var]
        k = engine.cards[j]
        try:
            arr = np.asarray(vec, dtype=np.float64)
        except (TypeError, ValueError):
            raise InferenceError(f"soft evidence for {var!r} must be numbers (a likelihood per "
                                 f"state), got {vec!r}") from None
        if arr.ndim == 1:
            arr = np.broadcast_to(arr, (batch, arr.shape[0]))
        if arr.ndim != 2 or arr.shape != (batch, k):
            raise InferenceError(
                f"soft evidence for {var!r} must have shape ({k},) or ({batch}, {k}) (states "
                f"{bn.states[var]}); got {np.shape(vec)}")
        if np.isnan(arr).any() or (arr < 0).any():
            raise InferenceError(f"soft evidence for {var!r} has negative or NaN entries")
        zero = np.flatnonzero(arr.sum(1) <= 0)
        if zero.size:
            raise InferenceError(f"soft evidence for {var!r} is all zeros in row "
                                 f"{int(zero[0])}; a likelihood needs a positive entry")
        out[:, engine.columns[j]:engine.columns[j + 1]] *= arr
    return out


def _targets(bn, targets) -> list[str]:
    if isinstance(targets, str):
        targets = [targets]
    if not isinstance(targets, list | tuple | set | pd.Index | np.ndarray):
        raise InferenceError(f"targets must be a variable name or a list of names, got "
                             f"{targets!r}")
    targets = [bn.check_variable(str(t)) for t in targets]
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


def _relevant(engine, observed: np.ndarray, soft: np.ndarray | None, idx) -> np.ndarray:
    """(n,) bool: targets, evidence and their ancestors; the rest is barren."""
    keep = observed.copy()
    keep[list(idx)] = True
    if soft is not None:
        cols = engine.columns
        for j in range(len(engine.cards)):
            if (soft[:, cols[j]:cols[j + 1]] != 1.0).any():
                keep[j] = True
    stack = list(np.flatnonzero(keep))
    while stack:
        for p in engine.parents[stack.pop()]:
            if not keep[p]:
                keep[p] = True
                stack.append(p)
    return keep


def joint_tables(engine, states, hidden, soft, idx, factor_on=None, budget=2**31):
    """(B, *cards of idx) posterior tables over the targets ``idx`` (hidden in every row) and
    log P(e) per row: rows fixing all but the last target, read as described above."""
    b = len(states)
    first, last = list(idx[:-1]), idx[-1]
    configs = list(itertools.product(*[range(engine.cards[t]) for t in first]))
    configs = np.array(configs, dtype=np.int64).reshape(len(configs), len(first))
    r = len(configs)
    st = np.repeat(states, r, 0)
    hd = np.repeat(hidden, r, 0)
    if first:
        st[:, first] = np.tile(configs, (b, 1))
        hd[:, first] = False
    sf = None if soft is None else np.repeat(soft, r, 0)
    out = engine.run(st, hd, sf, "post", factor_on=factor_on, memory_budget=budget)
    lz = out["log_z"].reshape(b, r)
    k = engine.cards[last]
    post = out["post"][:, engine.columns[last]:engine.columns[last] + k].reshape(b, r, k)
    top = lz.max(1, initial=-np.inf)
    safe = np.where(np.isfinite(top), top, 0.0)
    table = np.exp(lz - safe[:, None])[:, :, None] * post
    total = table.reshape(b, r * k).sum(1)
    log_z = np.where(total > 0, safe + np.log(np.where(total > 0, total, 1.0)), -np.inf)
    table = table / np.where(total > 0, total, 1.0)[:, None, None]
    return table.reshape(b, *[engine.cards[t] for t in idx]), log_z


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
    twice = sorted(set(evidence) & set(soft_evidence or {}))
    if twice:
        # Hard evidence makes soft evidence on the same variable a constant factor: it would
        # be silently ignored, which is never what the caller meant.
        raise InferenceError(f"{twice} have both evidence and soft_evidence; give each "
                             f"variable one or the other")
    states, observed = bn.encode(evidence)
    soft = soft_array(bn, soft_evidence, 1)
    engine = bn.engine()
    idx = [engine.position[t] for t in targets]
    if method == "sampling":
        from .sampling import likelihood_weighting
        table = likelihood_weighting(bn, targets, states, observed, soft, n, seed)
    elif method == "exact":
        keep = _relevant(engine, observed[0], soft, idx)
        hidden = (keep & ~observed[0])[None]
        if joint and len(targets) > 1:
            tables, log_z = joint_tables(engine, states, hidden, soft, idx, keep,
                                         bn.memory_budget)
            table = tables[0]
        else:
            out = engine.run(states, hidden, soft, "post", factor_on=keep,
                             memory_budget=bn.memory_budget,
                             target=idx[0] if len(idx) == 1 else None)
            log_z = out["log_z"]
            table = [out["post"][0, engine.columns[i]:engine.columns[i + 1]] for i in idx]
        _raise_if_impossible(log_z)
    else:
        raise InferenceError(f"unknown method {method!r}; use 'exact' or 'sampling'")
    if joint:
        index = pd.MultiIndex.from_product([bn.states[t] for t in targets], names=targets)
        return pd.Series(np.asarray(table).reshape(-1), index=index, name="probability")
    if isinstance(table, np.ndarray):  # sampling's joint table
        table = [table.sum(axis=tuple(j for j in range(len(targets)) if j != i))
                 for i in range(len(targets))]
    return {t: pd.Series(p, index=bn.series_index(t), name=t, copy=False)
            for t, p in zip(targets, table, strict=True)}


def marginals(bn, rows, soft_evidence=None, method: str = "exact", n: int = 2_000,
              seed: int = 0) -> dict[str, np.ndarray]:
    states, observed = bn.encode(rows)
    soft = soft_array(bn, soft_evidence, len(states))
    engine = bn.engine()
    if method == "sampling":
        from .sampling import weighted_marginals
        post = weighted_marginals(bn, states, observed, soft, n, seed, bn.memory_budget)
    elif method == "exact":
        out = engine.run(states, ~observed, soft, "post", memory_budget=bn.memory_budget)
        _raise_if_impossible(out["log_z"])
        post = out["post"]
    else:
        raise InferenceError(f"unknown method {method!r}; use 'exact' or 'sampling'")
    cols = engine.columns
    return {v: post[:, cols[j]:cols[j + 1]] for j, v in enumerate(engine.names)}


def log_likelihood(bn, rows) -> np.ndarray:
    """log P(observed part) per row; ``-inf`` where that part is impossible."""
    states, observed = bn.encode(rows)
    return bn.engine().run(states, ~observed, None, "logz",
                           memory_budget=bn.memory_budget)["log_z"]


def map_states(bn, rows, targets=None) -> pd.DataFrame:
    frame = as_frame(rows)
    states, observed = bn.encode(frame)
    engine = bn.engine()
    index = frame.index
    if targets is None:
        log_z = engine.run(states, ~observed, None, "logz",
                           memory_budget=bn.memory_budget)["log_z"]
        _raise_if_impossible(log_z)
        best, codes = engine.map(states, ~observed, memory_budget=bn.memory_budget)
        out = {v: np.asarray(bn.states[v], dtype=object)[codes[:, i]]
               for i, v in enumerate(engine.names)}
        out["log_prob"] = best - log_z
        return pd.DataFrame(out, index=index)
    targets = _targets(bn, targets)
    idx = [engine.position[t] for t in targets]
    seen = observed[:, idx]
    if seen.any():
        row, col = np.argwhere(seen)[0]
        raise InferenceError(f"{targets[col]!r} is both a MAP target and observed (row {row}); "
                             f"drop it from the targets or blank the cell")
    tables, log_z = joint_tables(engine, states, ~observed, None, idx,
                                 budget=bn.memory_budget)
    _raise_if_impossible(log_z)
    flat = tables.reshape(len(states), int(np.prod(tables.shape[1:])))
    arg = flat.argmax(1)
    codes = np.unravel_index(arg, [engine.cards[i] for i in idx])
    out = {t: np.asarray(bn.states[t], dtype=object)[c]
           for t, c in zip(targets, codes, strict=True)}
    with np.errstate(divide="ignore"):
        out["log_prob"] = np.log(flat[np.arange(len(flat)), arg])
    return pd.DataFrame(out, index=index)
