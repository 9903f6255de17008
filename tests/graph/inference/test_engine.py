"""The compiled engine against brute-force enumeration on small random networks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probdl.graph.inference.torch_engine import log_evidence
from tests.graph._graph_helpers import evidence_mask, random_net

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _rows(bn, n, rng, p_hidden=0.5):
    rows = bn.sample(n, seed=int(rng.integers(1 << 30)))
    hide = rng.random(rows.shape) < p_hidden
    return rows.mask(hide)


def _check_against_enumeration(bn, rows, soft=None):
    vs = bn.variables
    post = bn.marginals(rows, soft_evidence=soft)
    ll = bn.log_likelihood(rows) if soft is None else None
    best = bn.map(rows) if soft is None else None
    for i in range(len(rows)):
        w = evidence_mask(bn, rows.iloc[i], soft, i)
        z = w.sum()
        if ll is not None:
            assert ll[i] == pytest.approx(np.log(z), abs=1e-10)
        for j, v in enumerate(vs):
            ref = w.sum(axis=tuple(a for a in range(len(vs)) if a != j)) / z
            np.testing.assert_allclose(post[v][i], ref, atol=1e-10)
        if best is not None:
            codes = tuple(bn.states[v].index(best.iloc[i][v]) for v in vs)
            assert w[codes] == pytest.approx(w.max(), rel=1e-10)
            assert best.iloc[i]["log_prob"] == pytest.approx(np.log(w.max() / z), abs=1e-10)


@SETTINGS
@given(seed=st.integers(0, 10_000), n_vars=st.integers(1, 6))
def test_marginals_loglik_map_match_enumeration(seed, n_vars):
    bn = random_net(seed, n_vars=n_vars)
    rng = np.random.default_rng(seed)
    _check_against_enumeration(bn, _rows(bn, 6, rng), None)


@SETTINGS
@given(seed=st.integers(0, 10_000))
def test_soft_evidence_matches_enumeration(seed):
    bn = random_net(seed, n_vars=4)
    rng = np.random.default_rng(seed)
    rows = _rows(bn, 5, rng)
    v = bn.variables[int(rng.integers(len(bn.variables)))]
    soft = {v: rng.random((5, len(bn.states[v]))) + 0.01}
    _check_against_enumeration(bn, rows, soft)


def test_joint_query_and_marginal_map_match_enumeration():
    bn = random_net(3, n_vars=6)
    vs = bn.variables
    targets = [vs[1], vs[4]]
    row = {vs[0]: bn.states[vs[0]][0], vs[5]: bn.states[vs[5]][1]}
    w = evidence_mask(bn, pd.Series(row))
    keep = tuple(vs.index(t) for t in targets)
    ref = w.sum(axis=tuple(a for a in range(len(vs)) if a not in keep))
    ref = ref / ref.sum()
    joint = bn.query(targets, row, joint=True)
    np.testing.assert_allclose(joint.to_numpy().reshape(ref.shape), ref, atol=1e-12)
    assert list(joint.index.names) == targets
    best = bn.map(row, targets=targets)
    code = np.unravel_index(ref.argmax(), ref.shape)
    assert [best.iloc[0][t] for t in targets] == [bn.states[t][c]
                                                  for t, c in zip(targets, code, strict=True)]
    assert best.iloc[0]["log_prob"] == pytest.approx(np.log(ref.max()), abs=1e-12)


def test_tiny_probabilities_stay_finite():
    """300 observed children of probability ~1e-3 each: P(e) ~ 1e-900 underflows float64."""
    states = {"R": ["a", "b"], **{f"C{i}": ["x", "y"] for i in range(300)}}
    parents = {f"C{i}": ["R"] for i in range(300)}
    cpts = {"R": np.array([0.5, 0.5]),
            **{f"C{i}": np.array([[1e-3, 2e-3], [1 - 1e-3, 1 - 2e-3]]) for i in range(300)}}
    from probdl.graph import BayesNet
    bn = BayesNet(states, parents, cpts)
    row = {f"C{i}": "x" for i in range(300)}
    ll = bn.log_likelihood(row)[0]
    ref = np.logaddexp(np.log(0.5) + 300 * np.log(1e-3), np.log(0.5) + 300 * np.log(2e-3))
    assert ll == pytest.approx(ref, rel=1e-12)
    post = bn.query(["R"], row)["R"].to_numpy()
    np.testing.assert_allclose(post, [1 / (1 + 2.0**300), 1 - 1 / (1 + 2.0**300)], rtol=1e-10)


def test_log_evidence_gradient_gives_expected_family_counts():
    """EM interface: cpt * d(sum log P)/d cpt equals enumerated expected family counts."""
    bn = random_net(11, n_vars=5)
    vs = bn.variables
    rng = np.random.default_rng(1)
    rows = _rows(bn, 8, rng, 0.5)
    states = np.zeros((8, len(vs)), dtype=np.int64)
    missing = rows[vs].isna().to_numpy()
    for j, v in enumerate(vs):
        states[:, j] = [bn.states[v].index(x) if isinstance(x, str) else 0 for x in rows[v]]
    cpts = [torch.tensor(bn.cpd(v), requires_grad=True) for v in vs]
    logp = log_evidence(bn, states, missing, cpts)
    np.testing.assert_allclose(logp.detach().numpy(), bn.log_likelihood(rows), atol=1e-12)
    logp.sum().backward()
    for j, v in enumerate(vs):
        fam = [vs.index(u) for u in (v, *bn.parents(v))]
        expected = np.zeros(bn.cpd(v).shape)
        for i in range(8):
            w = evidence_mask(bn, rows.iloc[i])
            w = w / w.sum()
            marg = w.sum(axis=tuple(a for a in range(len(vs)) if a not in fam))
            expected += np.transpose(marg, np.argsort(np.argsort(fam)))
        got = (cpts[j].detach() * cpts[j].grad).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-10)


def test_log_evidence_accepts_dict_and_checks_shapes():
    bn = random_net(2, n_vars=3)
    cpts = {v: torch.tensor(bn.cpd(v)) for v in bn.variables}
    states = np.zeros((2, 3), dtype=np.int64)
    missing = np.ones((2, 3), dtype=bool)
    np.testing.assert_allclose(log_evidence(bn, states, missing, cpts).numpy(), 0, atol=1e-12)
    from probdl.errors import InferenceError
    with pytest.raises(InferenceError, match="shape"):
        log_evidence(bn, states[:, :2], missing[:, :2], cpts)


def test_memory_budget_slices_batches_and_rejects_huge_plans():
    bn = random_net(5, n_vars=6)
    rows = _rows(bn, 30, np.random.default_rng(0), 0.5)
    full = bn.marginals(rows)
    bn.memory_budget = 4096  # forces many small slices
    sliced = bn.marginals(rows)
    for v in bn.variables:
        np.testing.assert_allclose(full[v], sliced[v], atol=1e-12)
    bn.memory_budget = 16
    from probdl.errors import InferenceError
    with pytest.raises(InferenceError, match="sampling"):
        bn.marginals(rows)
    # 16 four-state roots with an observed child for every pair: the moral graph is a clique
    # over the roots, so any exact plan needs a 4**16-entry (32 GiB) intermediate
    from probdl.graph import BayesNet
    roots = [f"R{i}" for i in range(16)]
    pairs = [(a, b) for i, a in enumerate(roots) for b in roots[i + 1:]]
    states = {**{r: list("abcd") for r in roots}, **{f"{a}{b}": ["y", "n"] for a, b in pairs}}
    parents = {f"{a}{b}": [a, b] for a, b in pairs}
    table = np.stack([np.full((4, 4), 0.3), np.full((4, 4), 0.7)])
    cpts = {**{r: np.full(4, 0.25) for r in roots}, **{f"{a}{b}": table for a, b in pairs}}
    big = BayesNet(states, parents, cpts)
    with pytest.raises(InferenceError, match=r"GiB.*method='sampling'"):
        big.marginals(pd.DataFrame({f"{a}{b}": ["y"] for a, b in pairs}))
