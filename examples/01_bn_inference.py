"""Exact inference in a Bayesian network, for one case and for a thousand at once.

Loads the ALARM network (37 variables, bundled with pgmpy), asks for a posterior with hard and
soft evidence, computes every variable's marginal for a batch of partially observed patients
in one call, finds the most probable explanation of each, and checks one answer against pgmpy's
variable elimination.

Run: python examples/01_bn_inference.py      (PROBDL_QUICK=1 for a smaller batch)
"""

import os
import time

import numpy as np

from probdl import BayesNet

QUICK = os.environ.get("PROBDL_QUICK") == "1"
ROWS = 200 if QUICK else 1000

bn = BayesNet.example("alarm")
print(f"ALARM: {len(bn.variables)} variables, {bn.graph.number_of_edges()} edges")

# One case: hard evidence, then the same with a soft (likelihood) reading of CVP.
hard = bn.query(["HYPOVOLEMIA", "LVFAILURE"], evidence={"HRBP": "HIGH", "BP": "LOW"})
soft = bn.query(
    ["HYPOVOLEMIA"],
    evidence={"HRBP": "HIGH", "BP": "LOW"},
    soft_evidence={"CVP": [0.7, 0.2, 0.1]},
)
print("P(HYPOVOLEMIA | HRBP=HIGH, BP=LOW):", hard["HYPOVOLEMIA"].round(4).to_dict())
print("  ... and a soft reading of CVP:    ", soft["HYPOVOLEMIA"].round(4).to_dict())

# Check against pgmpy's variable elimination.
from pgmpy.inference import VariableElimination  # noqa: E402

reference = VariableElimination(bn.to_pgmpy()).query(
    ["HYPOVOLEMIA"], evidence={"HRBP": "HIGH", "BP": "LOW"}, show_progress=False
)
gap = np.abs(hard["HYPOVOLEMIA"].to_numpy() - reference.values).max()
print(f"largest difference from pgmpy VariableElimination: {gap:.1e}")

# A batch: forward-sample patients, hide 3-10 random columns per row, all marginals at once.
rng = np.random.default_rng(0)
rows = bn.sample(ROWS, seed=0).astype(object)
for i in range(ROWS):
    hidden = rng.choice(bn.variables, size=rng.integers(3, 11), replace=False)
    rows.loc[i, list(hidden)] = np.nan
start = time.perf_counter()
marginals = bn.marginals(rows)
elapsed = time.perf_counter() - start
print(f"all {len(bn.variables)} marginals for {ROWS} rows: {elapsed * 1000:.0f} ms")

start = time.perf_counter()
best = bn.map(rows.head(50))
print(f"MAP of the hidden variables for 50 rows: {(time.perf_counter() - start) * 1000:.0f} ms")
print(best.iloc[:3, -4:])
print("log-likelihood of the first 5 rows:", np.round(bn.log_likelihood(rows.head(5)), 3))
