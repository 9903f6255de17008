"""EM and complete-data estimators against pgmpy's estimators and brute-force enumeration."""

from __future__ import annotations

import ast
import itertools
import re
import warnings

import numpy as np
import pandas as pd
import pytest

from probdl.errors import DataError
from probdl.graph import BayesNet
from probdl.graph.inference.sampling import draw
from probdl.graph.learning.counts import NetSpec, decode_rows, unique_rows

# A small network with a hidden cause H: every quantity can be enumerated over 108 joint states.
STATES = {"H": ["h0", "h1"], "A": ["a0", "a1"], "X": ["x0", "x1", "x2"],
          "Y": ["y0", "y1", "y2"], "Z": ["z0", "z1", "z2"]}
PARENTS = {"H": [], "A": [], "X": ["H", "A"], "Y": ["H"], "Z": ["H", "Y"]}


def _random_net(seed: int, states=STATES, parents=PARENTS, concentration=1.0) -> BayesNet:
    rng = np.random.default_rng(seed)
    cpts = {}
    for v, ss in states.items():
        shape = [len(states[p]) for p in parents[v]]
        cpts[v] = np.moveaxis(rng.dirichlet(np.full(len(ss), concentration), size=shape), -1, 0)
    return BayesNet(states, parents, cpts)


def _sample(bn: BayesNet, n: int, seed: int, missing: float = 0.0, drop=()) -> pd.DataFrame:
    spec = NetSpec.from_network(bn)
    engine = bn.engine()
    codes, _ = draw(engine.cards, engine.parents, [bn.cpd(v) for v in bn.variables], n,
                    np.random.default_rng(seed))
    codes[np.random.default_rng(seed + 1).random(codes.shape) < missing] = -1
    return decode_rows(codes, spec, [v for v in bn.variables if v not in drop])


def _joint(bn: BayesNet):
    """Every joint state (as codes) and its probability, by enumeration."""
    names = bn.variables
    grid = np.array(list(itertools.product(*[range(len(bn.states[v])) for v in names])))
    prob = np.ones(len(grid))
    for j, v in enumerate(names):
        index = (grid[:, j], *[grid[:, names.index(p)] for p in bn.parents(v)])
        prob *= bn.cpd(v)[index]
    return grid, prob


def _brute_estep(bn: BayesNet, rows: pd.DataFrame):
    """Expected family counts and log-likelihood by summing over consistent joint states."""
    names = bn.variables
    grid, prob = _joint(bn)
    counts = {v: np.zeros(bn.cpd(v).shape) for v in names}
    loglik = 0.0
    for _, row in rows.iterrows():
        keep = np.ones(len(grid), bool)
        for c, value in row.items():
            if pd.notna(value):
                keep &= grid[:, names.index(c)] == bn.states[c].index(value)
        p = prob[keep]
        loglik += np.log(p.sum())
        for v in names:
            index = tuple(grid[keep][:, names.index(u)] for u in [v, *bn.parents(v)])
            np.add.at(counts[v], index, p / p.sum())
    return counts, loglik


def _m_step(counts, alpha):
    return {v: (c + alpha) / (c + alpha).sum(axis=0, keepdims=True) for v, c in counts.items()}


def _table(cpd, bn: BayesNet) -> np.ndarray:
    """A pgmpy TabularCPD as (k_var, k_parent1, ...) in ``bn.parents`` order."""
    v = cpd.variable
    values = cpd.get_values().reshape(cpd.cardinality)
    for u in cpd.variables:
        assert list(cpd.state_names[u]) == bn.states[u]
    return np.transpose(values, [cpd.variables.index(u) for u in [v, *bn.parents(v)]])


def test_em_on_complete_rows_equals_mle_and_pgmpy():
    from pgmpy.estimators import MaximumLikelihoodEstimator

    truth = _random_net(0, concentration=3.0)
    rows = _sample(truth, 3000, seed=1)
    em = truth.fit(rows, prior=0.0, max_iter=20)
    mle = truth.fit(rows, method="mle")
    model = truth.to_pgmpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = MaximumLikelihoodEstimator(model, rows).get_parameters()
    for cpd in reference:
        v = cpd.variable
        np.testing.assert_allclose(mle.cpd(v), _table(cpd, truth), atol=1e-12)
        np.testing.assert_allclose(em.cpd(v), mle.cpd(v), atol=1e-10)
    assert em.converged_ and em.n_iter_ <= 3
    np.testing.assert_allclose(em.history_[-1], mle.log_likelihood_, rtol=1e-12)


@pytest.mark.parametrize("prior_type", ["dirichlet", "bdeu"])
def test_bayes_matches_pgmpy_bayesian_estimator(prior_type):
    from pgmpy.estimators import BayesianEstimator

    truth = _random_net(2)
    rows = _sample(truth, 400, seed=3)
    fitted = truth.fit(rows, method="bayes", prior=2.0, prior_type=prior_type)
    em = truth.fit(rows, prior=2.0, prior_type=prior_type, max_iter=5)
    kwargs = ({"prior_type": "dirichlet", "pseudo_counts": 2.0} if prior_type == "dirichlet"
              else {"prior_type": "BDeu", "equivalent_sample_size": 2.0})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = BayesianEstimator(truth.to_pgmpy(), rows).get_parameters(**kwargs)
    for cpd in reference:
        v = cpd.variable
        np.testing.assert_allclose(fitted.cpd(v), _table(cpd, truth), atol=1e-12)
        np.testing.assert_allclose(em.cpd(v), fitted.cpd(v), atol=1e-10)


@pytest.mark.parametrize("layout", ["holes at random", "latent only", "mixed"])
def test_em_with_latent_and_holes_matches_brute_force_em(layout):
    truth = _random_net(4)
    holed = _sample(truth, 60, seed=5, missing=0.25, drop=("H",))
    latent_only = _sample(truth, 300, seed=6, drop=("H",))
    rows = {"holes at random": holed, "latent only": latent_only,
            "mixed": pd.concat([holed, latent_only], ignore_index=True)}[layout]
    start = _random_net(6)
    fitted = truth.fit(rows, latent={"H": 2}, init=start, prior=0.5, max_iter=5, tol=0.0)
    current = start
    history = []
    for _ in range(5):
        counts, loglik = _brute_estep(current, rows)
        cpts = {v: current.cpd(v) for v in current.variables}
        history.append(loglik + 0.5 * sum(np.log(t).sum() for t in cpts.values()))
        current = BayesNet(STATES, PARENTS, _m_step(counts, 0.5))
    for v in truth.variables:
        np.testing.assert_allclose(fitted.cpd(v), current.cpd(v), atol=1e-10)
    np.testing.assert_allclose(fitted.history_[:5], history, rtol=1e-12)


def test_log_likelihood_never_decreases_child_with_latent():
    truth = BayesNet.example("child")
    rows = _sample(truth, 400, seed=7, missing=0.2, drop=("LungParench",))
    fitted = truth.fit(rows, latent={"LungParench": 3}, prior=1e-3, max_iter=25, tol=0.0)
    h = fitted.history_
    assert len(h) == 26 and np.isfinite(h).all()
    assert (np.diff(h) >= -1e-9 * np.abs(h[:-1])).all()
    assert h[-1] > h[0] + 100  # it really climbed from the random latent start


def test_fit_leaves_the_original_untouched_and_latent_start_is_not_symmetric():
    truth = _random_net(8)
    before = {v: truth.cpd(v).copy() for v in truth.variables}
    rows = _sample(truth, 300, seed=9, drop=("H",))
    fitted = truth.fit(rows, latent={"H": ["h0", "h1"]}, max_iter=30)
    assert fitted is not truth and fitted.states["H"] == ["h0", "h1"]
    for v in truth.variables:
        np.testing.assert_array_equal(truth.cpd(v), before[v])
    assert not hasattr(truth, "history_")
    # A symmetric start would leave Y | H identical for both latent states forever.
    assert np.abs(fitted.cpd("Y")[:, 0] - fitted.cpd("Y")[:, 1]).max() > 0.05
    # another number of states is another structure, built as such, never a relabelling
    wider = BayesNet.from_structure(truth.graph.edges, {**truth.states, "H": ["0", "1", "2"]})
    three = wider.fit(rows, latent={"H": 3}, max_iter=3)
    assert three.states["H"] == ["0", "1", "2"] and three.cpd("Y").shape == (3, 3)


def test_restarts_keep_the_best_run():
    truth = _random_net(10)
    rows = _sample(truth, 200, seed=11, missing=0.1, drop=("H",))
    one = truth.fit(rows, latent={"H": 2}, max_iter=15, seed=3)
    best = truth.fit(rows, latent={"H": 2}, max_iter=15, seed=3, n_restarts=4)
    assert best.history_[-1] >= one.history_[-1]
    again = truth.fit(rows, latent={"H": 2}, max_iter=15, seed=3, n_restarts=4)
    np.testing.assert_array_equal(again.history_, best.history_)


def test_repeated_rows_count_with_their_weight():
    truth = _random_net(12)
    rows = _sample(truth, 80, seed=13, missing=0.2, drop=("H",))
    start = _random_net(14)
    once = truth.fit(rows, latent={"H": 2}, init=start, prior=0.0, max_iter=6, tol=0.0)
    twice = truth.fit(pd.concat([rows, rows.iloc[::-1]]), latent={"H": 2}, init=start,
                      prior=0.0, max_iter=6, tol=0.0)
    np.testing.assert_allclose(twice.history_, 2 * once.history_, rtol=1e-12)
    for v in truth.variables:
        np.testing.assert_allclose(twice.cpd(v), once.cpd(v), atol=1e-12)
    unique, weight = unique_rows(np.array([[0, 1], [0, 1], [1, -1]]))
    assert unique.tolist() == [[0, 1], [1, -1]] and weight.tolist() == [2.0, 1.0]


@pytest.mark.parametrize(("change", "kwargs", "message"), [
    (lambda r: r.assign(W="x"), {}, "not variables of the network"),
    (lambda r: r, {"latent": {"Q": 2}}, "not a variable of the network's structure"),
    (lambda r: r.assign(H="h0"), {"latent": {"H": 2}}, "have observed values in the data"),
    (lambda r: r.assign(X=r["X"].replace("x2", "x9")), {"latent": {"H": 2}}, "x9"),
    (lambda r: r, {}, r"no column in the data; declare them hidden with latent=\{'H': 2\}"),
    (lambda r: r.iloc[:0], {"latent": {"H": 2}}, "empty"),
    (lambda r: r, {"latent": {"H": 1}}, "never relabels"),
    (lambda r: r, {"latent": {"H": 3}}, r"the states \['h0', 'h1'\].*never relabels"),
    (lambda r: r, {"latent": {"H": ["lo", "hi"]}}, "gives other labels"),
    (lambda r: r, {"latent": {"H": "two"}}, "give its number of states"),
    (lambda r: r, {"latent": {"H": 2}, "method": "mle"}, "needs complete rows"),
    (lambda r: r, {"latent": {"H": 2}, "method": "magic"}, "method must be"),
    (lambda r: r, {"latent": {"H": 2}, "prior": -1.0}, "prior must be"),
    (lambda r: r, {"latent": {"H": 2}, "n_jobs": 0}, r"n_jobs must be .* -1 for every core"),
    (lambda r: r, {"latent": {"H": 2}, "n_jobs": 1.5}, "n_jobs must be"),
])
def test_bad_input_raises_data_error(change, kwargs, message):
    truth = _random_net(15)
    rows = _sample(truth, 50, seed=16, drop=("H",))
    with pytest.raises(DataError, match=message):
        truth.fit(change(rows), **kwargs)


def test_a_column_entirely_missing_is_hidden_with_its_known_states():
    truth = _random_net(24)
    rows = _sample(truth, 300, seed=25, missing=0.1).assign(H=np.nan)  # present, all NaN
    fitted = truth.fit(rows, max_iter=30, seed=1)
    assert fitted.states == truth.states  # never "0"/"1"
    # the same fit as declaring the absent variable latent (with its own count)
    declared = truth.fit(rows.drop(columns="H"), latent={"H": 2}, max_iter=30, seed=1)
    np.testing.assert_allclose(fitted.history_, declared.history_, rtol=1e-12)
    # declaring the hidden column latent as well is consistent, not a contradiction
    both = truth.fit(rows, latent={"H": 2}, max_iter=30, seed=1)
    np.testing.assert_allclose(both.history_, declared.history_, rtol=1e-12)
    # the hidden variable's families start asymmetric, as a latent one's do (from a symmetric
    # start the columns of Y | H would stay exactly equal)
    assert np.abs(fitted.cpd("Y")[:, 0] - fitted.cpd("Y")[:, 1]).max() > 1e-3


def test_the_advice_of_one_message_is_accepted_by_the_next_call():
    truth = _random_net(26)
    rows = _sample(truth, 100, seed=27, drop=("H",))
    with pytest.raises(DataError, match=r"latent=\{'H': 2\}") as err:
        truth.fit(rows)
    advice = ast.literal_eval(re.search(r"latent=(\{[^}]*\})", str(err.value)).group(1))
    assert truth.fit(rows, latent=advice, max_iter=2).states["H"] == ["h0", "h1"]


def test_unknown_labels_are_listed_with_their_columns():
    truth = _random_net(17)
    rows = _sample(truth, 50, seed=18, drop=("H",)).astype(object)
    rows.loc[0, "X"] = "bogus"
    rows.loc[1, "Z"] = 7
    with pytest.raises(DataError) as err:
        truth.fit(rows, latent={"H": 2})
    assert "X: ['bogus']" in str(err.value) and "Z: ['7']" in str(err.value)


def test_zero_prior_without_support_names_the_family():
    truth = _random_net(19)
    rows = _sample(truth, 200, seed=20, drop=("H",))
    rows = rows[rows["A"] == "a0"]  # X | H, A never sees A = a1
    with pytest.raises(DataError, match=r"family X \| H, A .*A=a1"):
        truth.fit(rows, latent={"H": 2}, prior=0.0, max_iter=3)
    fitted = truth.fit(rows, latent={"H": 2}, prior=1.0, max_iter=3)  # the prior fills it
    np.testing.assert_allclose(fitted.cpd("X")[:, :, 1], 1 / 3)


def test_numeric_columns_match_string_labels():
    states = {"A": ["0", "1"], "B": ["1", "2", "3"]}
    truth = BayesNet(states, {"B": ["A"]},
                     {"A": [0.3, 0.7], "B": [[0.2, 0.5], [0.3, 0.25], [0.5, 0.25]]})
    rows = _sample(truth, 200, seed=21, missing=0.2)
    numeric = rows.apply(pd.to_numeric)  # floats with NaN: 1.0 must read as "1"
    assert numeric["B"].dtype == float
    a = truth.fit(rows, max_iter=5)
    b = truth.fit(numeric, max_iter=5)
    np.testing.assert_array_equal(a.history_, b.history_)


def test_streaming_blocks_give_the_same_fit_and_posteriors():
    truth = _random_net(22)
    rows = _sample(truth, 150, seed=23, missing=0.3, drop=("H",))
    whole = truth.fit(rows, latent={"H": 2}, max_iter=4, tol=0.0)
    blocks = truth.fit(rows, latent={"H": 2}, max_iter=4, tol=0.0, batch_size=7)
    np.testing.assert_allclose(blocks.history_, whole.history_, rtol=1e-12)
    for v in truth.variables:
        np.testing.assert_allclose(blocks.cpd(v), whole.cpd(v), atol=1e-12)
    _, probs = truth.impute(rows)
    _, small = truth.impute(rows, batch_size=5)
    for c in probs:
        np.testing.assert_allclose(small[c], probs[c], atol=1e-12)


@pytest.mark.parametrize("n_jobs", [2, 3, -1])
def test_threads_give_the_one_thread_fit(n_jobs):
    # Blocks E-stepped at once must each write their own counts: a shared output, or the
    # engine keeping per-call state, would lose or mix rows and show here. insurance with 80%
    # of cells missing sends about two rows in three to trees of their own (kept per block for
    # the fit) and the rest to the network's tree, so both paths run in threads.
    bn = BayesNet.example("insurance")
    rows = bn.sample(150, seed=3)
    rows = rows.mask(np.random.default_rng(4).random(rows.shape) < 0.8)
    # the same 4 blocks of 40 rows on one thread and on several: the same fit bit for bit
    one = bn.fit(rows, max_iter=3, tol=0.0, batch_size=40)
    many = bn.fit(rows, max_iter=3, tol=0.0, n_jobs=n_jobs, batch_size=40)
    np.testing.assert_array_equal(many.history_, one.history_)
    for v in bn.variables:
        np.testing.assert_array_equal(many.cpd(v), one.cpd(v))
    whole = bn.fit(rows, max_iter=3, tol=0.0)  # one block: other sums, the same fit to rounding
    np.testing.assert_allclose(many.history_, whole.history_, rtol=1e-12)


def test_a_start_with_zero_entries_is_not_taken_for_convergence():
    # init=bn with a bundled network (zero CPT entries) gives -inf as the first objective
    # under a prior; the relative stopping test read inf <= inf as converged after one step.
    bn = BayesNet.example("alarm")
    rows = bn.sample(600, seed=0)
    rows[["HR", "CO", "BP"]] = np.nan
    assert any((bn.cpd(v) == 0).any() for v in bn.variables)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nor a divide-by-zero warning from the prior term
        fitted = bn.fit(rows, prior=1.0, init=bn, max_iter=8, tol=1e-6)
    assert fitted.history_[0] == -np.inf and np.isfinite(fitted.history_[1:]).all()
    assert fitted.n_iter_ > 1 and np.all(np.diff(fitted.history_[1:]) >= -1e-9)
