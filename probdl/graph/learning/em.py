"""Learning CPTs from rows with holes: maximum likelihood, Dirichlet/BDeu, and EM with latents.

    from probdl.graph import BayesNet
    bn = BayesNet.example("asia")
    rows = bn.sample(500, seed=0)
    rows.loc[::3, "smoke"] = None                       # holes anywhere
    fitted = bn.fit(rows.drop(columns="either"), latent={"either": 2}, max_iter=50)
    fitted.history_                                    # EM objective per iteration, never falls

EM alternates an E-step, the expected count of every family (a variable with its parents) given
each row's observed part, and an M-step, the counts plus the prior's pseudo-counts normalized
over each CPT column. The E-step runs the inference engine's junction tree over the distinct
rows (each weighted by how often it occurs): a family's expected counts are
sum_r w_r P(family | row r), read from the calibrated clique where its CPT is multiplied. The
tree is compiled once per fit; each iteration only puts new CPT values in. With ``n_jobs`` the
rows are cut into at least that many blocks E-stepped by threads at once: the compiled loops
release the GIL, every block writes its own counts, and the blocks' counts are summed in block
order. With the same blocks (``batch_size`` small enough) a threaded fit is the one-thread fit
bit for bit; other blocks change the order of sums and, since each block decides afresh which
rows get a tree of their own, which tree a row runs on: the fits then agree to rounding.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from probdl import distributed as ddp
from probdl.errors import DataError
from probdl.graph.inference.engine import Engine
from probdl.graph.learning.counts import (
    NetSpec,
    encode_rows,
    family_counts,
    normalize,
    pseudo_counts,
    unique_rows,
)

__all__ = ["fit"]

_METHODS = ("em", "mle", "bayes")


def fit(
    bn: Any,
    rows: Any,
    latent: Mapping[str, Any] | None = None,
    method: str = "em",
    prior: float = 1.0,
    max_iter: int = 100,
    tol: float = 1e-6,
    n_restarts: int = 1,
    seed: int = 0,
    prior_type: str = "dirichlet",
    batch_size: int = 4096,
    progress: bool = False,
    init: Any = None,
    distributed: bool | None = None,
    n_jobs: int | None = None,
) -> Any:
    """Fit the CPTs of ``bn``'s structure to ``rows``; returns a new network, ``bn`` untouched.

    Parameters
    ----------
    bn : BayesNet
        Supplies the structure (variables, states, edges); its CPTs are not used.
    rows : pandas.DataFrame
        One column per observed variable, states as labels, NaN anywhere a value is missing.
        Identical rows are counted once with a weight.
    latent : dict, optional
        Variables of ``bn`` absent from the data (no column): name -> number of states or
        labels, which must match the network's (a declaration never relabels). A column
        present but entirely missing needs no declaration: it is hidden, with its known states.
    method : {"em", "mle", "bayes"}
        "mle" (counts) and "bayes" (counts + pseudo-counts) need complete rows; "em" takes any.
    prior : float
        Pseudo-count added to every CPT cell ("dirichlet"), or the equivalent sample size
        ("bdeu"). EM then maximizes the log-likelihood plus ``sum prior * log theta``.
    max_iter, tol : int, float
        EM stops after ``max_iter`` iterations or when the objective gains less than
        ``tol`` relative.
    n_restarts : int
        EM runs from this many seeded starting points; the best objective is kept.
    seed : int
        Seeds the random starting point of latent families (never a symmetric one).
    prior_type : {"dirichlet", "bdeu"}
    batch_size : int
        Distinct rows per E-step block; memory grows with it, not with the number of rows.
    progress : bool
        Show a tqdm bar over EM iterations.
    init : BayesNet, optional
        A network of the same structure and states (latent states included) whose CPTs start
        the first EM run; by default available-case counts, and random CPTs for the families
        of latent variables.
    distributed : bool, optional
        Inside a torchrun job every rank passes the same rows; each E-steps its block of the
        distinct rows and an all-reduce sums the expected counts, so the fit equals the
        one-process fit (None: when launched by torchrun with several processes).
    n_jobs : int, optional
        Threads E-stepping blocks of the distinct rows at once (None: 1; -1: every core this
        process may use; under torchrun each rank takes that many). Each thread keeps to the
        memory budget, so peak memory can reach ``n_jobs`` times it.

    Returns
    -------
    BayesNet
        With ``history_`` (objective per iteration, the first at the starting point, the last
        at the returned CPTs), ``n_iter_``, ``converged_``, ``log_likelihood_`` (of the rows).

    Raises
    ------
    DataError
        Bad rows or latent declarations (see :func:`probdl.graph.learning.counts.encode_rows`);
        holes with
        method "mle"/"bayes"; a family without support in the data when ``prior`` is 0.
    """
    if method not in _METHODS:
        raise DataError(f"method must be one of {_METHODS}, got {method!r}")
    for name, value, low in (("max_iter", max_iter, 1), ("n_restarts", n_restarts, 1),
                             ("batch_size", batch_size, 1)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise DataError(f"{name} must be an integer >= {low}, got {value!r}")
    threads = _threads(n_jobs)
    if not (np.isfinite(tol) and tol >= 0):
        raise DataError(f"tol must be a finite number >= 0, got {tol!r}")
    if latent is not None and not isinstance(latent, Mapping):
        raise DataError(f"latent must be a dict name -> n_states or labels, got {latent!r}")
    latent = dict(latent or {})
    spec = NetSpec.from_network(bn, latent)
    codes = encode_rows(rows, spec, latent=list(latent), learning=True)
    unique, weight = unique_rows(codes)
    alpha = pseudo_counts(spec, 0.0 if method == "mle" else prior, prior_type)

    if method != "em":
        holes = [v for j, v in enumerate(spec.variables) if (unique[:, j] < 0).any()]
        if holes:
            raise DataError(
                f"method={method!r} needs complete rows, but {holes} have missing values "
                f"(or are latent); use method='em'"
            )
        cpts = normalize(family_counts(unique, weight, spec), spec, alpha)
        loglik = _complete_log_likelihood(unique, weight, spec, cpts)
        return _build(bn, spec, cpts, history=[loglik + _log_prior(cpts, alpha)],
                      loglik=loglik, n_iter=0, converged=True)

    if ddp.resolve(distributed):  # each rank E-steps a block of the rows
        mine = ddp.shard_frame(unique), ddp.shard_frame(weight)
        engine = ddp.SumOverRanks(_Estep(spec, *mine, batch_size, threads))
    else:
        engine = _Estep(spec, unique, weight, batch_size, threads)
    base = family_counts(unique, weight, spec)
    # a column entirely missing is as hidden as a latent one: its families need the
    # asymmetric start too
    hidden = set(latent) | {v for j, v in enumerate(spec.variables)
                            if (unique[:, j] < 0).all()}
    best = None
    for restart in range(n_restarts):
        start = _starting_point(spec, base, hidden, np.random.default_rng([seed, restart]),
                                noise=0.0 if restart == 0 else 0.5)
        if restart == 0 and init is not None:
            start = _initial_cpts(init, spec)
        run = _run_em(engine, spec, start, alpha, max_iter, tol, progress)
        if best is None or run[1][-1] > best[1][-1]:
            best = run
    cpts, history, loglik, converged = best
    return _build(bn, spec, cpts, history=history, loglik=loglik,
                  n_iter=len(history) - 1, converged=converged)


def _run_em(engine, spec, cpts, alpha, max_iter, tol, progress):
    from tqdm.auto import tqdm

    history: list[float] = []
    converged = False
    bar = tqdm(total=max_iter, desc="EM", disable=not progress, leave=False)
    for _ in range(max_iter):
        counts, loglik = engine(cpts, need_counts=True)
        history.append(loglik + _log_prior(cpts, alpha))
        # A start with zero CPT entries (init= a bundled network) has objective -inf under a
        # prior; the relative test would read inf <= inf as converged after one step.
        if len(history) > 1 and np.isfinite(history[-2]) \
                and history[-1] - history[-2] <= tol * abs(history[-2]):
            converged = True
            break
        cpts = normalize(counts, spec, alpha)
        bar.update(1)
        bar.set_postfix(objective=f"{history[-1]:.4f}")
    else:
        _, loglik = engine(cpts, need_counts=False)
        history.append(loglik + _log_prior(cpts, alpha))
    bar.close()
    return cpts, np.asarray(history), loglik, converged


def _threads(n_jobs: Any) -> int:
    """n_jobs as a number of threads (scikit-learn's convention: None is 1, -1 every core)."""
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int | np.integer) \
            or not (n_jobs >= 1 or n_jobs == -1):
        raise DataError(f"n_jobs must be an integer >= 1, or -1 for every core, got {n_jobs!r}")
    if n_jobs != -1:
        return int(n_jobs)
    # the cores this process may run on (a container's or taskset's limit), not the machine's
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class _Estep:
    """Expected family counts and the log-likelihood of the distinct rows, block by block, on
    one junction tree compiled for the fitted layout (latent states included)."""

    def __init__(self, spec: NetSpec, unique: np.ndarray, weight: np.ndarray, batch_size: int,
                 threads: int = 1):
        self.spec = spec
        index = {v: j for j, v in enumerate(spec.variables)}
        cards = [len(spec.states[v]) for v in spec.variables]
        parents = [[index[p] for p in spec.parents[v]] for v in spec.variables]
        uniform = [np.full(spec.shape(v), 1.0 / spec.shape(v)[0]) for v in spec.variables]
        self.engine = Engine.compile(cards, parents, uniform, list(spec.variables))
        self.states = np.maximum(unique, 0)
        self.hidden = unique < 0
        self.weight = weight
        self.threads = threads
        # as many blocks as threads at least, so that every thread has rows
        size = max(1, min(batch_size, -(-len(unique) // threads)))
        self.blocks = [slice(lo, lo + size) for lo in range(0, len(unique), size)]
        # each block's routing and own trees, built on the first E-step and kept for the fit
        self.kept: list[dict] = [{} for _ in self.blocks]

    def _block(self, engine: Engine, i: int, need_counts: bool) -> dict:
        part = self.blocks[i]
        return engine.run(self.states[part], self.hidden[part],
                          want="counts" if need_counts else "logz", weights=self.weight[part],
                          keep=self.kept[i])

    def _outputs(self, engine: Engine, need_counts: bool) -> Iterator[dict]:
        """Each block's output in block order. Threads keep at most ``threads`` blocks in
        flight, so memory stays that of a few blocks however many rows there are."""
        def run(i: int) -> dict:
            return self._block(engine, i, need_counts)

        if self.threads == 1 or len(self.blocks) == 1:
            yield from map(run, range(len(self.blocks)))
            return
        with ThreadPoolExecutor(self.threads) as pool:
            pending: deque = deque()
            for i in range(len(self.blocks)):
                pending.append(pool.submit(run, i))
                if len(pending) == self.threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def __call__(self, cpts: Mapping[str, np.ndarray], need_counts: bool):
        names = self.spec.variables
        engine = self.engine.with_cpts([cpts[v] for v in names])
        flat = np.zeros(engine.flat.size)
        loglik = 0.0
        outs = self._outputs(engine, need_counts)
        for part, out in zip(self.blocks, outs, strict=True):  # block order: reproducible sums
            loglik += float(np.dot(self.weight[part], out["log_z"]))
            if need_counts:
                flat += out["counts"]
        if not np.isfinite(loglik):
            raise DataError(
                "some rows have probability zero under the current CPTs (a state the model "
                "rules out); use prior > 0 so no CPT entry is exactly zero"
            )
        return dict(zip(names, engine.unflatten(flat), strict=True)), loglik


def _starting_point(spec, base, latent, rng, noise):
    """Available-case counts smoothed by one for observed families; random for latent ones.

    Families touching a latent variable start from a random Dirichlet draw: a symmetric start is
    a fixed point EM cannot leave (every latent state would stay interchangeable).
    """
    cpts = normalize(base, spec, {v: 1.0 for v in spec.variables})
    for var in spec.variables:
        random = rng.dirichlet(np.ones(spec.shape(var)[0]), size=spec.shape(var)[1:])
        random = np.moveaxis(random, -1, 0)
        if var in latent or any(p in latent for p in spec.parents[var]):
            cpts[var] = random
        elif noise > 0:
            cpts[var] = (1 - noise) * cpts[var] + noise * random
    return cpts


def _initial_cpts(init: Any, spec: NetSpec) -> dict[str, np.ndarray]:
    other = NetSpec.from_network(init)
    if other.states != spec.states or other.parents != spec.parents:
        raise DataError(
            "init must have the structure and states being fitted (latent states included); "
            "build it with BayesNet(states, parents, cpts) from the fitted network's layout"
        )
    if hasattr(init, "cpd") and not hasattr(init, "get_cpds"):
        return {v: np.array(init.cpd(v), dtype=np.float64) for v in spec.variables}
    return {v: init.get_cpds(v).get_values().reshape(spec.shape(v)) for v in spec.variables}


def _log_prior(cpts, alpha) -> float:
    # -inf (no warning) for a start with zero entries; every M-step under a prior is positive.
    with np.errstate(divide="ignore"):
        return float(sum(alpha[v] * np.log(cpts[v]).sum() for v in cpts if alpha[v] > 0))


def _complete_log_likelihood(codes, weight, spec, cpts) -> float:
    counts = family_counts(codes, weight, spec)
    return float(sum(
        np.sum(counts[v][counts[v] > 0] * np.log(cpts[v][counts[v] > 0])) for v in spec.variables
    ))




def to_pgmpy_model(spec: NetSpec, cpts: Mapping[str, np.ndarray]) -> Any:
    """A pgmpy ``DiscreteBayesianNetwork`` with the given structure and CPTs."""
    from pgmpy.factors.discrete import TabularCPD
    from pgmpy.models import DiscreteBayesianNetwork

    model = DiscreteBayesianNetwork()
    model.add_nodes_from(spec.variables)
    model.add_edges_from([(p, v) for v in spec.variables for p in spec.parents[v]])
    for var in spec.variables:
        parents = list(spec.parents[var])
        k = len(spec.states[var])
        model.add_cpds(TabularCPD(
            var, k, np.asarray(cpts[var]).reshape(k, -1),
            evidence=parents or None,
            evidence_card=[len(spec.states[p]) for p in parents] or None,
            state_names={u: list(spec.states[u]) for u in [var, *parents]},
        ))
    return model


def _build(template, spec, cpts, history, loglik, n_iter, converged):
    if hasattr(template, "to_pgmpy"):  # a BayesNet: same class, new CPTs, its name and labels
        from probdl.graph.io import inherit

        fitted = inherit(template, type(template)(
            {v: list(spec.states[v]) for v in spec.variables},
            {v: list(spec.parents[v]) for v in spec.variables},
            cpts,
        ))
    else:
        fitted = to_pgmpy_model(spec, cpts)
    fitted.history_ = np.asarray(history, dtype=np.float64)
    fitted.log_likelihood_ = float(loglik)
    fitted.n_iter_ = int(n_iter)
    fitted.converged_ = bool(converged)
    return fitted
