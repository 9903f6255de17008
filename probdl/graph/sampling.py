"""Forward sampling and likelihood weighting, vectorized over samples with numpy.

    from probdl.graph import BayesNet
    bn = BayesNet.example("alarm")
    rows = bn.sample(1000, seed=0)                        # DataFrame of state labels
    bn.query(["HR"], {"CO": "LOW"}, method="sampling", n=20_000)["HR"]

Likelihood weighting clamps hard evidence and weighs each sample by the probability of the
evidence given its sampled parents (times soft-evidence likelihoods); it suits networks whose
exact contraction exceeds the memory budget.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InferenceError

__all__ = ["forward_sample", "likelihood_weighting"]


def _draw(bn, n: int, rng: np.random.Generator, clamp=None):
    """Sample every variable in topological order; return codes (n, vars) and log weights."""
    nvar = len(bn._variables)
    codes = np.zeros((n, nvar), dtype=np.int64)
    log_w = np.zeros(n)
    for j, v in enumerate(bn._variables):
        cpt = bn._cpts[v]
        pidx = tuple(codes[:, bn._index[p]] for p in bn._parents[v])
        probs = cpt[(slice(None), *pidx)].T if pidx else np.broadcast_to(cpt, (n, cpt.shape[0]))
        if clamp is not None and j in clamp:
            codes[:, j] = clamp[j]
            with np.errstate(divide="ignore"):
                log_w += np.log(probs[:, clamp[j]])
            continue
        u = rng.random(n)[:, None]
        cdf = np.cumsum(probs, axis=1)
        codes[:, j] = np.minimum((u * cdf[:, -1:] > cdf).sum(1), cpt.shape[0] - 1)
    return codes, log_w


def forward_sample(bn, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` independent rows of the joint distribution, as state labels."""
    if int(n) < 0:
        raise InferenceError(f"cannot draw {n} samples; n must be >= 0")
    codes, _ = _draw(bn, int(n), np.random.default_rng(seed))
    return pd.DataFrame({v: np.asarray(bn._states[v], dtype=object)[codes[:, j]]
                         for j, v in enumerate(bn._variables)})


def likelihood_weighting(bn, targets: list[str], batch, n: int, seed: int) -> np.ndarray:
    """Weighted estimate of P(targets | evidence of the batch's first row): a joint table."""
    if int(n) < 1:
        raise InferenceError(f"method='sampling' needs n >= 1 samples; got {n}")
    rng = np.random.default_rng(seed)
    clamp = {j: int(batch.states[0, j]) for j in np.flatnonzero(batch.observed[0])}
    codes, log_w = _draw(bn, int(n), rng, clamp)
    for j, lik in batch.soft.items():
        with np.errstate(divide="ignore"):
            log_w += np.log(lik[0].cpu().numpy()[codes[:, j]])
    if not np.isfinite(log_w).any():
        raise InferenceError(
            f"all {n} weighted samples have weight zero: the evidence is impossible or too "
            f"unlikely for likelihood weighting; increase n or use method='exact'")
    w = np.exp(log_w - log_w.max())
    idx = [bn._index[t] for t in targets]
    shape = [bn._structure.cards[i] for i in idx]
    flat = np.ravel_multi_index(tuple(codes[:, i] for i in idx), shape)
    table = np.bincount(flat, weights=w, minlength=int(np.prod(shape)))
    return (table / table.sum()).reshape(shape)
