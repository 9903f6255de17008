"""Exact inference on bnlearn networks: probdl's junction-tree engine against pyAgrum and pgmpy.

    python -m benchmarks.bench_graph            # full run (tens of minutes on 2 busy cores)
    python -m benchmarks.bench_graph --quick    # alarm and child, fewer peer rows

Cases, all side by side in one process (pyAgrum and pgmpy each on one thread; probdl's
compiled loops are single-threaded):
- all marginals on rows never seen: one warm-up call on 5 other rows, then the first call on
  1,000 fresh forward-sampled rows, then the same rows again; two regimes, "few hidden" (3-10
  random hidden columns per row) and "20% observed" (each row observes a random 20% of the
  variables, the Fast-BNI protocol). pyAgrum: a ``LazyPropagation`` loop (eraseAllEvidence,
  addEvidence, makeInference, posterior of every *unobserved* variable), timed on a prefix of
  the rows and extrapolated per 1,000 rows (stated); for the huge cases probdl too is timed on
  a prefix (stated);
- MAP for 1,000 fresh rows with the same 3 hidden variables: ``bn.map`` vs pyAgrum ``mpe()`` per
  row vs pgmpy ``predict`` (one call on a prefix, extrapolated per row);
- one query with fresh evidence (5 random observed variables, one target), median over queries;
- junction-tree size: probdl's kept triangulation against pyAgrum's ``JunctionTreeGenerator``;
- the very first call in a fresh process (import, triangulation, loading the compiled loops).
The pyAgrum network is built from probdl's float64 CPTs (its BIF reader rejects some bnlearn
labels and keeps float32), so answers must agree to 1e-9; they are checked on every timed row.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import subprocess

import numpy as np
import pandas as pd

from probdl.graph import BayesNet

RESULTS = Path(__file__).resolve().parent / "results" / "graph.md"
HEAD_FRESH = ("| network | variables | few hidden: fresh / again (ms) | pyAgrum (ms) | vs pyAgrum "
              "| 20% observed: fresh / again (ms) | pyAgrum (ms) | vs pyAgrum | max diff |\n"
              "|---|---|---|---|---|---|---|---|---|")
HEAD_TREE = ("| network | heuristic kept | probdl total clique size | pyAgrum total | largest "
             "clique (probdl / pyAgrum) |\n|---|---|---|---|---|")
HEAD_MAP = ("| network | hidden | probdl first / again (ms) | pyAgrum loop (ms) "
            "| pgmpy predict (s) | vs pyAgrum "
            "| vs pgmpy | max diff |\n|---|---|---|---|---|---|---|---|")
HEAD_SINGLE = ("| network | probdl (ms) | pyAgrum (ms) | pgmpy (ms) | probdl / pyAgrum "
               "| pgmpy / probdl | diff pyAgrum | diff pgmpy |\n|---|---|---|---|---|---|---|---|")


def hidden_rows(bn: BayesNet, n: int, seed: int, lo: int = 3, hi: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = bn.sample(n, seed=seed)
    mask = np.zeros(rows.shape, dtype=bool)
    for i in range(n):
        k = int(rng.integers(lo, hi + 1))
        mask[i, rng.choice(rows.shape[1], size=k, replace=False)] = True
    return rows.mask(mask)


def to_pyagrum(bn: BayesNet):
    import pyagrum as gum

    g = gum.BayesNet("probdl")
    ids = {v: g.add(gum.LabelizedVariable(v, v, [f"s{i}" for i in range(len(bn.states[v]))]))
           for v in bn.variables}
    for v in bn.variables:
        for p in bn.parents(v):
            g.addArc(ids[p], ids[v])
    for v in bn.variables:
        pot = g.cpt(ids[v])
        names = [pot.variable(i).name() for i in range(pot.nbrDim())]
        axes = [[v, *bn.parents(v)].index(nm) for nm in names]
        # pyAgrum fills with its first variable varying fastest
        pot.fillWith(np.ascontiguousarray(np.transpose(bn.cpd(v), axes[::-1])).ravel().tolist())
    return g


def _evidence(bn, row) -> dict[str, int]:
    return {v: bn.states[v].index(x) for v, x in row.items() if isinstance(x, str)}


def timed(fn, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def regime_rows(bn: BayesNet, n: int, seed: int, regime: str) -> pd.DataFrame:
    if regime == "few hidden":
        return hidden_rows(bn, n, seed)
    rows = bn.sample(n, seed=seed)
    return rows.mask(np.random.default_rng(seed).random(rows.shape) >= 0.2)


def agrum_marginals(bn, gbn, rows, n_agrum, ours) -> tuple[float, float]:
    """The pyAgrum loop (LazyPropagation, new evidence per row, the posterior of every
    unobserved variable) timed on the first ``n_agrum`` rows, in seconds per row; and its
    largest difference from ``ours``."""
    import pyagrum as gum

    ie = gum.LazyPropagation(gbn)
    start = time.perf_counter()
    answers = []
    for i in range(n_agrum):
        ie.eraseAllEvidence()
        ev = _evidence(bn, rows.iloc[i])
        for v, s in ev.items():
            ie.addEvidence(v, s)
        ie.makeInference()
        answers.append({v: ie.posterior(v).toarray() for v in bn.variables if v not in ev})
    per_row = (time.perf_counter() - start) / n_agrum
    err = max(max((np.abs(p - ours[v][i]).max() for v, p in post.items()), default=0.0)
              for i, post in enumerate(answers))
    return per_row, float(err)


def bench_fresh(bn, gbn, regime: str, n_rows: int, n_agrum: int, seed: int = 1) -> dict:
    """probdl's first call on ``n_rows`` fresh rows (after a warm-up on 5 others), the same
    rows again, and the pyAgrum loop, interleaved in this order; times per 1,000 rows."""
    rows = regime_rows(bn, n_rows + 5, seed, regime)
    bn.marginals(rows.iloc[:5])
    fresh_rows = rows.iloc[5:]
    fresh, ours = timed(lambda: bn.marginals(fresh_rows))
    agrum, err = agrum_marginals(bn, gbn, fresh_rows, n_agrum, ours)
    again, _ = timed(lambda: bn.marginals(fresh_rows))
    scale = 1000 / n_rows
    return dict(fresh=fresh * scale, again=again * scale, agrum=agrum * 1000, err=err,
                n_rows=n_rows, n_agrum=n_agrum)


def agrum_tree(gbn) -> tuple[int, int]:
    """(total clique size, largest clique) of pyAgrum's junction tree for ``gbn``."""
    import pyagrum as gum

    jt = gum.JunctionTreeGenerator().junctionTree(gbn)
    sizes = []
    for c in jt.nodes():
        size = 1
        for v in jt.clique(c):
            size *= gbn.variable(v).domainSize()
        sizes.append(size)
    return sum(sizes), max(sizes)


def first_call_in_fresh_process(name: str, cold: bool) -> float:
    """Seconds from interpreter start to the first ``bn.marginals`` answer on 5 rows (import,
    network, triangulation, compiled loops; ``cold``: numba's on-disk cache emptied first)."""
    if cold:
        cache = Path(__file__).resolve().parent.parent / "probdl" / "graph" / "inference"
        # every compiled module's entries: numba does not notice a change in a callee's file,
        # and since round 2 the entry points live in rows.py, not kernels.py
        for f in (cache / "__pycache__").glob("*.nb[ic]"):
            f.unlink()
    code = ("import time; t = time.perf_counter(); from probdl.graph import BayesNet; "
            f"bn = BayesNet.example({name!r}); rows = bn.sample(5, seed=0); "
            "rows.iloc[:, :4] = float('nan'); bn.marginals(rows); "
            "print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def bench_map(name, bn, gbn, n_rows, n_agrum, n_pgmpy, seed=5):
    import pyagrum as gum

    rng = np.random.default_rng(seed)
    hidden = list(rng.choice(bn.variables, size=3, replace=False))
    full = bn.sample(n_rows + 5, seed=seed)
    rows = full.drop(columns=hidden).iloc[5:].reset_index(drop=True)
    bn.map(full.drop(columns=hidden).iloc[:5].sample(5, random_state=0))  # warm-up
    first, ours = timed(lambda: bn.map(rows))
    ours_t, _ = timed(lambda: bn.map(rows))
    ie = gum.LazyPropagation(gbn)
    start = time.perf_counter()
    agrum = []
    for i in range(n_agrum):
        ie.eraseAllEvidence()
        for v, s in _evidence(bn, rows.iloc[i]).items():
            ie.addEvidence(v, s)
        inst = ie.mpe()
        agrum.append({v: bn.states[v][inst[v]] for v in hidden})
    agrum_t = (time.perf_counter() - start) / n_agrum * n_rows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = bn.to_pgmpy()
        start = time.perf_counter()
        pred = model.predict(rows.iloc[:n_pgmpy], n_jobs=1)
        pgmpy_t = (time.perf_counter() - start) / n_pgmpy * n_rows

    def log_joint(assign: pd.DataFrame) -> np.ndarray:
        return bn.log_likelihood(assign[bn.variables])

    ours_lp = log_joint(ours.iloc[:n_agrum])
    agrum_lp = log_joint(pd.concat([rows.iloc[:n_agrum].reset_index(drop=True),
                                    pd.DataFrame(agrum)], axis=1))
    pg = pd.concat([rows.iloc[:n_pgmpy].reset_index(drop=True),
                    pred[hidden].astype(str).reset_index(drop=True)], axis=1)
    pgmpy_lp = log_joint(pg)
    err = max(np.abs(ours_lp - agrum_lp).max(), np.abs(ours_lp[:n_pgmpy] - pgmpy_lp).max())
    return dict(first=first, ours=ours_t, agrum=agrum_t, pgmpy=pgmpy_t, err=err,
                n_agrum=n_agrum, n_pgmpy=n_pgmpy, hidden=hidden)


def bench_single(name, bn, gbn, n_queries, seed=9, pgmpy=True):
    import pyagrum as gum
    from pgmpy.inference import VariableElimination

    rng = np.random.default_rng(seed)
    sample = bn.sample(n_queries, seed=seed)
    cases = []
    for i in range(n_queries):
        obs = list(rng.choice(bn.variables, size=6, replace=False))
        target, obs = obs[0], obs[1:]
        cases.append((target, {v: sample.iloc[i][v] for v in obs}))
    ie = gum.LazyPropagation(gbn)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ve = VariableElimination(bn.to_pgmpy())
    times = {"ours": [], "agrum": [], "pgmpy": []}
    err = err_pgmpy = 0.0
    for target, ev in cases:
        t0 = time.perf_counter()
        ours = bn.query([target], ev)[target].to_numpy()
        t1 = time.perf_counter()
        ie.eraseAllEvidence()
        for v, s in ev.items():
            ie.addEvidence(v, bn.states[v].index(s))
        ie.makeInference()
        theirs = ie.posterior(target).toarray()
        t2 = time.perf_counter()
        if pgmpy:  # pgmpy's elimination on munin1 and link takes minutes and gigabytes
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                q = ve.query([target], evidence=ev, show_progress=False)
            ref = np.array([q.get_value(**{target: s}) for s in bn.states[target]])
            err_pgmpy = max(err_pgmpy, np.abs(ours - ref).max())
        t3 = time.perf_counter()
        times["ours"].append(t1 - t0)
        times["agrum"].append(t2 - t1)
        times["pgmpy"].append(t3 - t2 if pgmpy else float("nan"))
        err = max(err, np.abs(ours - theirs).max())
    return {k: float(np.median(v)) for k, v in times.items()} | {"err": err,
                                                                 "err_pgmpy": err_pgmpy}


def _ratio(x: float) -> str:
    """A speed-up as text: two significant digits below 10, whole numbers above."""
    return f"{x:.2g}x" if x < 10 else f"{x:.0f}x"


NETS = ["alarm", "child", "insurance", "hailfinder", "hepar2", "win95pts", "pathfinder",
        "andes", "pigs", "munin1", "link"]
# huge cases: (probdl rows, pyAgrum rows) timed at 20% observed
PREFIX = {"munin1": (100, 30), "link": (50, 5)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    nets = ["alarm", "child"] if args.quick else NETS
    n_rows = 1000
    lines_fresh, lines_tree, lines_map, lines_single = [], [], [], []
    firsts = {"cold": first_call_in_fresh_process("alarm", cold=True),
              "cached": first_call_in_fresh_process("alarm", cold=False)}
    print("first call", firsts, flush=True)
    for name in nets:
        bn = BayesNet.example(name)
        gbn = to_pyagrum(bn)
        tree = bn.engine().tree
        total, largest = agrum_tree(gbn)
        lines_tree.append(f"| {name} | {tree.heuristic} | {tree.total_size:,} | {total:,} | "
                          f"{tree.largest:,} / {largest:,} |")
        cells, err = [], 0.0
        for regime in ("few hidden", "20% observed"):
            rows, agrum_rows = 1000, (30 if args.quick else 100)
            if name in PREFIX and regime == "20% observed":
                rows, agrum_rows = PREFIX[name]
            m = bench_fresh(bn, gbn, regime, rows, agrum_rows)
            print(name, regime, m, flush=True)
            note = f" ({rows} rows)" if rows < 1000 else ""
            cells.append(f"{m['fresh'] * 1e3:,.0f} / {m['again'] * 1e3:,.0f}{note} | "
                         f"{m['agrum'] * 1e3:,.0f} ({agrum_rows} rows) | "
                         f"**{_ratio(m['agrum'] / m['fresh'])}**")
            err = max(err, m["err"])
        lines_fresh.append(f"| {name} | {len(bn.variables)} | {cells[0]} | {cells[1]} | "
                           f"{err:.1e} |")
        if name in ("alarm", "child", "insurance", "hailfinder", "andes"):
            n_agrum = 50 if args.quick else 200
            p = bench_map(name, bn, gbn, n_rows, n_agrum, 5 if args.quick else 20)
            print(name, "map", p, flush=True)
            lines_map.append(
                f"| {name} | {', '.join(p['hidden'])} | {p['first'] * 1e3:.0f} / "
                f"{p['ours'] * 1e3:.0f} | {p['agrum'] * 1e3:.0f} | {p['pgmpy']:.1f} | "
                f"**{p['agrum'] / p['first']:.0f}x** | **{p['pgmpy'] / p['first']:.0f}x** | "
                f"{p['err']:.1e} |")
        huge = name in ("munin1", "link")  # pyAgrum: 10-20 s per query on munin1
        s = bench_single(name, bn, gbn, 30 if args.quick else (10 if huge else 100),
                         pgmpy=not huge)
        print(name, "single", s, flush=True)
        lines_single.append(
            f"| {name} | {s['ours'] * 1e3:.2f} | {s['agrum'] * 1e3:.2f} | {s['pgmpy'] * 1e3:.2f} "
            f"| {s['ours'] / s['agrum']:.2g}x | "
            f"{'-' if huge else _ratio(s['pgmpy'] / s['ours'])} | {s['err']:.1e} "
            f"| {'-' if huge else format(s['err_pgmpy'], '.1e')} |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    command = "python -m benchmarks.bench_graph" + (" --quick" if args.quick else "")
    huge = ", ".join(f"{k}: {v[0]} rows (pyAgrum {v[1]})" for k, v in PREFIX.items())
    text = f"""## Exact inference on Bayesian networks

`{command}` on a 2-core CPU ({platform.machine()}, shared with other work,
OMP_WAIT_POLICY=PASSIVE, every library on one thread), {datetime.date.today()}, python
{sys.version.split()[0]}; all numbers from this one run. pyAgrum (LazyPropagation) gets a network
built from the same float64 CPTs; pgmpy 1.1 (VariableElimination, `predict`). "max diff" is the
largest absolute difference of any answer from pyAgrum's on the rows it was timed on (MAP: of
the log-probabilities of the chosen assignments).

**All marginals on rows never seen** (ms per 1,000 rows). probdl: one warm-up call on 5 other
rows, then `bn.marginals(rows)` on 1,000 fresh rows ("fresh"), then the same rows again
("again"); pyAgrum: a loop over rows asking the posterior of every unobserved variable, timed
on the stated prefix and scaled to 1,000 rows. "vs pyAgrum" is pyAgrum's time over probdl's
fresh time. At 20% observed the huge cases are timed on prefixes ({huge}), at the default
memory budget (2 GiB).

{HEAD_FRESH}
{chr(10).join(lines_fresh)}

**The very first call in a fresh process** (alarm, 5 rows, from interpreter start: imports,
reading the network, triangulation, compiled loops): {firsts['cold']:.2f} s with numba's on-disk
cache emptied (the compile a new install pays once), {firsts['cached']:.2f} s with it.

**Junction trees**: the smallest total clique size over min-fill, weighted min-fill,
min-degree and min-weight, against pyAgrum's default triangulation.

{HEAD_TREE}
{chr(10).join(lines_tree)}

**MAP, {n_rows} fresh rows, the same 3 hidden variables in every row** (pgmpy's `predict` needs
the same missing columns in every row). probdl: `bn.map(rows)` after a warm-up on 5 other rows
(first call / again); pyAgrum: `mpe()` per row, timed on the first rows; pgmpy: one
`predict(n_jobs=1)` call on the first {5 if args.quick else 20} rows, extrapolated per row.

{HEAD_MAP}
{chr(10).join(lines_map)}

**One query with fresh evidence** (5 random observed variables, one random target; a new
evidence pattern each time): median over {30 if args.quick else 100} queries (munin1 and link:
10 queries, where pyAgrum took 10-20 s per query on munin1; pgmpy left out there: its
elimination takes minutes and gigabytes per query).

{HEAD_SINGLE}
{chr(10).join(lines_single)}

Peak resident memory of the whole benchmark process (all three libraries, all networks):
{peak:.0f} MiB.
"""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
