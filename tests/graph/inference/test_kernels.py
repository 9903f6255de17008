"""The junction-tree engine against brute-force enumeration: both evidence regimes, soft
evidence, logarithms, extreme entries, MAP ties, expected counts, exact posterior draws."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probdl.errors import CPTError, DataError, InferenceError, ModelError
from probdl.graph import BayesNet
from probdl.graph.inference import engine as engine_module
from probdl.graph.inference.engine import Engine
from probdl.graph.inference.junction import HEURISTICS, build
from probdl.graph.inference.torch_engine import TorchEngine
from tests.graph._graph_helpers import evidence_mask, joint_table, random_net

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _hide(bn, n, rng, regime):
    rows = bn.sample(n, seed=int(rng.integers(1 << 30)))
    k = rows.shape[1]
    if regime == "few hidden":
        mask = np.zeros(rows.shape, dtype=bool)
        for i in range(n):
            mask[i, rng.choice(k, size=int(rng.integers(1, min(3, k) + 1)), replace=False)] = True
    else:  # "20% observed"
        mask = rng.random(rows.shape) >= 0.2
    return rows.mask(mask)


def _force_logs(monkeypatch):
    """Every row through the logarithmic passes (as rows near underflow go)."""
    call = Engine._call

    def logs(self, states, hidden, soft, weights, factor_on, lg, *rest):
        return call(self, states, hidden, soft, weights, factor_on, True, *rest)

    monkeypatch.setattr(Engine, "_call", logs)


@SETTINGS
@given(seed=st.integers(0, 10_000), n_vars=st.integers(1, 7),
       regime=st.sampled_from(["few hidden", "20% observed"]), soft=st.booleans(),
       logs=st.booleans(), ties=st.booleans(), own_tree=st.booleans())
def test_answers_match_enumeration(seed, n_vars, regime, soft, logs, ties, own_tree):
    """own_tree: every row on a tree triangulated for its own evidence (as the rows whose
    tables on the network's tree would be huge)."""
    bn = random_net(seed, n_vars=n_vars, max_parents=3, zeros=ties)
    if ties:  # equal entries make MAP ties: any maximal state is right, the value must be
        bn = BayesNet(bn.states, {v: bn.parents(v) for v in bn.variables},
                      {v: np.round(bn.cpd(v) * 2) / np.round(bn.cpd(v) * 2).sum(0)
                       if (np.round(bn.cpd(v) * 2).sum(0) > 0).all() else bn.cpd(v)
                       for v in bn.variables})
    rng = np.random.default_rng(seed)
    rows = _hide(bn, 5, rng, regime)
    likes = ({v: rng.random((5, len(bn.states[v]))) + 0.01 for v in bn.variables[:2]}
             if soft else None)
    with pytest.MonkeyPatch.context() as patch:
        if logs:
            _force_logs(patch)
        if own_tree:
            patch.setattr(engine_module, "ROW_TREES", "always")
        out = bn.engine().run(*_codes(bn, rows), None if likes is None else _soft(bn, likes))
        best, assign = bn.engine().map(*_codes(bn, rows))
    cols = bn.engine().columns
    for i in range(len(rows)):
        w = evidence_mask(bn, rows.iloc[i], likes, i)
        z = w.sum()
        if z == 0:
            assert out["log_z"][i] == -np.inf
            continue
        assert out["log_z"][i] == pytest.approx(np.log(z), abs=1e-10)
        for j in range(n_vars):
            ref = w.sum(axis=tuple(a for a in range(n_vars) if a != j)) / z
            np.testing.assert_allclose(out["post"][i, cols[j]:cols[j + 1]], ref, atol=1e-10)
        plain = evidence_mask(bn, rows.iloc[i])
        assert best[i] == pytest.approx(np.log(plain.max()), abs=1e-10)
        assert plain[tuple(assign[i])] == pytest.approx(plain.max(), rel=1e-10)


def _codes(bn, rows):
    states, observed = bn.encode(rows)
    return states, ~observed


def _soft(bn, likes):
    from probdl.graph.inference.queries import soft_array
    return soft_array(bn, likes, len(next(iter(likes.values()))))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000))
def test_extreme_entries_stay_exact(seed):
    """CPT entries down to 1e-300: products underflow float64 in probability space; such rows
    are found and answered in logarithms, matching enumeration in logarithms."""
    rng = np.random.default_rng(seed)
    base = random_net(seed, n_vars=int(rng.integers(2, 6)), max_parents=2, max_card=3)
    cpts = {}
    for v in base.variables:
        c = 10.0 ** -rng.uniform(0, 300, size=base.cpd(v).shape)
        c = np.where(rng.random(c.shape) < 0.5, rng.random(c.shape), c)
        cpts[v] = c / c.sum(0, keepdims=True)
    bn = BayesNet(base.states, {v: base.parents(v) for v in base.variables}, cpts)
    rows = bn.sample(10, seed=seed).mask(rng.random((10, len(bn.variables))) < 0.6)
    out = bn.engine().run(*_codes(bn, rows))
    vs = bn.variables
    logs = np.zeros([len(bn.states[v]) for v in vs])
    with np.errstate(divide="ignore"):
        for config in itertools.product(*[range(len(bn.states[v])) for v in vs]):
            logs[config] = sum(np.log(bn.cpd(v)[(config[j], *[config[vs.index(p)]
                                                             for p in bn.parents(v)])])
                               for j, v in enumerate(vs))
    cols = bn.engine().columns
    for i in range(len(rows)):
        lw = logs.copy()
        for j, v in enumerate(vs):
            if isinstance(rows.iloc[i][v], str):
                index = [slice(None)] * len(vs)
                index[j] = [k for k, s in enumerate(bn.states[v]) if s != rows.iloc[i][v]]
                lw[tuple(index)] = -np.inf
        top = lw.max()
        if top == -np.inf:
            assert out["log_z"][i] == -np.inf
            continue
        ref_z = top + np.log(np.exp(lw - top).sum())
        assert out["log_z"][i] == pytest.approx(ref_z, rel=1e-9, abs=1e-9)
        p = np.exp(lw - ref_z)
        for j in range(len(vs)):
            ref = p.sum(axis=tuple(a for a in range(len(vs)) if a != j))
            np.testing.assert_allclose(out["post"][i, cols[j]:cols[j + 1]], ref, atol=1e-9)


def test_evidence_of_probability_1e_330_is_exact():
    """P(A=a0) = 1e-240, P(B=b1 | a0) = 1e-90, P(D=d1 | b0) = 1e-100: the evidence (D = d1, A
    softly a0) has probability about 1e-330, below float64's range."""
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
    got = bn.marginals(rows, soft_evidence={"A": np.eye(k)[0]})
    np.testing.assert_allclose(got["B"][0][:2], [1e-10 / (1 + 1e-10), 1 / (1 + 1e-10)],
                               rtol=1e-12)
    one = bn.query(["B"], {"D": "d1"}, soft_evidence={"A": np.eye(k)[0]})["B"].to_numpy()
    np.testing.assert_allclose(one, got["B"][0], rtol=1e-12)


@pytest.mark.parametrize("logs, own_tree", [(False, False), (True, False), (False, True)])
def test_expected_counts_match_enumeration(logs, own_tree, monkeypatch):
    if logs:
        _force_logs(monkeypatch)
    if own_tree:
        monkeypatch.setattr(engine_module, "ROW_TREES", "always")
    bn = random_net(11, n_vars=6, max_parents=3)
    rows = _hide(bn, 12, np.random.default_rng(3), "20% observed")
    weights = np.random.default_rng(4).random(12)
    engine = bn.engine()
    counts = engine.unflatten(engine.run(*_codes(bn, rows), want="counts",
                                         weights=weights)["counts"])
    vs = bn.variables
    for j, v in enumerate(vs):
        fam = [vs.index(u) for u in (v, *bn.parents(v))]
        expected = np.zeros(bn.cpd(v).shape)
        for i in range(12):
            w = evidence_mask(bn, rows.iloc[i])
            marg = (w / w.sum()).sum(axis=tuple(a for a in range(len(vs)) if a not in fam))
            expected += weights[i] * np.transpose(marg, np.argsort(np.argsort(fam)))
        np.testing.assert_allclose(counts[j], expected, atol=1e-10)


@pytest.mark.parametrize("own_tree", [False, True])
def test_posterior_draws_follow_the_joint_posterior(own_tree, monkeypatch):
    if own_tree:
        monkeypatch.setattr(engine_module, "ROW_TREES", "always")
    bn = random_net(5, n_vars=5, max_parents=2)
    row = bn.sample(1, seed=1)
    row.iloc[0, [0, 2, 3]] = np.nan
    rows = pd.concat([row] * (20_000 if not own_tree else 4_000), ignore_index=True)
    draws = bn.engine().sample(*_codes(bn, rows), np.random.default_rng(0))
    w = evidence_mask(bn, row.iloc[0])
    w = w / w.sum()
    freq = np.zeros(w.shape)
    np.add.at(freq, tuple(draws.T), 1)
    assert np.abs(freq / len(draws) - w).max() < (0.015 if not own_tree else 0.035)  # 4 s.e.


def test_junction_tree_keeps_the_smallest_heuristic_and_every_family():
    bn = BayesNet.example("insurance")
    cards = [len(bn.states[v]) for v in bn.variables]
    parents = [[bn.variables.index(p) for p in bn.parents(v)] for v in bn.variables]
    tree = build(cards, parents)
    assert tree.total_size == min(build(cards, parents, [h]).total_size for h in HEURISTICS)
    for v, c in enumerate(tree.family_home):
        assert {v, *parents[v]} <= set(tree.cliques[c])
    for c, p in enumerate(tree.parent):  # running intersection: parents listed first
        assert p < c
    assert joint_table(random_net(1)).sum() == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["sachs", "hepar2"])
def test_marginals_and_query_agree_on_rounded_networks(name):
    """bnlearn rounds CPT entries (columns sum to 1 +- 1e-7); renormalized on load, the pruned
    single query and the all-marginals pass answer the same distribution."""
    bn = BayesNet.example(name)
    row = bn.sample(1, seed=2).iloc[0]
    evidence = {v: row[v] for v in bn.variables[::3]}
    frame = pd.DataFrame([{v: evidence.get(v, np.nan) for v in bn.variables}])
    post = bn.marginals(frame)
    for t in [v for v in bn.variables if v not in evidence][:6]:
        np.testing.assert_allclose(bn.query([t], evidence)[t].to_numpy(), post[t][0],
                                   atol=1e-12)


def test_torch_engine_matches_the_compiled_engine_on_cpu_tensors():
    bn = BayesNet.example("alarm")
    rows = bn.sample(40, seed=1).mask(np.random.default_rng(0).random((40, 37)) < 0.5)
    likes = {"HR": np.random.default_rng(1).random((40, 3)) + 0.1}
    soft = _soft(bn, likes)
    want = bn.engine().run(*_codes(bn, rows), soft)
    got = TorchEngine(bn.engine(), "cpu").run(*_codes(bn, rows), soft)
    np.testing.assert_allclose(got["log_z"], want["log_z"], atol=1e-10)
    np.testing.assert_allclose(got["post"], want["post"], atol=1e-12)


def test_memory_errors_name_the_clique_and_sampling_answers():
    bn = BayesNet.example("alarm")
    rows = bn.sample(20, seed=3).mask(np.random.default_rng(2).random((20, 37)) < 0.5)
    exact = bn.marginals(rows)
    bn.memory_budget = 4096
    with pytest.raises(InferenceError, match=r"largest clique.*method='sampling'"):
        bn.marginals(rows)
    assert set(bn.marginals(rows.iloc[:2], method="sampling", n=50)) == set(exact)
    with pytest.raises(InferenceError, match="unknown method"):
        bn.marginals(rows, method="magic")
    small = random_net(8, n_vars=6)
    rows = _hide(small, 6, np.random.default_rng(5), "20% observed")
    exact = small.marginals(rows)
    approx = small.marginals(rows, method="sampling", n=20_000, seed=1)
    for v in small.variables:
        assert np.abs(approx[v] - exact[v]).max() < 0.03


def test_cpt_columns_far_from_one_name_variable_and_column():
    states = {"A": ["a0", "a1"], "B": ["b0", "b1"]}
    bad = np.array([[0.5, 0.2], [0.5, 0.7]])
    with pytest.raises(CPTError, match=r"'B': column \(1,\) \(A=a1\) sums to 0.9") as err:
        BayesNet(states, {"B": ["A"]}, {"A": [0.5, 0.5], "B": bad})
    assert isinstance(err.value, DataError) and isinstance(err.value, ModelError)
    near = np.array([[0.5, 0.3 + 4e-7], [0.5, 0.7]])
    fixed = BayesNet(states, {"B": ["A"]}, {"A": [0.5, 0.5], "B": near}).cpd("B")
    np.testing.assert_allclose(fixed.sum(0), 1.0, atol=1e-15)


def test_munin1_rows_observing_a_fifth_run_on_their_own_trees():
    """munin1 at 20% observed: most rows' tables on the network's tree exceed the 2 GiB default
    budget; on trees triangulated for their evidence they fit, and agree with the big tree."""
    bn = BayesNet.example("munin1")
    rows = bn.sample(2, seed=1)
    rows = rows.mask(np.random.default_rng(1).random(rows.shape) >= 0.2)
    states, observed = bn.encode(rows)
    need, _, route = bn.engine().route(states, ~observed)
    assert (route == 1).all()
    for r in range(2):  # their own trees are far smaller than the network's
        assert bn.engine().own_tree(r, states, ~observed)[2] < need[r] / 10
    own = bn.marginals(rows)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine_module, "ROW_TREES", "never")
        bn.memory_budget = 8 * 2**30
        whole = bn.engine().run(states[:1], ~observed[:1])
    cols = bn.engine().columns
    for j, v in enumerate(bn.variables):
        np.testing.assert_allclose(own[v][0], whole["post"][0, cols[j]:cols[j + 1]], atol=1e-10)


def test_single_queries_on_a_rows_own_tree_match_the_networks_tree():
    """A query's barren variables and fully observed families all land in one clique of the
    row's own tree (over a hundred fixed members on munin1): answers must not change."""
    bn = BayesNet.example("munin1")
    row = bn.sample(1, seed=4).iloc[0]
    rng = np.random.default_rng(4)
    evidence = {v: row[v] for v in rng.choice(bn.variables, size=5, replace=False)}
    target = next(v for v in bn.variables if v not in evidence)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine_module, "ROW_TREES", "always")
        own = bn.query([target], evidence)[target].to_numpy()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine_module, "ROW_TREES", "never")
        shared = bn.query([target], evidence)[target].to_numpy()
    np.testing.assert_allclose(own, shared, atol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_single_queries_rooted_at_their_target_match_enumeration(seed, monkeypatch):
    """A query on a row's own tree is rooted at its target's clique and only collected."""
    monkeypatch.setattr(engine_module, "ROW_TREES", "always")
    bn = random_net(seed, n_vars=7, max_parents=3)
    rng = np.random.default_rng(seed)
    row = bn.sample(1, seed=seed).iloc[0]
    vs = bn.variables
    evidence = {v: row[v] for v in rng.choice(vs, size=2, replace=False)}
    w = evidence_mask(bn, pd.Series(evidence))
    for j, t in enumerate(vs):
        if t in evidence:
            continue
        ref = w.sum(axis=tuple(a for a in range(len(vs)) if a != j))
        np.testing.assert_allclose(bn.query([t], evidence)[t].to_numpy(), ref / ref.sum(),
                                   atol=1e-12)
