"""Structure learning: recovering known structures, and its input checks."""

from __future__ import annotations

import numpy as np
import pytest

from probdl.errors import DataError
from probdl.graph import BayesNet, learn_structure

try:  # tests/graph may or may not be a package
    from .test_em import _sample
except ImportError:
    from test_em import _sample

# A tree B <- A -> C -> D with strong dependencies: its skeleton is identifiable from data (the
# orientation is not: every orientation without a collider scores the same).
STATES = {v: ["0", "1"] for v in "ABCD"}
PARENTS = {"A": [], "B": ["A"], "C": ["A"], "D": ["C"]}
CPTS = {
    "A": [0.5, 0.5], "B": [[0.9, 0.2], [0.1, 0.8]],
    "C": [[0.85, 0.1], [0.15, 0.9]], "D": [[0.9, 0.15], [0.1, 0.85]],
}
SKELETON = {frozenset(e) for e in [("A", "B"), ("A", "C"), ("C", "D")]}


@pytest.mark.parametrize("scoring", ["bic", "bdeu"])
def test_recovers_the_skeleton_of_a_tree(scoring):
    truth = BayesNet(STATES, PARENTS, CPTS)
    rows = _sample(truth, 3000, seed=40)
    learned = learn_structure(rows, scoring=scoring)
    assert {frozenset(e) for e in learned.graph.edges()} == SKELETON
    assert learned.states == STATES
    fitted = learned.fit(rows, method="bayes", prior=1.0)
    joint_truth = truth.query(["B", "D"], joint=True)
    joint_fitted = fitted.query(["B", "D"], joint=True)
    assert np.abs(joint_truth.to_numpy() - joint_fitted.to_numpy()).max() < 0.03


def test_background_knowledge_and_bad_input():
    truth = BayesNet(STATES, PARENTS, CPTS)
    rows = _sample(truth, 1000, seed=41)
    learned = learn_structure(rows, forbidden_edges=[("C", "D"), ("D", "C")], max_indegree=1)
    assert ("C", "D") not in learned.graph.edges() and ("D", "C") not in learned.graph.edges()
    with pytest.raises(DataError, match="complete rows"):
        learn_structure(rows.assign(A=None))
    with pytest.raises(DataError, match="scoring must be"):
        learn_structure(rows, scoring="aic-x")
    with pytest.raises(DataError, match="non-empty"):
        learn_structure(rows.iloc[:0])
    with pytest.raises(DataError, match="pair of columns"):
        learn_structure(rows, required_edges=[("A", "Q")])
