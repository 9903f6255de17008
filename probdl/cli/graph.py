"""`probdl bn ...`: the Bayesian-network commands, called by :mod:`probdl.cli.main`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from probdl.cli.output import emit_json
from probdl.distributed import is_writer
from probdl.errors import DataError, InferenceError
from probdl.files import atomic_write
from probdl.graph import BayesNet
from probdl.graph.io import NETWORK_SUFFIXES, network_format
from probdl.graph.stream import missing_as_nan


def note_first_compile() -> None:
    """Say on stderr why the first command after an install pauses: numba compiles the
    engine's loops once (10-30 s on a small machine) and caches them beside the package.
    Each ``bn`` command calls it once, before its inference (reading a network compiles
    nothing, and ``bn fit --init`` reads two)."""
    import probdl.graph.inference as inference

    folder = Path(os.environ.get("NUMBA_CACHE_DIR") or Path(inference.__file__).parent /
                  "__pycache__")  # fmt: skip
    writable = os.access(folder if folder.exists() else folder.parent, os.W_OK)
    if writable and not any(folder.rglob("kernels.*.nbi")):
        print("probdl: first use after install: compiling the inference engine "
              "(10-30 s, once)", file=sys.stderr)  # fmt: skip


def load_network(spec: str) -> BayesNet:
    """A network from a file path (by suffix) or the name of a bundled network."""
    path = Path(spec)
    if path.suffix.lower() in NETWORK_SUFFIXES or path.exists():
        if not path.is_file():
            raise DataError(f"{spec}: no such network file.")
        return BayesNet.read(path)
    return BayesNet.example(spec)


def parse_evidence(text: str) -> dict[str, str]:
    """``"A=a,B=b"`` -> ``{"A": "a", "B": "b"}``."""
    evidence: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, state = item.partition("=")
        if not sep or not name.strip() or not state.strip():
            raise InferenceError(
                f"evidence item {item!r} is not VARIABLE=STATE; write e.g. --evidence smoke=yes"
            )
        if name.strip() in evidence and evidence[name.strip()] != state.strip():
            raise InferenceError(
                f"--evidence gives {name.strip()!r} two states ({evidence[name.strip()]!r} and "
                f"{state.strip()!r}); keep one"
            )
        evidence[name.strip()] = state.strip()
    return evidence


def read_rows(path: str, states: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """A CSV of states as text; empty cells, NA, NaN, None, ... are missing unless a state of
    the column's variable (in ``states``) has that name (:func:`.stream.missing_as_nan`)."""
    if not Path(path).is_file():
        raise DataError(f"{path}: no such CSV file.")
    try:
        rows = missing_as_nan(pd.read_csv(path, dtype=str, keep_default_na=False), states)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable CSV file ({err}).") from None
    if rows.empty:
        raise DataError(f"{path}: a header and no rows; write one row per case under it.")
    return rows


def _write_csv(frame: pd.DataFrame, path: str) -> None:
    with atomic_write(path, "w") as fh:
        frame.to_csv(fh, index=False)


def query(args: argparse.Namespace) -> int:
    note_first_compile()
    bn = load_network(args.net)
    targets = [t.strip() for group in args.target for t in group.split(",") if t.strip()]
    evidence = parse_evidence(args.evidence)
    posteriors = bn.query(targets, evidence=evidence)
    if args.json:
        emit_json({v: s.to_dict() for v, s in posteriors.items()})
    else:
        given = ", ".join(f"{k}={v}" for k, v in evidence.items()) or "no evidence"
        for var, series in posteriors.items():
            print(f"P({var} | {given})")
            width = max(len(str(s)) for s in series.index)
            for state, p in series.items():
                print(f"  {state!s:<{width}}  {p:8.5f}  {'#' * round(40 * p)}")
    if args.plot:
        from probdl.plots import network_posteriors

        row = pd.DataFrame([{v: evidence.get(v, np.nan) for v in bn.variables}])
        marginals = {v: m[0] for v, m in bn.marginals(row).items()}
        path = network_posteriors(bn, marginals, args.plot, observed=set(evidence))
        print(f"network plot -> {path}")  # on stderr with --json
    return 0


def _parse_latent(items: list[str], bn: BayesNet, rows: pd.DataFrame, data: str
                  ) -> dict[str, int] | None:
    """--latent NAME:K items, checked against the network and the data in the CLI's words
    (the library's messages speak Python: latent={...})."""
    latent: dict[str, int] = {}
    for item in items:
        name, _, k = item.partition(":")
        if not name or not k.isdigit() or int(k) < 2:
            raise DataError(f"--latent {item!r}: write NAME:K with K >= 2 states, e.g. either:2")
        latent[name] = int(k)
        states = bn.states.get(name)
        if states is not None and int(k) != len(states):
            raise DataError(
                f"--latent {item}: the network gives {name!r} {len(states)} states {states}; "
                f"--latent declares a variable absent from the data and never changes its "
                f"states: write --latent {name}:{len(states)}")
        if name in rows and rows[name].notna().any():
            raise DataError(f"--latent {item}: {data} has values of {name!r}; --latent is for "
                            f"variables absent from the data: drop it (EM fills in the empty "
                            f"cells of a column)")
    absent = [v for v in bn.variables if v not in rows and v not in latent]
    unknown = [c for c in rows.columns if c not in bn.states]
    if absent and unknown:
        # a misspelt header is likelier than a hidden variable: name both sides
        raise DataError(f"{data} has columns the network does not know ({unknown}) and no "
                        f"column for {absent}; rename the columns to the network's names "
                        f"(names are case-sensitive)")
    if absent:
        declare = " ".join(f"--latent {v}:{len(bn.states[v])}" for v in absent)
        raise DataError(f"{data} has no column for {absent}; declare them hidden with {declare}, "
                        f"or add their columns (empty cells are missing values; a column "
                        f"entirely empty is hidden)")
    return latent or None


def fit(args: argparse.Namespace) -> int:
    if args.nproc > 1:
        from probdl.cli.launch import relaunch_under_torchrun

        return relaunch_under_torchrun(args.nproc, args.argv)
    out_format = network_format(args.out)  # an unknown suffix fails now, not after EM
    note_first_compile()
    bn = load_network(args.net)
    rows = read_rows(args.data, bn.states)
    init = load_network(args.init) if args.init else None
    fitted = bn.fit(rows, latent=_parse_latent(args.latent, bn, rows, args.data),
                    prior=args.prior, max_iter=args.max_iter, init=init,
                    n_restarts=args.restarts, seed=args.seed, n_jobs=args.n_jobs)
    if is_writer():
        fitted.write(args.out)
        if out_format == "uai":
            print(f"probdl: {args.out} holds no variable or state names (the UAI format has "
                  f"none): read back, variables are var_0, var_1, ... and do not match "
                  f"{args.data}'s columns; write .bif or .xmlbif to keep them", file=sys.stderr)
    history = list(getattr(fitted, "history_", []))
    summary = {
        "rows": len(rows),
        "missing_cells": int(rows.isna().sum().sum()),
        "iterations": int(getattr(fitted, "n_iter_", max(len(history) - 1, 0))),
        # log P(data | fitted CPTs), the fitted network's log_likelihood_; EM maximizes it
        # plus the prior's term, sum prior * log theta, which history_ holds
        "log_likelihood": float(fitted.log_likelihood_),
        "em_objective": history[-1] if history else None,
        "out": str(args.out),
    }
    if not is_writer():
        return 0
    if args.json:
        emit_json(summary)
    else:
        notes = {"log_likelihood": "  (of the rows under the fitted network)",
                 "em_objective": "  (log-likelihood + prior term, what EM maximizes)"}
        for key, value in summary.items():
            print(f"{key:>15}: {value}{notes.get(key, '')}")
    return 0


def _posterior_table(bn: BayesNet, rows: pd.DataFrame, probabilities: dict[str, np.ndarray]
                     ) -> pd.DataFrame:
    """One line per imputed cell and state: row (0-based, as in the data), variable, state,
    probability; the states of a cell in the network's order, summing to 1."""
    parts = []
    for column, probs in probabilities.items():
        if column not in rows:
            continue
        where = np.flatnonzero(rows[column].isna().to_numpy())
        states = bn.states[column]
        parts.append(pd.DataFrame({
            "row": np.repeat(where, len(states)),
            "variable": column,
            "state": np.tile(states, len(where)),
            "probability": probs[where].reshape(-1),
        }))
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["row", "variable", "state", "probability"])
    return table.sort_values(["row", "variable"], kind="stable", ignore_index=True)


def impute(args: argparse.Namespace) -> int:
    note_first_compile()
    bn = load_network(args.net)
    rows = read_rows(args.data, bn.states)
    filled, probabilities = bn.impute(rows)
    _write_csv(filled, args.out)
    if args.posteriors:
        _write_csv(_posterior_table(bn, rows, probabilities), args.posteriors)
    missing = int(rows.isna().sum().sum())
    # posteriors of observed cells are one-hot: average over the cells that were missing
    confidence = [
        probabilities[column].max(axis=1)[rows[column].isna().to_numpy()]
        for column in probabilities
        if column in rows and rows[column].isna().any()
    ]
    mean_conf = float(np.concatenate(confidence).mean()) if confidence else None
    summary = {"rows": len(rows), "cells_imputed": missing,
               "mean_posterior_of_imputed_state": mean_conf, "out": str(args.out)}
    if args.posteriors:
        summary["posteriors"] = str(args.posteriors)
    if args.json:
        emit_json(summary)
    else:
        for key, value in summary.items():
            print(f"{key:>32}: {value}")
    return 0
