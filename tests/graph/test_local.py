"""Enumeration over independent components (local.py) against brute force and the plans."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probdl.graph import BayesNet, engine, local
from tests.graph._graph_helpers import evidence_mask, random_net

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _columns(bn):
    return np.concatenate([[0], np.cumsum([len(bn.states[v]) for v in bn.variables])])


@SETTINGS
@given(seed=st.integers(0, 10_000), n_vars=st.integers(1, 7), p_hidden=st.floats(0, 1),
       zeros=st.booleans(), in_logs=st.booleans(), max_work=st.sampled_from([1e12, 8.0, 0.0]))
def test_matches_enumeration(seed, n_vars, p_hidden, zeros, in_logs, max_work):
    # in_logs: every enumerated product goes through log space, as it does for CPTs with tiny
    # entries; max_work 8 or 0 sends most or all components to the elimination tree
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(local, "_LOG_SAFE", np.inf if in_logs else -600.0)
        _check_enumeration(seed, n_vars, p_hidden, zeros, max_work)


def _check_enumeration(seed, n_vars, p_hidden, zeros, max_work):
    bn = random_net(seed, n_vars=n_vars, max_parents=3, zeros=zeros)
    rng = np.random.default_rng(seed)
    rows = bn.sample(8, seed=seed).mask(rng.random((8, n_vars)) < p_hidden)
    if zeros:  # impossible evidence: a state of probability zero somewhere
        for v in bn.variables:
            rows.loc[rows.index[0], v] = bn.states[v][-1]
    states, observed = bn._encode(rows)
    cpts = bn._torch_cpts(torch.device("cpu"), torch.float64)
    done, log_z, post = local.answer_local(bn._structure, cpts, states, observed,
                                           max_work=max_work)
    cols = _columns(bn)
    answered = np.cumsum(done) - 1
    for i in range(len(rows)):
        w = evidence_mask(bn, rows.iloc[i])
        z = w.sum()
        if not done[i]:
            # only the tree hands rows back here, and only rows whose evidence is impossible
            assert z == 0 and max_work < 1e12
            continue
        k = answered[i]
        with np.errstate(divide="ignore"):
            assert log_z[k] == pytest.approx(np.log(z), abs=1e-10)
        if z == 0:  # the engine raises for these rows; here they must stay finite
            assert np.isfinite(post[k]).all()
            continue
        for j in range(n_vars):
            ref = w.sum(axis=tuple(a for a in range(n_vars) if a != j)) / z
            np.testing.assert_allclose(post[k, cols[j]:cols[j + 1]], ref, atol=1e-10)


def test_costly_components_are_eliminated_along_the_tree_or_left_to_the_plans():
    bn = BayesNet.example("asia")
    rows = bn.sample(30, seed=1)
    rows.iloc[:10, :] = np.nan  # one component of all 8 variables: 256 states, 8 factors
    rows.iloc[10:20, 0] = np.nan  # "asia" alone: 2 states, 2 factors
    states, observed = bn._encode(rows)
    cpts = bn._torch_cpts(torch.device("cpu"), torch.float64)
    done, log_z, post = local.answer_local(bn._structure, cpts, states, observed,
                                           max_work=2 * 2 * 2, eliminate_costly=False)
    assert not done[:10].any() and done[10:].all()
    assert log_z.shape == (20,) and post.shape == (20, 16)
    whole = local.answer_local(bn._structure, cpts, states, observed, max_work=1e9)
    assert whole[0].all()
    tree = local.answer_local(bn._structure, cpts, states, observed, max_work=2 * 2 * 2)
    assert tree[0].all()
    np.testing.assert_allclose(tree[1], whole[1], atol=1e-12)
    np.testing.assert_allclose(tree[2], whole[2], atol=1e-12)
    # every row hides all 8 variables: the prior marginals, and log P(nothing) = 0
    np.testing.assert_allclose(tree[1][:10], 0.0, atol=1e-12)
    logz_only = local.answer_local(bn._structure, cpts, states, observed, max_work=2 * 2 * 2,
                                   posteriors=False)
    np.testing.assert_allclose(logz_only[1], whole[1], atol=1e-12)
    assert logz_only[2].shape == (30, 0)


def test_engine_routes_rows_between_the_local_path_and_the_plans(monkeypatch):
    """Rows the tree hands back (a step table over MAX_TABLE entries) go to the plans, and
    the answers come back in the original row order."""
    from probdl.graph import local_elimination

    bn = BayesNet.example("alarm")
    rng = np.random.default_rng(0)
    rows = bn.sample(60, seed=0)
    rows = rows.mask(rng.random(rows.shape) < np.linspace(0.05, 0.9, 60)[:, None])
    monkeypatch.setattr(engine, "LOCAL_MIN_FLOPS", np.inf)  # plans only
    ref, ref_ll = bn.marginals(rows), bn.log_likelihood(rows)
    monkeypatch.setattr(engine, "LOCAL_MIN_FLOPS", 0)
    monkeypatch.setattr(local_elimination, "MAX_TABLE", 64)
    states, observed = bn._encode(rows)
    cpts = bn._torch_cpts(torch.device("cpu"), torch.float64)
    done = local.answer_local(bn._structure, cpts, states, observed,
                              max_work=engine.ENUMERATE_MAX_WORK)[0]
    assert 5 < done.sum() < 55  # both paths are used
    got, got_ll = bn.marginals(rows), bn.log_likelihood(rows)
    for v in bn.variables:
        np.testing.assert_allclose(got[v], ref[v], atol=1e-12)
    np.testing.assert_allclose(got_ll, ref_ll, atol=1e-10)


def test_the_tree_hands_back_rows_near_underflow_and_they_are_enumerated_in_logs():
    """P(B=b0 | A) = 1e-260 puts the tree's table below its floor: the tree hands such rows
    back, and the log-space enumeration answers them exactly."""
    from probdl.graph.local_elimination import eliminate
    from probdl.graph.local_tables import tables_for

    bn = BayesNet({"A": ["a0", "a1"], "B": ["b0", "b1"]}, {"A": [], "B": ["A"]},
                  {"A": np.array([0.3, 0.7]),
                   "B": np.array([[1e-260, 2e-260], [1.0 - 1e-260, 1.0 - 2e-260]])})
    rows = pd.DataFrame({"A": [np.nan, np.nan, "a1"], "B": ["b0", "b1", "b0"]})
    states, observed = bn._encode(rows)
    cpts = bn._torch_cpts(torch.device("cpu"), torch.float64)
    handed = eliminate(tables_for(bn._structure, cpts, 0.0), bn._structure, states, ~observed)[0]
    assert handed.tolist() == [False, True, True]
    done = local.answer_local(bn._structure, cpts, states, observed, max_work=0.0)[0]
    assert done.all()
    got, got_ll = bn.marginals(rows), bn.log_likelihood(rows)
    p_b0 = 0.3e-260 + 1.4e-260
    assert got_ll[0] == pytest.approx(np.log(p_b0), rel=1e-12)
    np.testing.assert_allclose(got["A"][0], [0.3e-260 / p_b0, 1.4e-260 / p_b0], rtol=1e-12)
    assert got_ll[2] == pytest.approx(np.log(0.7 * 2e-260), rel=1e-12)


def test_impossible_rows_raise_through_the_public_api():
    bn = BayesNet.example("alarm")
    rows = bn.sample(5, seed=2)
    rows.loc[:, "HYPOVOLEMIA"] = np.nan
    # row 3 observes a family in a state combination of probability zero
    var = next(v for v in bn.variables if (bn.cpd(v) == 0).any())
    codes = np.argwhere(bn.cpd(var) == 0)[0]
    for name, code in zip((var, *bn.parents(var)), codes, strict=True):
        rows.loc[3, name] = bn.states[name][code]
    ll = bn.log_likelihood(rows)
    assert ll[3] == -np.inf and np.isfinite(np.delete(ll, 3)).all()
    with pytest.raises(Exception, match="probability zero"):
        bn.marginals(rows)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n_vars=st.integers(1, 6))
def test_expected_counts_match_enumeration(seed, n_vars):
    """EM's E-step: sum_r w_r P(family config | row r) for every CPT entry."""
    from probdl.graph.local_tables import Tables

    bn = random_net(seed, n_vars=n_vars, max_parents=3)
    rng = np.random.default_rng(seed)
    rows = bn.sample(6, seed=seed).mask(rng.random((6, n_vars)) < 0.4)
    weights = rng.integers(1, 4, size=6).astype(float)
    states, observed = bn._encode(rows)
    tables = Tables(bn._structure, [np.zeros_like(bn.cpd(v)) for v in bn.variables], 1e12)
    tables.set_cpts([bn.cpd(v) for v in bn.variables])  # the values EM puts in
    done, log_z, flat = local.expected_counts(tables, states, observed, weights)
    assert done.all()
    vs = bn.variables
    for j, v in enumerate(vs):
        family = [vs.index(u) for u in (v, *bn.parents(v))]
        ref = np.zeros(bn.cpd(v).shape)
        for i in range(len(rows)):
            w = evidence_mask(bn, rows.iloc[i])
            joint = w.sum(axis=tuple(a for a in range(n_vars) if a not in family)) / w.sum()
            # the summed joint has the family's axes in variable order; the CPT in family order
            ref += weights[i] * np.transpose(joint, np.argsort(np.argsort(family)))
        got = flat[tables.start[j]:tables.start[j] + ref.size].reshape(ref.shape)
        np.testing.assert_allclose(got, ref, atol=1e-10)
    ll = np.array([np.log(evidence_mask(bn, rows.iloc[i]).sum()) for i in range(len(rows))])
    np.testing.assert_allclose(log_z, ll, atol=1e-10)


def test_rows_are_enumerated_in_blocks_that_fit_the_memory_budget(monkeypatch):
    bn = BayesNet.example("alarm")
    rows = bn.sample(50, seed=3).mask(np.random.default_rng(3).random((50, 37)) < 0.15)
    whole, whole_ll = bn.marginals(rows), bn.log_likelihood(rows)
    calls = []
    answer = engine.answer_local
    monkeypatch.setattr(engine, "answer_local",
                        lambda *a, **k: calls.append(len(a[2])) or answer(*a, **k))
    bn.memory_budget = 2 * 37 * engine.LOCAL_BYTES_PER_CELL * 8  # half of it: 8 rows a block
    blocks, blocks_ll = bn.marginals(rows), bn.log_likelihood(rows)
    assert calls[:7] == [8] * 6 + [2]
    for v in bn.variables:
        np.testing.assert_allclose(blocks[v], whole[v], atol=1e-12)
    np.testing.assert_allclose(blocks_ll, whole_ll, atol=1e-12)


def test_the_elimination_splits_its_rows_to_fit_the_memory_budget():
    from probdl.graph import local_elimination
    from probdl.graph.local_tables import tables_for

    bn = BayesNet.example("insurance")
    rows = bn.sample(40, seed=5)
    rows.iloc[:, :10] = np.nan  # ten hidden variables, most of them linked
    rows.iloc[::7, :] = np.nan  # and some rows that hide everything
    states, observed = bn._encode(rows)
    cpts = bn._torch_cpts(torch.device("cpu"), torch.float64)
    tables = tables_for(bn._structure, cpts, 0.0)
    args = (tables, bn._structure, states, ~observed)
    whole = local_elimination.eliminate(*args)
    assert whole[0].all()
    calls = []
    real = local_elimination._in_groups
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(local_elimination, "_in_groups",
                      lambda *a: calls.append(a[6].size) or real(*a))
        budget = 200_000  # two rows per group; an all-hidden row needs 0.8 MB alone
        parts = local_elimination.eliminate(*args, memory_budget=budget)
    assert calls
    alone = parts[0]
    assert 0 < alone.sum() < len(rows)
    np.testing.assert_allclose(parts[1][alone], whole[1][alone], atol=1e-12)
    np.testing.assert_allclose(parts[2][alone], whole[2][alone], atol=1e-12)


@pytest.mark.parametrize("int_keys", [True, False])
def test_sets_and_patterns_keyed_by_integers_or_one_by_one_agree(monkeypatch, int_keys):
    """Networks of 63 variables or more key their components and step patterns by bytes, one
    by one; smaller ones by integers, all at once. Both give the plans' answers."""
    from probdl.graph import local_tables

    rows = BayesNet.example("alarm").sample(80, seed=4)
    rows = rows.mask(np.random.default_rng(4).random(rows.shape) < 0.3)
    monkeypatch.setattr(engine, "LOCAL_MIN_FLOPS", np.inf)
    ref = BayesNet.example("alarm").marginals(rows)
    monkeypatch.setattr(engine, "LOCAL_MIN_FLOPS", 0)
    if not int_keys:
        monkeypatch.setattr(local_tables, "INT_KEY_BITS", 0)
    bn = BayesNet.example("alarm")  # fresh tables
    for _ in range(2):  # building the keys, then finding them
        got = bn.marginals(rows)
        for v in bn.variables:
            np.testing.assert_allclose(got[v], ref[v], atol=1e-12)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), p_hidden=st.floats(0.2, 0.9))
def test_elimination_on_larger_random_networks_matches_the_plans(seed, p_hidden):
    """Twelve variables with up to three parents: deeper trees, steps with several children,
    relays; everything summed out along the tree (max_work 0) against the compiled plans."""
    bn = random_net(seed, n_vars=12, max_parents=3)
    rng = np.random.default_rng(seed)
    rows = bn.sample(30, seed=seed).mask(rng.random((30, 12)) < p_hidden)
    states, observed = bn._encode(rows)
    cpts = bn._torch_cpts(torch.device("cpu"), torch.float64)
    done, log_z, post = local.answer_local(bn._structure, cpts, states, observed, max_work=0.0)
    assert done.all()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "LOCAL_MIN_FLOPS", np.inf)  # plans only
        ref, ref_ll = bn.marginals(rows), bn.log_likelihood(rows)
    np.testing.assert_allclose(log_z, ref_ll, atol=1e-10)
    cols = _columns(bn)
    for j, v in enumerate(bn.variables):
        np.testing.assert_allclose(post[:, cols[j]:cols[j + 1]], ref[v], atol=1e-10)


@SETTINGS
@given(seed=st.integers(0, 10_000), n_vars=st.integers(1, 7), p_hidden=st.floats(0, 1),
       max_work=st.sampled_from([1e12, 0.0]), in_logs=st.booleans())
def test_soft_evidence_through_the_local_path_matches_enumeration(seed, n_vars, p_hidden,
                                                                   max_work, in_logs):
    """Soft likelihoods on hidden and observed variables, per row, enumerated (1e12) or
    eliminated (0); ``in_logs`` puts entries of 1e-30 in them and sums every enumerated
    table in log space."""
    bn = random_net(seed, n_vars=n_vars, max_parents=3)
    rng = np.random.default_rng(seed)
    rows = bn.sample(6, seed=seed).mask(rng.random((6, n_vars)) < p_hidden)
    soft_vars = [v for v in bn.variables if rng.random() < 0.6]
    soft = {v: rng.dirichlet(np.ones(len(bn.states[v])), size=6) + 0.01 for v in soft_vars}
    if in_logs:
        for v in soft_vars:
            soft[v][:, 0] = 1e-30
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "ENUMERATE_MAX_WORK", max_work)
        patch.setattr(local, "_LOG_SAFE", np.inf if in_logs else -600.0)
        got, got_ll = bn.marginals(rows, soft_evidence=soft), None
        got_ll = engine.run(bn._structure, bn._torch_cpts(torch.device("cpu"), torch.float64),
                            engine.Batch(*bn._encode(rows), bn._soft_tensors(
                                soft, 6, torch.float64, torch.device("cpu"))), "logz").numpy()
    for i in range(len(rows)):
        w = evidence_mask(bn, rows.iloc[i], soft, row_index=i)
        z = w.sum()
        assert got_ll[i] == pytest.approx(np.log(z), abs=1e-9)
        for j, v in enumerate(bn.variables):
            ref = w.sum(axis=tuple(a for a in range(n_vars) if a != j)) / z
            np.testing.assert_allclose(got[v][i], ref, atol=1e-10)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), with_soft=st.booleans())
def test_extreme_entries_are_caught_by_the_tree_and_enumerated_in_log_space(seed, with_soft):
    """CPT and soft-evidence entries down to 1e-300 make the tree's products underflow; such
    rows must be handed back and answered by the log-space enumeration, not lose digits."""
    rng = np.random.default_rng(seed)
    base = random_net(seed, n_vars=int(rng.integers(2, 7)), max_parents=2, max_card=3)
    cpts = {}
    for v in base.variables:
        c = 10.0 ** -rng.uniform(0, 300, size=base.cpd(v).shape)
        c = np.where(rng.random(c.shape) < 0.5, rng.random(c.shape), c)
        cpts[v] = c / c.sum(0, keepdims=True)
    bn = BayesNet(base.states, {v: base.parents(v) for v in base.variables}, cpts)
    n, cards = len(bn.variables), bn._structure.cards
    states = np.stack([rng.integers(0, k, 20) for k in cards], 1)
    observed = rng.random((20, n)) < 0.3
    soft = None
    if with_soft:
        cols = np.concatenate([[0], np.cumsum(cards)])
        soft = 10.0 ** -rng.uniform(0, 300, size=(20, cols[-1]))
        soft = np.where(rng.random(soft.shape) < 0.5, 1.0, soft)
        for j in range(n):
            soft[:, cols[j]:cols[j + 1]] /= soft[:, cols[j]:cols[j + 1]].max(1, keepdims=True)
    torch_cpts = bn._torch_cpts(torch.device("cpu"), torch.float64)
    tree = local.answer_local(bn._structure, torch_cpts, states, observed, max_work=0.0,
                              soft=soft)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(local, "_LOG_SAFE", np.inf)
        ref = local.answer_local(bn._structure, torch_cpts, states, observed, max_work=1e12,
                                 soft=soft)
    assert tree[0].all() and ref[0].all()
    finite = np.isfinite(ref[1])
    np.testing.assert_array_equal(np.isfinite(tree[1]), finite)
    np.testing.assert_allclose(tree[1][finite], ref[1][finite], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(tree[2][finite], ref[2][finite], atol=1e-9)


def test_extreme_evidence_is_exact_on_the_local_path_and_a_clear_error_in_the_plans(monkeypatch):
    """P(A=a0) = 1e-240, P(B=b1 | a0) = 1e-90, P(D=d1 | b0) = 1e-100: the evidence (D = d1, A
    softly a0) has probability about 1e-330, below float64's range. The local path answers it
    exactly (log space); the compiled plans underflow within one contraction step, and say so
    instead of returning NaN."""
    from probdl.errors import InferenceError

    k = 10
    pa = np.full(k, (1 - 1e-240) / (k - 1))
    pa[0] = 1e-240
    pb = np.full((k, k), 1.0 / k)
    pb[:, 0] = 0
    pb[0, 0], pb[1, 0] = 1 - 1e-90, 1e-90
    pd_ = np.full((2, k), 0.5)
    pd_[1, 0], pd_[1, 1] = 1e-100, 1.0
    pd_[0] = 1 - pd_[1]
    bn = BayesNet({"A": [f"a{i}" for i in range(k)], "B": [f"b{i}" for i in range(k)],
                   "D": ["d0", "d1"]}, {"A": [], "B": ["A"], "D": ["B"]},
                  {"A": pa, "B": pb, "D": pd_})
    rows = pd.DataFrame({"A": [np.nan], "B": [np.nan], "D": ["d1"]})
    soft = {"A": np.eye(k)[0]}
    got = bn.marginals(rows, soft_evidence=soft)
    # P(B = b0, e) = 1e-240 (1 - 1e-90) 1e-100 and P(B = b1, e) = 1e-240 1e-90
    np.testing.assert_allclose(got["B"][0][:2], [1e-10 / (1 + 1e-10), 1 / (1 + 1e-10)],
                               rtol=1e-12)
    monkeypatch.setattr(engine, "LOCAL_MIN_FLOPS", np.inf)
    with pytest.raises(InferenceError, match="underflowed"):
        bn.marginals(rows, soft_evidence=soft)


def test_huge_components_are_sized_without_integer_overflow(monkeypatch):
    """Rows of hailfinder that observe only five of its 56 variables: their component's joint
    table has more entries than an int64 holds (a numpy product once wrapped around to a small
    number and tried to build the table). They are eliminated and match the plans."""
    bn = BayesNet.example("hailfinder")
    rng = np.random.default_rng(9)
    rows = bn.sample(4, seed=9)
    for i in range(4):
        keep = rng.choice(len(bn.variables), size=5, replace=False)
        rows.iloc[i, [j for j in range(len(bn.variables)) if j not in keep]] = np.nan
    got = bn.marginals(rows)
    monkeypatch.setattr(engine, "LOCAL_MIN_FLOPS", np.inf)
    ref = bn.marginals(rows)
    for v in bn.variables:
        np.testing.assert_allclose(got[v], ref[v], atol=1e-10)
