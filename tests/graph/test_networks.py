"""The engine against pgmpy's VariableElimination on the bundled bnlearn networks."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pandas as pd
import pytest

from probdl.graph import BayesNet

NETWORKS = ["asia", "cancer", "alarm", "child", "insurance", "hailfinder"]


@functools.cache
def _net(name):
    from pgmpy.inference import VariableElimination

    bn = BayesNet.example(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ve = VariableElimination(bn.to_pgmpy())
    return bn, ve


def _rows(bn, n, seed, lo=3, hi=10):
    rng = np.random.default_rng(seed)
    rows = bn.sample(n, seed=seed)
    mask = np.zeros(rows.shape, dtype=bool)
    for i in range(n):
        k = int(rng.integers(lo, min(hi, rows.shape[1]) + 1))
        mask[i, rng.choice(rows.shape[1], size=k, replace=False)] = True
    return rows.mask(mask)


def _evidence(row):
    return {k: v for k, v in row.items() if isinstance(v, str)}


def _pgmpy_log_evidence(ve, evidence):
    """log P(e) by the chain rule over pgmpy posteriors."""
    total, given = 0.0, {}
    for var, state in evidence.items():
        q = ve.query([var], evidence=given or None, show_progress=False)
        total += np.log(q.values[q.state_names[var].index(state)])
        given[var] = state
    return total


@pytest.mark.parametrize("name", NETWORKS)
def test_marginals_and_loglik_match_pgmpy(name):
    bn, ve = _net(name)
    rows = _rows(bn, 3, seed=len(name))
    post = bn.marginals(rows)
    ll = bn.log_likelihood(rows)
    for i in range(len(rows)):
        ev = _evidence(rows.iloc[i])
        for v in [v for v in bn.variables if v not in ev]:
            q = ve.query([v], evidence=ev, show_progress=False)
            ref = np.array([q.values[q.state_names[v].index(s)] for s in bn.states[v]])
            np.testing.assert_allclose(post[v][i], ref, atol=1e-8, err_msg=f"{name} {v}")
        for v in ev:
            assert post[v][i][bn.states[v].index(ev[v])] == 1.0
        if i == 0:
            assert ll[i] == pytest.approx(_pgmpy_log_evidence(ve, ev), abs=1e-8)


@pytest.mark.parametrize("name", NETWORKS)
def test_map_matches_pgmpy(name):
    bn, ve = _net(name)
    rows = _rows(bn, 2, seed=7 + len(name), lo=3, hi=3)
    best = bn.map(rows)
    ll = bn.log_likelihood(rows)
    for i in range(len(rows)):
        ev = _evidence(rows.iloc[i])
        hidden = [v for v in bn.variables if v not in ev]
        ref = ve.map_query(hidden, evidence=ev, show_progress=False)
        ours = best.iloc[i][bn.variables].to_dict()
        theirs = {**ev, **{k: str(v) for k, v in ref.items()}}
        assert {k: ours[k] for k in ev} == ev
        # compare probabilities, not labels: ties may pick different but equally good states
        lp = bn.log_likelihood(best.iloc[[i]][bn.variables])[0]
        lp_ref = bn.log_likelihood(pd.DataFrame([theirs]))[0]
        assert lp == pytest.approx(lp_ref, abs=1e-8)
        assert best.iloc[i]["log_prob"] == pytest.approx(lp - ll[i], abs=1e-8)


@pytest.mark.parametrize("name", ["alarm", "child"])
def test_query_joint_and_marginal_map_match_pgmpy(name):
    bn, ve = _net(name)
    row = _rows(bn, 1, seed=3, lo=8, hi=8).iloc[0]
    ev = _evidence(row)
    targets = [v for v in bn.variables if v not in ev][:2]
    joint = bn.query(targets, ev, joint=True)
    ref = ve.query(targets, evidence=ev, joint=True, show_progress=False)
    for key, p in joint.items():
        assert p == pytest.approx(ref.get_value(**dict(zip(targets, key, strict=True))),
                                  abs=1e-8)
    single = bn.query(targets, ev)
    for t in targets:
        q = ve.query([t], evidence=ev, show_progress=False)
        for s, p in single[t].items():
            assert p == pytest.approx(q.get_value(**{t: s}), abs=1e-8)
    best = bn.map(ev, targets=targets)
    ref_map = ve.map_query(targets, evidence=ev, show_progress=False)
    top = joint.max()
    chosen = joint[tuple(best.iloc[0][t] for t in targets)]
    assert chosen == pytest.approx(top, abs=1e-12)
    assert joint[tuple(str(ref_map[t]) for t in targets)] == pytest.approx(top, abs=1e-8)
    assert best.iloc[0]["log_prob"] == pytest.approx(np.log(top), abs=1e-10)


def test_cpd_as_a_labelled_frame_matches_pgmpy():
    from pgmpy.utils import get_example_model

    bn = BayesNet.example("asia")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = get_example_model("asia")
    either = bn.cpd("either", frame=True)
    assert either.index.name == "either" and list(either.index) == ["yes", "no"]
    assert either.columns.names == ["lung", "tub"]
    cpd = ref.get_cpds("either")
    for lung in ("yes", "no"):
        for tub in ("yes", "no"):
            for state in ("yes", "no"):
                expected = cpd.get_value(either=state, lung=lung, tub=tub)
                assert either.loc[state, (lung, tub)] == pytest.approx(expected)
    smoke = bn.cpd("smoke", frame=True)
    assert list(smoke.columns) == ["P(smoke)"] and smoke.loc["yes", "P(smoke)"] == 0.5
    np.testing.assert_array_equal(bn.cpd("either", frame=True).to_numpy().reshape(2, 2, 2),
                                  bn.cpd("either"))
