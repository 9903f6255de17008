"""Family counting: rows as integer codes, (expected) family counts, and their normalization.

    from probdl.graph import BayesNet
    from probdl.graph.learning.counts import (NetSpec, encode_rows, family_counts, normalize,
                                              pseudo_counts, unique_rows)
    bn = BayesNet.example("asia")
    spec = NetSpec.from_network(bn)
    codes = encode_rows(bn.sample(1000, seed=0), spec)   # (N, V) int64, -1 = missing
    unique, weight = unique_rows(codes)       # repeated rows counted once, with a weight
    cpts = normalize(family_counts(unique, weight, spec), spec, pseudo_counts(spec, 1.0))

A *family* is a variable with its parents; its counts have the CPT's shape (k_var, k_parent1, ...).
Exact counts come from complete rows (:func:`family_counts`); expected counts from rows with holes
come from the inference engine (``Engine.run(..., want="counts")``, the EM E-step).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from probdl.errors import DataError

__all__ = [
    "NetSpec",
    "decode_rows",
    "encode_rows",
    "family_counts",
    "normalize",
    "pseudo_counts",
    "unique_rows",
]


@dataclass(frozen=True)
class NetSpec:
    """The structure of a discrete Bayesian network: variables, their states and parents.

    Attributes
    ----------
    variables : tuple of str
        Variables in topological order (parents before children).
    states : dict
        Variable -> tuple of state labels (str).
    parents : dict
        Variable -> tuple of parent names; a CPT has shape ``(k_var, k_parent1, ...)``.
    """

    variables: tuple[str, ...]
    states: dict[str, tuple[str, ...]]
    parents: dict[str, tuple[str, ...]]

    @classmethod
    def from_network(cls, bn: Any, latent: Mapping[str, Any] | None = None) -> NetSpec:
        """Read the structure of a ``BayesNet`` (or a pgmpy model), with latent states overridden.

        ``latent`` maps a variable to its number of states or its list of labels; both must
        match the network's: a declaration says which variables have no column, it never
        relabels one (a silent "0"/"1" in place of LOW/NORMAL/HIGH would lose their meaning).
        """
        if hasattr(bn, "variables") and hasattr(bn, "cpd") and not callable(bn.variables):
            variables = list(bn.variables)
            states = {v: tuple(str(s) for s in bn.states[v]) for v in variables}
            parents = {v: tuple(bn.parents(v)) for v in variables}
        else:  # a pgmpy DiscreteBayesianNetwork
            import networkx as nx

            variables = list(nx.topological_sort(bn))
            states = {v: tuple(str(s) for s in bn.get_cpds(v).state_names[v]) for v in variables}
            parents = {v: tuple(bn.get_cpds(v).variables[1:]) for v in variables}
        for name, spec in (latent or {}).items():
            if name not in states:
                raise DataError(
                    f"latent variable {name!r} is not a variable of the network's structure "
                    f"(variables: {', '.join(variables)}); add it with its edges to the network "
                    f"before fitting, or fix the name"
                )
            states[name] = _latent_states(name, spec, states[name])
        return cls(tuple(variables), states, parents)

    def shape(self, var: str) -> tuple[int, ...]:
        """The CPT shape of ``var``: ``(k_var, k_parent1, ...)``."""
        return (len(self.states[var]), *(len(self.states[p]) for p in self.parents[var]))

    def children(self, var: str) -> list[str]:
        """Variables that have ``var`` as a parent."""
        return [v for v in self.variables if var in self.parents[v]]


def _latent_states(name: str, spec: Any, current: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        if spec == len(current):
            return current
        given = f"{int(spec)} states"
    elif isinstance(spec, Sequence) and not isinstance(spec, str):
        if tuple(str(s) for s in spec) == current:
            return current
        given = "other labels"
    else:
        raise DataError(
            f"latent variable {name!r}: give its number of states (e.g. {{{name!r}: "
            f"{len(current)}}}) or its labels (e.g. {{{name!r}: {list(current)}}}), not {spec!r}"
        )
    raise DataError(
        f"latent={{{name!r}: {spec!r}}} gives {given}, but the network gives {name!r} the states "
        f"{list(current)}; latent= only declares a variable absent from the data and never "
        f"relabels it: pass {{{name!r}: {len(current)}}}, or build the structure with the states "
        f"you want, e.g. BayesNet.from_structure(bn.graph.edges, {{**bn.states, {name!r}: "
        f"['0', '1']}})"
    )


def _labels_of(values: np.ndarray) -> np.ndarray:
    """State labels as str; floats that hold integers (a column with NaN) read as "1", not "1.0"."""
    kind = pd.api.types.infer_dtype(values, skipna=False)
    if kind == "string":
        return values.astype(object)
    if kind == "integer" or (kind == "floating" and bool((values % 1 == 0).all())):
        return values.astype(np.int64).astype(str).astype(object)
    return np.array([_label(v) for v in values], dtype=object)


def _label(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    return str(value)


def encode_rows(
    rows: Any,
    spec: NetSpec,
    latent: Sequence[str] = (),
    learning: bool = True,
) -> np.ndarray:
    """Validate a frame of state labels and turn it into codes ``(N, V)``, -1 where missing.

    Parameters
    ----------
    rows : pandas.DataFrame
        One column per observed variable, states as labels, NaN/None where unobserved.
    spec : NetSpec
        The network's structure (columns of the result follow ``spec.variables``).
    latent : sequence of str
        Variables declared latent: no column, or a column with no observed value.
    learning : bool
        True for fitting: every variable needs a column or a latent declaration (a column
        entirely missing is hidden). False for queries and imputation: absent columns are
        unobserved.

    Raises
    ------
    DataError
        Not a frame, no rows, a column that is no variable, a latent name whose column has
        values, unknown state labels (listed with their columns), an undeclared absent variable.
    """
    if not isinstance(rows, pd.DataFrame):
        raise DataError(
            f"rows must be a pandas.DataFrame with one column per variable, got "
            f"{type(rows).__name__}"
        )
    if len(rows) == 0:
        raise DataError("rows is an empty frame: give at least one row of observations")
    columns = [str(c) for c in rows.columns]
    if len(set(columns)) != len(columns):
        dup = sorted({c for c in columns if columns.count(c) > 1})
        raise DataError(f"rows has duplicate columns {dup}; give each variable one column")
    unknown = [c for c in columns if c not in spec.states]
    if unknown:
        raise DataError(
            f"columns {unknown} are not variables of the network (variables: "
            f"{', '.join(spec.variables)}); drop or rename them"
        )
    # a declared latent variable may have a column only if that column is entirely missing
    clash = [name for name in latent if name in columns and rows[name].notna().any()]
    if clash:
        raise DataError(
            f"latent variables {clash} have observed values in the data; latent= is for "
            f"variables absent from the data: remove them from latent= (EM fills in their "
            f"missing cells) or drop their columns"
        )
    index = {v: i for i, v in enumerate(spec.variables)}
    codes = np.full((len(rows), len(spec.variables)), -1, dtype=np.int64)
    bad: list[str] = []
    for name, column in zip(columns, rows.columns, strict=True):
        values = rows[column].to_numpy()
        observed = pd.notna(values)
        labels = _labels_of(values[observed])
        code = pd.Index(spec.states[name]).get_indexer(labels).astype(np.int64)
        if (code < 0).any():
            offending = sorted(set(labels[code < 0]))[:10]
            bad.append(f"{name}: {offending} (known: {list(spec.states[name])})")
        codes[observed, index[name]] = code
    if bad:
        raise DataError(
            "unknown state labels, by column: " + "; ".join(bad)
            + ". Use the network's state labels (bn.states) or NaN for a missing value"
        )
    if learning:
        # a column present but entirely missing is a hidden variable with its known states;
        # a variable with no column must be declared, so that a forgotten column is not
        # silently treated as hidden
        absent = {v: len(spec.states[v]) for v in spec.variables
                  if v not in columns and v not in latent}
        if absent:
            raise DataError(
                f"variables {list(absent)} have no column in the data; declare them hidden with "
                f"latent={absent} (their states are kept), or add their columns (empty cells "
                f"are missing values)"
            )
    return codes


def decode_rows(codes: np.ndarray, spec: NetSpec, columns: Sequence[str], index: Any = None):
    """Codes ``(N, V)`` back to a frame of labels for ``columns`` (missing codes become NaN)."""
    position = {v: i for i, v in enumerate(spec.variables)}
    data = {}
    for c in columns:
        labels = np.array([*spec.states[c], np.nan], dtype=object)
        data[c] = labels[codes[:, position[c]]]  # -1 picks the trailing NaN
    return pd.DataFrame(data, index=index)


def unique_rows(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows and how often each occurs (float64 weights), so repeats cost one row."""
    unique, counts = np.unique(codes, axis=0, return_counts=True)
    return unique, counts.astype(np.float64)


def family_counts(
    codes: np.ndarray, weights: np.ndarray, spec: NetSpec
) -> dict[str, np.ndarray]:
    """Weighted counts of each family over the rows where the whole family is observed."""
    position = {v: i for i, v in enumerate(spec.variables)}
    counts = {}
    for var in spec.variables:
        family = [position[var]] + [position[p] for p in spec.parents[var]]
        shape = spec.shape(var)
        sub = codes[:, family]
        keep = (sub >= 0).all(axis=1)
        flat = np.ravel_multi_index(tuple(sub[keep].T), shape) if keep.any() else np.empty(0, int)
        counts[var] = np.bincount(
            flat, weights=weights[keep], minlength=int(np.prod(shape))
        ).reshape(shape)
    return counts


def pseudo_counts(spec: NetSpec, prior: float, kind: str = "dirichlet") -> dict[str, float]:
    """Pseudo-count added to every CPT cell: ``prior`` itself ("dirichlet"), or the BDeu share
    ``prior / (k_var * q_parents)`` of an equivalent sample size ``prior`` ("bdeu")."""
    if not np.isfinite(prior) or prior < 0:
        raise DataError(f"prior must be a finite pseudo-count >= 0, got {prior}")
    if kind == "dirichlet":
        return {v: float(prior) for v in spec.variables}
    if kind == "bdeu":
        return {v: float(prior) / float(np.prod(spec.shape(v))) for v in spec.variables}
    raise DataError(f"prior_type must be 'dirichlet' or 'bdeu', got {kind!r}")


def normalize(
    counts: Mapping[str, np.ndarray], spec: NetSpec, alpha: Mapping[str, float]
) -> dict[str, np.ndarray]:
    """The M-step: ``(counts + alpha)`` normalized over each CPT column.

    Raises
    ------
    DataError
        A parent configuration with no support (zero counts) and a zero pseudo-count, naming the
        family and the configuration: it has no maximum-likelihood estimate.
    """
    cpts = {}
    for var in spec.variables:
        table = np.asarray(counts[var], dtype=np.float64) + alpha[var]
        total = table.sum(axis=0, keepdims=True)
        empty = total[0] <= 0
        if empty.any():
            config = np.argwhere(empty)[0]
            named = ", ".join(
                f"{p}={spec.states[p][i]}" for p, i in zip(spec.parents[var], config, strict=True)
            )
            raise DataError(
                f"family {var} | {', '.join(spec.parents[var]) or '(no parents)'} has no support "
                f"in the data at parent configuration ({named or 'any'}) and the prior is 0, so "
                f"its CPT column is undefined; use prior > 0 (method='bayes' or EM with prior) "
                f"or supply rows with that configuration"
            )
        cpts[var] = table / total
    return cpts
