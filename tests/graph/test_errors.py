"""Bad models raise ModelError and bad queries InferenceError, with messages that name the fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from probdl.errors import InferenceError, ModelError
from probdl.graph import BayesNet

STATES = {"A": ["a0", "a1"], "B": ["b0", "b1", "b2"]}
PARENTS = {"B": ["A"]}
CPTS = {"A": np.array([0.3, 0.7]), "B": np.array([[0.2, 0.5], [0.3, 0.5], [0.5, 0.0]])}


def _net(**over):
    cpts = {**CPTS, **over}
    return BayesNet(STATES, PARENTS, cpts)


def test_cycle():
    with pytest.raises(ModelError, match="cycle"):
        BayesNet(STATES, {"A": ["B"], "B": ["A"]},
                 {"A": np.full((2, 3), 0.5), "B": np.full((3, 2), 1 / 3)})


def test_cpt_shape_mismatch():
    with pytest.raises(ModelError, match=r"CPT of 'B' has shape \(2, 2\).*\(3, 2\)"):
        _net(B=np.full((2, 2), 0.5))


def test_columns_must_sum_to_one():
    bad = CPTS["B"].copy()
    bad[0, 1] += 1e-5
    with pytest.raises(ModelError, match=r"column \(1,\).*sums to 1.00001"):
        _net(B=bad)
    ok = CPTS["B"].copy()
    ok[0, 1] += 1e-7  # within the 1e-6 tolerance
    _net(B=ok)


@pytest.mark.parametrize("value", [np.nan, -0.1])
def test_negative_or_nan_entries(value):
    bad = CPTS["B"].copy()
    bad[2, 1] = value
    bad[1, 1] = 0.5 - (0 if np.isnan(value) else value)
    with pytest.raises(ModelError, match="negative or NaN"):
        _net(B=bad)


def test_unknown_parent_and_missing_cpt():
    with pytest.raises(ModelError, match="parent 'C' of 'B' is not a variable"):
        BayesNet(STATES, {"B": ["C"]}, CPTS)
    with pytest.raises(ModelError, match="no CPT given for variable 'B'"):
        BayesNet(STATES, PARENTS, {"A": CPTS["A"]})


def test_network_is_not_mutated_by_queries():
    bn = _net()
    before = {v: bn.cpd(v).copy() for v in bn.variables}
    bn.query(["B"], {"A": "a1"})
    bn.marginals(pd.DataFrame({"A": ["a0", np.nan]}))
    bn.map({"B": "b1"})
    bn.sample(5)
    for v in bn.variables:
        np.testing.assert_array_equal(bn.cpd(v), before[v])
    with pytest.raises(ValueError):
        bn.cpd("A")[0] = 1.0
    bn.graph.add_edge("B", "X")
    assert "X" not in bn.graph


def test_unknown_variable_and_state_list_the_valid_ones():
    bn = _net()
    with pytest.raises(InferenceError, match=r"unknown variable 'C'.*\['A', 'B'\]"):
        bn.query(["B"], {"C": "c0"})
    with pytest.raises(InferenceError, match=r"unknown variable 'Z'"):
        bn.query(["Z"])
    # a query's evidence has no rows to number (it said "(row 0)")
    with pytest.raises(InferenceError, match=r"unknown state 'a9' of 'A' in evidence; valid "
                                             r"states: \['a0', 'a1'\]"):
        bn.query(["B"], {"A": "a9"})
    with pytest.raises(InferenceError, match=r"unknown state 'b7' of 'B' \(row 1\)"):
        bn.marginals(pd.DataFrame({"B": ["b0", "b7"]}))


def test_target_also_observed():
    bn = _net()
    with pytest.raises(InferenceError, match="both targeted and observed"):
        bn.query(["A", "B"], {"A": "a0"})
    with pytest.raises(InferenceError, match="both a MAP target and observed"):
        bn.map(pd.DataFrame({"A": ["a0"]}), targets=["A"])


def test_hard_and_soft_evidence_on_one_variable_is_refused_not_ignored():
    bn = _net()
    with pytest.raises(InferenceError, match=r"\['A'\] have both evidence and soft_evidence"):
        bn.query(["B"], {"A": "a0"}, soft_evidence={"A": [0.1, 0.9]})


def test_zero_probability_evidence_raises_never_nan():
    bn = _net()  # P(B = b2 | A = a1) = 0
    with pytest.raises(InferenceError, match="probability zero"):
        bn.query(["B"], {"A": "a1"}, soft_evidence={"B": [0.0, 0.0, 1.0]})
    rows = pd.DataFrame({"A": ["a0", "a1"], "B": ["b2", "b2"]})
    with pytest.raises(InferenceError, match=r"probability zero.*\[1\]"):
        bn.marginals(rows)
    with pytest.raises(InferenceError, match="probability zero"):
        bn.map(rows)
    ll = bn.log_likelihood(rows)
    assert np.isfinite(ll[0]) and ll[1] == -np.inf  # log 0, stated, not NaN


def test_bad_soft_evidence():
    bn = _net()
    with pytest.raises(InferenceError, match=r"shape \(3,\) or \(1, 3\)"):
        bn.query(["A"], soft_evidence={"B": [0.5, 0.5]})
    with pytest.raises(InferenceError, match="all zeros"):
        bn.query(["A"], soft_evidence={"B": [0.0, 0.0, 0.0]})
    with pytest.raises(InferenceError, match="negative or NaN"):
        bn.query(["A"], soft_evidence={"B": [0.5, -1.0, 0.5]})


def test_bad_rows_and_methods():
    bn = _net()
    with pytest.raises(InferenceError, match="DataFrame"):
        bn.marginals([1, 2, 3])
    with pytest.raises(InferenceError, match="unknown method"):
        bn.query(["A"], method="magic")
    with pytest.raises(InferenceError, match="no target"):
        bn.query([])
