"""Soft evidence (one-hot = hard, otherwise = a virtual child) and sampling estimates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from probdl.graph import BayesNet
from tests.graph._graph_helpers import random_net


def test_one_hot_soft_evidence_equals_hard_evidence():
    bn = BayesNet.example("asia")
    hard = bn.query(["lung", "tub"], {"xray": "yes", "smoke": "no"})
    soft = bn.query(["lung", "tub"], {"smoke": "no"}, soft_evidence={"xray": [1.0, 0.0]})
    for v in hard:
        np.testing.assert_allclose(soft[v].to_numpy(), hard[v].to_numpy(), atol=1e-12)


def test_soft_evidence_equals_a_virtual_child():
    bn = BayesNet.example("alarm")
    likelihood = np.array([0.7, 0.2, 0.1])  # over HR's states LOW, NORMAL, HIGH
    states = {**bn.states, "V": ["seen", "other"]}
    parents = {v: bn.parents(v) for v in bn.variables} | {"V": ["HR"]}
    cpts = {v: bn.cpd(v) for v in bn.variables}
    cpts["V"] = np.stack([likelihood, 1 - likelihood])
    virtual = BayesNet(states, parents, cpts)
    evidence = {"BP": "LOW", "CO": "HIGH"}
    ref = virtual.query(["LVFAILURE", "HR"], {**evidence, "V": "seen"})
    got = bn.query(["LVFAILURE", "HR"], evidence, soft_evidence={"HR": likelihood * 3})
    for v in ref:
        np.testing.assert_allclose(got[v].to_numpy(), ref[v].to_numpy(), atol=1e-12)
    rows = pd.DataFrame([evidence, {"BP": "HIGH"}])
    many = bn.marginals(rows, soft_evidence={"HR": np.stack([likelihood, likelihood])})
    np.testing.assert_allclose(many["LVFAILURE"][0], ref["LVFAILURE"].to_numpy(), atol=1e-12)


def test_forward_sampling_frequencies_match_marginals():
    bn = BayesNet.example("asia")
    rows = bn.sample(20_000, seed=3)
    assert list(rows.columns) == bn.variables
    prior = bn.marginals(pd.DataFrame(index=[0]))
    for v in bn.variables:
        freq = rows[v].value_counts(normalize=True).reindex(bn.states[v], fill_value=0)
        np.testing.assert_allclose(freq.to_numpy(), prior[v][0], atol=0.012)
    pd.testing.assert_frame_equal(bn.sample(50, seed=1), bn.sample(50, seed=1))


def test_likelihood_weighting_approaches_exact():
    bn = random_net(21, n_vars=6)
    vs = bn.variables
    evidence = {vs[-1]: bn.states[vs[-1]][0], vs[2]: bn.states[vs[2]][1]}
    soft = {vs[3]: np.linspace(0.2, 1.0, len(bn.states[vs[3]]))}
    targets = [v for v in vs if v not in evidence][:2]
    exact = bn.query(targets, evidence, soft_evidence=soft)
    approx = bn.query(targets, evidence, soft_evidence=soft, method="sampling", n=40_000,
                      seed=0)
    for v in targets:
        np.testing.assert_allclose(approx[v].to_numpy(), exact[v].to_numpy(), atol=0.02)
    joint = bn.query(targets, evidence, joint=True, method="sampling", n=40_000)
    ref = bn.query(targets, evidence, joint=True)
    np.testing.assert_allclose(joint.to_numpy(), ref.to_numpy(), atol=0.02)
    assert joint.sum() == pytest.approx(1.0)
