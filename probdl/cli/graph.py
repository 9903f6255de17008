"""`probdl bn ...`: the Bayesian-network commands, called by :mod:`probdl.cli.main`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from probdl.distributed import is_writer
from probdl.errors import DataError, InferenceError
from probdl.files import atomic_write
from probdl.graph import BayesNet


def load_network(spec: str) -> BayesNet:
    """A network from a file path (by suffix) or the name of a bundled network."""
    path = Path(spec)
    if path.suffix.lower() in {".bif", ".xmlbif", ".xml", ".uai"} or path.exists():
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
        evidence[name.strip()] = state.strip()
    return evidence


def read_rows(path: str) -> pd.DataFrame:
    """A CSV of states as text; empty cells (and NA, NaN) are missing."""
    if not Path(path).is_file():
        raise DataError(f"{path}: no such CSV file.")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable CSV file ({err}).") from None


def _write_csv(frame: pd.DataFrame, path: str) -> None:
    with atomic_write(path, "w") as fh:
        frame.to_csv(fh, index=False)


def query(args: argparse.Namespace) -> int:
    bn = load_network(args.net)
    targets = [t.strip() for group in args.target for t in group.split(",") if t.strip()]
    evidence = parse_evidence(args.evidence)
    posteriors = bn.query(targets, evidence=evidence)
    if args.json:
        print(json.dumps({v: s.to_dict() for v, s in posteriors.items()}, indent=2))
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
        print(f"network plot -> {path}")
    return 0


def _parse_latent(items: list[str]) -> dict[str, int] | None:
    latent: dict[str, int] = {}
    for item in items:
        name, _, k = item.partition(":")
        if not name or not k.isdigit() or int(k) < 2:
            raise DataError(f"--latent {item!r}: write NAME:K with K >= 2 states, e.g. H:2")
        latent[name] = int(k)
    return latent or None


def fit(args: argparse.Namespace) -> int:
    if args.nproc > 1:
        from probdl.cli.launch import relaunch_under_torchrun

        return relaunch_under_torchrun(args.nproc, args.argv)
    bn = load_network(args.net)
    rows = read_rows(args.data)
    fitted = bn.fit(rows, latent=_parse_latent(args.latent), prior=args.prior,
                    max_iter=args.max_iter)
    history = list(getattr(fitted, "history_", []))
    if is_writer():
        fitted.write(args.out)
    summary = {
        "rows": len(rows),
        "missing_cells": int(rows.isna().sum().sum()),
        "iterations": int(getattr(fitted, "n_iter_", max(len(history) - 1, 0))),
        "log_likelihood": history[-1] if history else None,
        "out": str(args.out),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    elif is_writer():
        for key, value in summary.items():
            print(f"{key:>15}: {value}")
    return 0



def impute(args: argparse.Namespace) -> int:
    bn = load_network(args.net)
    rows = read_rows(args.data)
    filled, probabilities = bn.impute(rows)
    _write_csv(filled, args.out)
    missing = int(rows.isna().sum().sum())
    # posteriors of observed cells are one-hot: average over the cells that were missing
    confidence = [
        probabilities[column].max(axis=1)[rows[column].isna().to_numpy()]
        for column in probabilities
        if column in rows and rows[column].isna().any()
    ]
    mean_conf = float(np.concatenate(confidence).mean()) if confidence else float("nan")
    summary = {"rows": len(rows), "cells_imputed": missing,
               "mean_posterior_of_imputed_state": mean_conf, "out": str(args.out)}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            print(f"{key:>32}: {value}")
    return 0
