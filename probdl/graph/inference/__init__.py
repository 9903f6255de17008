"""One inference engine for discrete Bayesian networks: a junction tree compiled once, rows batched.

    from probdl.graph import BayesNet
    bn = BayesNet.example("alarm")
    engine = bn.engine()              # compiled on first use, one per (network, device)
    engine.tree.heuristic, engine.tree.total_size
    rows = bn.sample(1000, seed=0).mask(lambda f: f.index % 2 == 0, axis=0)
    post = bn.marginals(rows)         # every query of BayesNet runs on this engine

Modules: :mod:`.junction` (the network's triangulation, cliques), :mod:`.layout` (the tree as
flat arrays, compiled potentials), :mod:`.kernels`, :mod:`.runs` and :mod:`.odometer` (the
compiled per-row passes), :mod:`.rows` (the loop over rows: each on the network's tree or on
its own), :mod:`.rowtree` and :mod:`.elimination` (a tree for one row's evidence, built in
compiled code), :mod:`.engine` (the compiled network: sum-product, max-product, sampling,
expected counts, memory), :mod:`.queries` (BayesNet's queries on it), :mod:`.sampling`
(forward sampling and likelihood weighting), :mod:`.torch_engine` (the same tree on a CUDA
device, and ``log_evidence``, differentiable in the CPTs).

The maths shared by all: with hard evidence as a one-hot likelihood and soft evidence as a
likelihood vector, P(x, e) = prod_v P(x_v | x_pa(v)) lambda_v(x_v), and every answer (log P(e),
posteriors, MAP, expected counts, draws) comes from sum- or max-product on one junction tree.
"""

from __future__ import annotations

from .engine import DEFAULT_MEMORY_BUDGET, Engine

__all__ = ["DEFAULT_MEMORY_BUDGET", "Engine"]
