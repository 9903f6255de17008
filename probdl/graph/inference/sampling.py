"""Forward sampling and likelihood weighting: one vectorized ancestral sampler for both.

    from probdl.graph import BayesNet
    bn = BayesNet.example("alarm")
    rows = bn.sample(1000, seed=0)                                   # forward sampling
    bn.query(["HR"], {"CO": "LOW"}, method="sampling", n=20_000)["HR"]
    bn.marginals(rows.iloc[:10].assign(HR=float("nan")), method="sampling", n=5_000)

The maths: drawing each variable from its CPT given its sampled parents (topological order)
samples the joint. Likelihood weighting clamps the observed variables instead and weighs each
sample by the product of P(observed value | sampled parents) and the soft-evidence likelihoods
of its states; weighted frequencies estimate the posterior. It needs no junction tree, so it
serves networks whose cliques exceed the memory budget.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...errors import InferenceError

__all__ = ["draw", "forward_sample", "likelihood_weighting", "weighted_marginals"]


def draw(cards, parents, cpts, n: int, rng: np.random.Generator,
         clamp_states: np.ndarray | None = None,
         clamp: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Codes (n, vars) sampled in topological order (variables 0..V-1 are one), and log
    weights: where ``clamp`` (n, vars) is True the variable takes ``clamp_states`` and its CPT
    entry multiplies the weight instead."""
    nvar = len(cards)
    codes = np.zeros((n, nvar), dtype=np.int64)
    log_w = np.zeros(n)
    for j in range(nvar):
        cpt = np.asarray(cpts[j])
        pidx = tuple(codes[:, p] for p in parents[j])
        probs = cpt[(slice(None), *pidx)].T if pidx else np.broadcast_to(cpt, (n, cards[j]))
        cdf = np.cumsum(probs, axis=1)
        drawn = np.minimum((rng.random(n)[:, None] * cdf[:, -1:] > cdf).sum(1), cards[j] - 1)
        if clamp is not None and clamp[:, j].any():
            fixed = clamp[:, j]
            codes[:, j] = np.where(fixed, clamp_states[:, j], drawn)
            with np.errstate(divide="ignore"):
                log_w[fixed] += np.log(probs[fixed, clamp_states[fixed, j]])
        else:
            codes[:, j] = drawn
    return codes, log_w


def forward_sample(bn, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` independent rows of the joint distribution, as state labels."""
    if int(n) < 0:
        raise InferenceError(f"cannot draw {n} samples; n must be >= 0")
    engine = bn.engine()
    codes, _ = draw(engine.cards, engine.parents, [bn.cpd(v) for v in engine.names], int(n),
                    np.random.default_rng(seed))
    return pd.DataFrame({v: np.asarray(bn.states[v], dtype=object)[codes[:, j]]
                         for j, v in enumerate(engine.names)})


def _weights(engine, codes, log_w, soft, rows):
    """Sample weights (normalized per row) with the soft likelihoods of the sampled states."""
    if soft is not None:
        for j in range(len(engine.cards)):
            lo = engine.columns[j]
            with np.errstate(divide="ignore"):
                log_w += np.log(soft[rows, lo + codes[:, j]])
    return log_w


def likelihood_weighting(bn, targets: list[str], states: np.ndarray, observed: np.ndarray,
                         soft: np.ndarray | None, n: int, seed: int) -> np.ndarray:
    """Weighted estimate of P(targets | the first row's evidence): a joint table."""
    if int(n) < 1:
        raise InferenceError(f"method='sampling' needs n >= 1 samples; got {n}")
    engine = bn.engine()
    n = int(n)
    rng = np.random.default_rng(seed)
    codes, log_w = draw(engine.cards, engine.parents, [bn.cpd(v) for v in engine.names], n,
                        rng, np.repeat(states[:1], n, 0), np.repeat(observed[:1], n, 0))
    log_w = _weights(engine, codes, log_w, soft, np.zeros(n, dtype=np.int64))
    if not np.isfinite(log_w).any():
        raise InferenceError(
            f"all {n} weighted samples have weight zero: the evidence is impossible or too "
            f"unlikely for likelihood weighting; increase n or use method='exact'")
    w = np.exp(log_w - log_w.max())
    idx = [engine.names.index(t) for t in targets]
    shape = [engine.cards[i] for i in idx]
    flat = np.ravel_multi_index(tuple(codes[:, i] for i in idx), shape)
    table = np.bincount(flat, weights=w, minlength=int(np.prod(shape)))
    return (table / table.sum()).reshape(shape)


def weighted_marginals(bn, states: np.ndarray, observed: np.ndarray, soft: np.ndarray | None,
                       n: int, seed: int, memory_budget: float) -> np.ndarray:
    """Likelihood-weighting estimates of every variable's posterior for every row, (B, cols):
    ``n`` samples per row, rows drawn together in blocks that fit ``memory_budget``."""
    if int(n) < 1:
        raise InferenceError(f"method='sampling' needs n >= 1 samples; got {n}")
    engine = bn.engine()
    n = int(n)
    b, nvar = states.shape
    cols = int(engine.columns[-1])
    out = np.zeros((b, cols))
    rng = np.random.default_rng(seed)
    cpts = [bn.cpd(v) for v in engine.names]
    block = max(1, int(memory_budget // max(1, 8 * n * (3 * nvar + 8))))
    for lo in range(0, b, block):
        hi = min(b, lo + block)
        rows = np.repeat(np.arange(lo, hi), n)
        codes, log_w = draw(engine.cards, engine.parents, cpts, rows.size, rng, states[rows],
                            observed[rows])
        log_w = _weights(engine, codes, log_w, soft, rows)
        per_row = log_w.reshape(hi - lo, n)
        top = per_row.max(1)
        dead = np.flatnonzero(~np.isfinite(top))
        if dead.size:
            raise InferenceError(
                f"all {n} weighted samples of row {lo + int(dead[0])} have weight zero: its "
                f"evidence is impossible or too unlikely for likelihood weighting; increase n "
                f"or use method='exact'")
        w = np.exp(per_row - top[:, None]).reshape(-1)
        at = ((rows - lo)[:, None] * cols + engine.columns[None, :-1] + codes).ravel()
        out[lo:hi] = np.bincount(at, weights=np.repeat(w, nvar),
                                 minlength=(hi - lo) * cols).reshape(hi - lo, cols)
        for j in range(nvar):
            c0, c1 = engine.columns[j], engine.columns[j + 1]
            out[lo:hi, c0:c1] /= out[lo:hi, c0:c1].sum(1, keepdims=True)
    return out
