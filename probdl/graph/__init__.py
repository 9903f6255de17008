"""Discrete Bayesian networks with a compiled, batched exact-inference engine.

    from probdl.graph import BayesNet
    bn = BayesNet.example("alarm")
    rows = bn.sample(1000, seed=0)
    rows.loc[:, ["HR", "CO"]] = float("nan")          # hide two columns
    post = bn.marginals(rows)                          # dict var -> (1000, k), one call
    best = bn.map(rows)                                # completed rows + log_prob

``learn_structure`` (structure learning) is imported lazily from :mod:`probdl.graph.structure`.
"""

from __future__ import annotations

from typing import Any

from .network import BayesNet

__all__ = ["BayesNet", "learn_structure"]


def __getattr__(name: str) -> Any:
    if name == "learn_structure":
        from .structure import learn_structure

        return learn_structure
    raise AttributeError(f"module 'probdl.graph' has no attribute {name!r}")
