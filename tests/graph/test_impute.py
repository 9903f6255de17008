"""Imputation against brute-force enumeration and pgmpy's predict."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from probdl.errors import DataError, InferenceError
from probdl.graph import BayesNet

try:  # tests/graph may or may not be a package
    from .learning.test_em import _joint, _random_net, _sample
except ImportError:
    from learning.test_em import _joint, _random_net, _sample


def _brute_posterior(bn: BayesNet, row: pd.Series):
    """Joint states consistent with the row's observed cells, with their posterior."""
    grid, prob = _joint(bn)
    keep = np.ones(len(grid), bool)
    for c, value in row.items():
        if pd.notna(value):
            keep &= grid[:, bn.variables.index(c)] == bn.states[c].index(value)
    return grid[keep], prob[keep] / prob[keep].sum()


@pytest.fixture
def case():
    truth = _random_net(30)
    rows = _sample(truth, 40, seed=31, missing=0.3, drop=("H",))  # H has no column: summed out
    return truth, rows


def test_posteriors_and_map_per_cell_match_enumeration(case):
    truth, rows = case
    filled, probs = truth.impute(rows)
    assert set(probs) == {c for c in rows if rows[c].isna().any()}
    for i, (_, row) in enumerate(rows.iterrows()):
        grid, post = _brute_posterior(truth, row)
        for c in probs:
            j = truth.variables.index(c)
            expected = np.bincount(grid[:, j], weights=post, minlength=len(truth.states[c]))
            np.testing.assert_allclose(probs[c][i], expected, atol=1e-12)
            if pd.isna(row[c]):
                assert filled.iloc[i][c] == truth.states[c][int(expected.argmax())]
            else:
                assert filled.iloc[i][c] == row[c]
    assert filled.notna().all().all() and list(filled.columns) == list(rows.columns)
    assert filled.index.equals(rows.index)


def test_joint_map_is_the_most_probable_completion(case):
    truth, rows = case
    filled, _ = truth.impute(rows, joint=True)
    for i, (_, row) in enumerate(rows.iterrows()):
        grid, post = _brute_posterior(truth, row)
        best = grid[post.argmax()]
        for c in rows.columns:
            assert filled.iloc[i][c] == truth.states[c][best[truth.variables.index(c)]]


def test_joint_map_agrees_with_pgmpy_predict():
    bn = BayesNet.example("asia")
    rows = _sample(bn, 8, seed=32)
    hidden = ["lung", "either", "tub"]
    visible = rows.drop(columns=hidden)
    filled, _ = bn.impute(rows.assign(**{c: None for c in hidden}), joint=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predicted = bn.to_pgmpy().predict(visible, n_jobs=1)
    for c in hidden:
        assert (filled[c].to_numpy() == predicted[c].astype(str).to_numpy()).all()


def test_multiple_imputations_follow_the_joint_posterior(case):
    truth, rows = case
    row = rows.iloc[[0]].copy()
    row[["X", "Z"]] = None
    draws, _ = truth.impute(pd.concat([row] * 3000, ignore_index=True), n_samples=1, seed=5)
    assert len(draws) == 1
    grid, post = _brute_posterior(truth, row.iloc[0])
    jx, jz = truth.variables.index("X"), truth.variables.index("Z")
    expected = np.zeros((3, 3))
    np.add.at(expected, (grid[:, jx], grid[:, jz]), post)
    drawn = pd.crosstab(draws[0]["X"], draws[0]["Z"]).reindex(
        index=truth.states["X"], columns=truth.states["Z"], fill_value=0).to_numpy() / 3000
    assert np.abs(drawn - expected).max() < 0.035  # > 4 standard errors at n = 3000
    several, _ = truth.impute(rows, n_samples=3, seed=1)
    assert len(several) == 3 and all(d.notna().all().all() for d in several)
    observed = rows.notna()
    for d in several:
        assert (d[observed] == rows[observed]).sum().sum() == observed.sum().sum()


def test_impute_leaves_rows_and_network_untouched(case):
    truth, rows = case
    before = rows.copy()
    truth.impute(rows)
    pd.testing.assert_frame_equal(rows, before)


def test_impossible_row_and_bad_input():
    states = {"A": ["a", "b"], "B": ["a", "b"]}
    bn = BayesNet(states, {"B": ["A"]}, {"A": [0.5, 0.5], "B": [[1.0, 0.0], [0.0, 1.0]]})
    with pytest.raises(InferenceError, match="probability zero"):
        bn.impute(pd.DataFrame({"A": ["a", None], "B": ["b", None]}))
    with pytest.raises(DataError, match="not variables"):
        bn.impute(pd.DataFrame({"C": ["a"]}))
    with pytest.raises(DataError, match="n_samples"):
        bn.impute(pd.DataFrame({"A": [None]}), n_samples=0)
    filled, probs = bn.impute(pd.DataFrame({"A": [None, "b"]}))  # B has no column: summed out
    assert filled["A"].tolist() == ["a", "b"]
    np.testing.assert_allclose(probs["A"], [[0.5, 0.5], [0.0, 1.0]])
