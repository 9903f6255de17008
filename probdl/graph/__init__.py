"""Discrete Bayesian networks with one compiled, batched junction-tree engine.

    from probdl.graph import BayesNet
    bn = BayesNet.example("alarm")
    rows = bn.sample(1000, seed=0)
    rows.loc[:, ["HR", "CO"]] = float("nan")          # hide two columns
    post = bn.marginals(rows)                          # dict var -> (1000, k), one call
    best = bn.map(rows)                                # completed rows + log_prob

Layout: :mod:`.network` (BayesNet), :mod:`.io` and :mod:`.uai` (files), :mod:`.inference` (the
one engine: a junction tree compiled once per network), :mod:`.learning` (counts, EM, structure
learning), :mod:`.impute`. ``learn_structure`` is imported lazily from
:mod:`probdl.graph.learning.structure`.
"""

from __future__ import annotations

from typing import Any

from .network import BayesNet

__all__ = ["BayesNet", "learn_structure"]


def __getattr__(name: str) -> Any:
    if name == "learn_structure":
        from .learning.structure import learn_structure

        return learn_structure
    raise AttributeError(f"module 'probdl.graph' has no attribute {name!r}")
