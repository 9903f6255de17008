"""Structure learning: a DAG from complete rows by pgmpy's hill-climb search, as a ``BayesNet``.

    from probdl.graph import BayesNet, learn_structure
    rows = BayesNet.example("asia").sample(2000, seed=0)
    bn = learn_structure(rows, scoring="bic")          # uniform CPTs, structure learned
    fitted = bn.fit(rows, method="bayes", prior=1.0)   # then its CPTs

The search is pgmpy's ``HillClimbSearch`` (greedy edge additions, deletions and reversals with a
tabu list) scored by BIC or BDeu; probdl adds the checks on the rows and hands back a network
whose states are the labels seen in each column.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import pandas as pd

from probdl.errors import DataError

__all__ = ["learn_structure"]

_SCORES = {"bic": "bic-d", "bdeu": "bdeu", "k2": "k2"}


def learn_structure(
    rows: pd.DataFrame,
    scoring: str = "bic",
    max_indegree: int | None = None,
    equivalent_sample_size: float = 10.0,
    forbidden_edges: Iterable[tuple[str, str]] = (),
    required_edges: Iterable[tuple[str, str]] = (),
    max_iter: int = 1_000_000,
    progress: bool = False,
) -> Any:
    """Learn a DAG over the columns of ``rows``; returns a ``BayesNet`` with uniform CPTs.

    Parameters
    ----------
    rows : pandas.DataFrame
        Complete rows (no missing cells), one column per variable, states as labels.
    scoring : {"bic", "bdeu", "k2"}
        The score hill climbing maximizes; BDeu uses ``equivalent_sample_size``.
    max_indegree : int, optional
        At most this many parents per variable.
    forbidden_edges, required_edges : iterable of (parent, child)
        Background knowledge passed to the search.
    max_iter : int
        At most this many search moves.
    progress : bool
        Show pgmpy's progress bar.

    Returns
    -------
    BayesNet
        The learned edges, every column as a variable with its observed labels (sorted) as
        states, uniform CPTs: call ``fit`` next.

    Raises
    ------
    DataError
        Not a frame, no rows, fewer than two columns, missing cells, an unknown score.
    """
    from probdl.graph.network import BayesNet

    if scoring not in _SCORES:
        raise DataError(f"scoring must be one of {sorted(_SCORES)}, got {scoring!r}")
    if not isinstance(rows, pd.DataFrame) or len(rows) == 0:
        raise DataError("rows must be a non-empty pandas.DataFrame of state labels")
    if rows.shape[1] < 2:
        raise DataError(f"structure learning needs at least two columns, got {list(rows.columns)}")
    holes = rows.isna().sum()
    if holes.any():
        raise DataError(
            f"structure learning needs complete rows; missing cells per column: "
            f"{holes[holes > 0].to_dict()}. Drop those rows (rows.dropna()) or fill them first "
            f"(bn.impute)"
        )
    data = rows.astype(str)
    data.columns = [str(c) for c in rows.columns]
    with warnings.catch_warnings():  # pgmpy 1.1 announces its 1.3 renames on import
        warnings.simplefilter("ignore", category=FutureWarning)
        from pgmpy.causal_discovery import ExpertKnowledge
        from pgmpy.estimators import BDeu, HillClimbSearch

    variables = list(data.columns)
    for edge in [*forbidden_edges, *required_edges]:
        if len(edge) != 2 or not set(edge) <= set(variables):
            raise DataError(f"edge {edge!r} must be a (parent, child) pair of columns {variables}")
    knowledge = ExpertKnowledge(
        forbidden_edges=list(forbidden_edges) or None,
        required_edges=list(required_edges) or None,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)
        search = HillClimbSearch(data)
        score = (BDeu(data, equivalent_sample_size=equivalent_sample_size)
                 if scoring == "bdeu" else _SCORES[scoring])
        dag = search.estimate(
            scoring_method=score, max_indegree=max_indegree, expert_knowledge=knowledge,
            max_iter=max_iter, show_progress=progress,
        )
    states = {v: sorted(data[v].unique()) for v in variables}
    return BayesNet.from_structure(list(dag.edges()), states)
