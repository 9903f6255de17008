"""Trees built for one row's evidence (compiled, per row): their junction-tree properties, and
answers against enumeration and against the network's tree, rows routed each way in one call."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probdl.errors import InferenceError
from probdl.graph import BayesNet
from probdl.graph.inference import engine as engine_module
from probdl.graph.inference.queries import soft_array
from tests.graph._graph_helpers import evidence_mask, random_net


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n_vars=st.integers(1, 12), observed=st.floats(0.0, 0.9),
       target=st.booleans())
def test_own_trees_are_junction_trees_of_the_rows_moral_graph(seed, n_vars, observed, target):
    """Every hidden variable in a clique, every family's hidden members together in one, the
    cliques holding a variable connected (running intersection), parents before children,
    a query's target in the root clique."""
    bn = random_net(seed, n_vars=n_vars, max_parents=3)
    rng = np.random.default_rng(seed)
    states, seen = bn.encode(bn.sample(1, seed=seed))
    seen &= rng.random(seen.shape) < observed
    hidden = ~seen
    engine = bn.engine()
    goal = int(np.flatnonzero(hidden[0])[0]) if target and hidden.any() else -1
    cliques, parent, need, cost = engine.own_tree(0, states, hidden, target=goal)
    holding = {v: [c for c, members in enumerate(cliques) if v in members]
               for v in np.flatnonzero(hidden[0])}
    assert all(holding.values())
    assert all(hidden[0, u] for c in cliques for u in c)
    assert all(parent[c] < c for c in range(len(cliques)))
    for v in range(n_vars):
        fam = {u for u in (v, *engine.parents[v]) if hidden[0, u]}
        assert not fam or any(fam <= set(c) for c in cliques)
    for cs in holding.values():  # connected: exactly one clique of cs has its parent outside
        assert sum(parent[c] not in cs for c in cs) == 1
    if goal >= 0:
        assert goal in cliques[0] and parent[0] == -1
    sizes = [np.prod([engine.cards[u] for u in c]) for c in cliques]
    assert cost >= sum(sizes) and need >= sum(sizes)


@pytest.mark.parametrize("regime", ["few hidden", "20% observed"])
def test_rows_routed_each_way_in_one_call_match_enumeration(regime, monkeypatch):
    """Every other row on its own tree, the rest on the network's tree, in one call (soft
    evidence on two variables): every answer matches enumeration."""
    route = engine_module.Engine.route

    def alternate(self, states, hidden):
        need, cost, _ = route(self, states, hidden)
        return need, cost, np.arange(len(need)) % 2 * 2

    monkeypatch.setattr(engine_module.Engine, "route", alternate)
    bn = random_net(7, n_vars=9, max_parents=3, max_card=3)
    rng = np.random.default_rng(1)
    rows = bn.sample(40, seed=3)
    k = len(bn.variables)
    mask = (rng.random(rows.shape) >= 0.2 if regime == "20% observed"
            else np.array([rng.permutation(k) < rng.integers(1, 4) for _ in range(40)]))
    rows = rows.mask(mask)
    states, observed = bn.encode(rows)
    likes = {v: rng.random((40, len(bn.states[v]))) + 0.01 for v in bn.variables[:2]}

    out = bn.engine().run(states, ~observed, soft_array(bn, likes, 40))
    np.testing.assert_array_equal(out["own"], np.arange(40) % 2 == 1)
    cols = bn.engine().columns
    for i in range(len(rows)):
        w = evidence_mask(bn, rows.iloc[i], likes, i)
        assert out["log_z"][i] == pytest.approx(np.log(w.sum()), abs=1e-10)
        for j in range(k):
            ref = w.sum(axis=tuple(a for a in range(k) if a != j)) / w.sum()
            np.testing.assert_allclose(out["post"][i, cols[j]:cols[j + 1]], ref, atol=1e-10)


def test_routing_on_a_bundled_network_keeps_the_answers():
    """insurance at 20% observed, routed as by default (each row on the smaller tree): the
    answers of every row on the network's tree (1e-12), MAP too."""
    bn = BayesNet.example("insurance")
    rows = bn.sample(60, seed=2)
    rows = rows.mask(np.random.default_rng(2).random(rows.shape) >= 0.2)
    states, observed = bn.encode(rows)
    auto = bn.engine().run(states, ~observed)
    best, assign = bn.engine().map(states, ~observed)
    assert auto["own"].any()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine_module, "ROW_TREES", "never")
        shared = bn.engine().run(states, ~observed)
        best_shared, _ = bn.engine().map(states, ~observed)
    assert not shared["own"].any()
    np.testing.assert_allclose(auto["post"], shared["post"], atol=1e-12)
    np.testing.assert_allclose(auto["log_z"], shared["log_z"], atol=1e-10)
    np.testing.assert_allclose(best, best_shared, atol=1e-10)
    full = pd.DataFrame({v: np.asarray(bn.states[v], dtype=object)[assign[:, i]]
                         for i, v in enumerate(bn.variables)})
    np.testing.assert_allclose(bn.log_likelihood(full), best, atol=1e-10)


def test_a_rows_own_tree_over_the_budget_names_its_clique():
    bn = BayesNet.example("munin1")
    rows = bn.sample(1, seed=1)
    rows = rows.mask(np.random.default_rng(1).random(rows.shape) >= 0.2)
    bn.memory_budget = 2**16
    with pytest.raises(InferenceError, match=r"row 0 .*largest clique.*method='sampling'"):
        bn.marginals(rows)


def test_single_queries_on_rows_own_trees_read_the_target_at_the_root():
    """A single query on a row's own tree is only collected, so its target must be read at the
    root clique even where a smaller clique holds it (child: answers were zeros)."""
    bn = BayesNet.example("child")
    rng = np.random.default_rng(9)
    sample = bn.sample(30, seed=9)
    for i in range(30):
        target, *obs = rng.choice(bn.variables, size=6, replace=False)
        evidence = {v: sample.iloc[i][v] for v in obs}
        answers = {}
        for mode in ("never", "always"):
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(engine_module, "ROW_TREES", mode)
                answers[mode] = bn.query([target], evidence)[target].to_numpy()
        np.testing.assert_allclose(answers["always"], answers["never"], atol=1e-12)


def test_kept_own_trees_answer_like_trees_built_anew():
    """EM's calls on the same rows with other CPTs: trees kept from the first call (``keep``)
    give the counts and log P(e) that building them anew gives, for every CPT set."""
    bn = BayesNet.example("child")
    states, seen = bn.encode(bn.sample(300, seed=3))
    hidden = ~seen | (np.random.default_rng(3).random(seen.shape) < 0.5)
    engine, keep = bn.engine(), {}
    rng = np.random.default_rng(4)
    for _ in range(3):
        cpts = [rng.dirichlet(np.ones(s[0]), size=int(np.prod(s[1:]))).T.reshape(s)
                for s in engine.shapes]
        other = engine.with_cpts(cpts)
        kept = other.run(states, hidden, want="counts", keep=keep)
        anew = other.run(states, hidden, want="counts")
        assert kept["own"].any() and (kept["own"] == anew["own"]).all()
        np.testing.assert_array_equal(kept["log_z"], anew["log_z"])
        np.testing.assert_array_equal(kept["counts"], anew["counts"])


def test_threads_sharing_an_engine_get_their_own_rows_answers():
    """EM's n_jobs runs one engine from several threads at once: a call must keep nothing on
    the engine (a per-call attribute is what two threads would overwrite for each other), and
    blocks run in threads answer as they do one after the other, which tree each row used
    included."""
    from concurrent.futures import ThreadPoolExecutor

    bn = BayesNet.example("insurance")
    rows = bn.sample(120, seed=5)
    states, seen = bn.encode(rows.mask(np.random.default_rng(5).random(rows.shape) >= 0.3))
    engine = bn.engine()
    before = dict(vars(engine))
    blocks = [slice(lo, lo + 30) for lo in range(0, 120, 30)]
    alone = [engine.run(states[b], ~seen[b]) for b in blocks]
    assert vars(engine).keys() == before.keys()
    assert all(vars(engine)[k] is v for k, v in before.items())
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda b: engine.run(states[b], ~seen[b]), blocks))
    assert any(out["own"].any() and not out["own"].all() for out in alone)
    for a, t in zip(alone, together, strict=True):
        for key in ("own", "log_z", "post"):
            np.testing.assert_array_equal(t[key], a[key])
