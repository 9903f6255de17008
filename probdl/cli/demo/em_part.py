"""Demo part: learning alarm's CPTs from rows with holes and a latent variable, then imputing."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from probdl.graph import BayesNet

LATENT = "LVFAILURE"


def _mean_kl(truth: BayesNet, fitted: BayesNet, skip: set[str]) -> float:
    """Mean over variables of the mean over parent configurations of KL(true || fitted)."""
    values = []
    for v in truth.variables:
        if v in skip:
            continue
        p = truth.cpd(v).reshape(truth.cpd(v).shape[0], -1)
        # from_structure may list a variable's parents in another order: align the axes.
        axes = [0, *[1 + fitted.parents(v).index(u) for u in truth.parents(v)]]
        q = np.transpose(fitted.cpd(v), axes).reshape(p.shape)
        terms = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1)) - np.log(q)), 0.0)
        values.append(terms.sum(axis=0).mean())
    return float(np.mean(values))


def run(out_dir: Path) -> list[tuple[str, str]]:
    from probdl.plots import calibration_curve, em_history

    truth = BayesNet.example("alarm")
    rng = np.random.default_rng(0)
    rows = truth.sample(2000, seed=0)
    rows = rows.mask(rng.random(rows.shape) < 0.2).drop(columns=LATENT)
    print(f"alarm: {len(truth.variables)} variables; 2,000 sampled rows, 20% of cells blanked at "
          f"random ({int(rows.isna().sum().sum()):,} holes), {LATENT} never observed (latent)")

    # Only the structure is known: uniform CPTs, then EM with the latent variable.
    start = BayesNet.from_structure(truth.graph.edges(), truth.states)
    t0 = time.perf_counter()
    fitted = start.fit(rows, latent={LATENT: 2}, prior=1e-3, max_iter=30, tol=1e-6, seed=0)
    seconds = time.perf_counter() - t0
    skip = {LATENT, *[v for v in truth.variables if LATENT in truth.parents(v)]}
    kl = _mean_kl(truth, fitted, skip)
    kl_start = _mean_kl(truth, start, skip)
    history = fitted.history_
    print(f"  EM: {fitted.n_iter_} iterations in {seconds:.2f} s (converged: {fitted.converged_}); "
          f"objective {history[0]:,.1f} -> {history[-1]:,.1f}, never decreasing: "
          f"{bool((np.diff(history) >= -1e-9 * np.abs(history[:-1])).all())}")
    print(f"  mean KL(true || learned) over the {len(truth.variables) - len(skip)} observed "
          f"variables not children of {LATENT}: {kl:.4f} (uniform start: {kl_start:.4f})")
    plot = em_history({"alarm, 20% missing + latent": history}, out_dir / "em_history.png")
    print(f"  EM objective (log-likelihood + prior term) per iteration -> {plot}")

    # Impute held-out rows with holes; the posteriors should be calibrated.
    complete = truth.sample(1000, seed=1).drop(columns=LATENT)
    holed = complete.mask(np.random.default_rng(2).random(complete.shape) < 0.2)
    t0 = time.perf_counter()
    filled, probs = fitted.impute(holed)
    t_impute = time.perf_counter() - t0
    example = next((c for c in probs if holed[c].isna().iloc[0]), None)
    if example is not None:
        shown = ", ".join(f"{s}: {p:.2f}" for s, p in zip(fitted.states[example], probs[example][0],
                                                          strict=True))
        print(f"  row 0: {example} is missing -> filled with {filled[example].iloc[0]!r}; "
              f"posterior {{{shown}}} (true: {complete[example].iloc[0]!r})")
    confidence, correct, brier = [], [], []
    for column, post in probs.items():
        holes = holed[column].isna().to_numpy()
        labels = np.array([fitted.states[column].index(s) for s in complete[column][holes]])
        p = post[holes]
        confidence.append(p.max(axis=1))
        correct.append(p.argmax(axis=1) == labels)
        brier.append(((p - np.eye(p.shape[1])[labels]) ** 2).sum(axis=1))
    confidence, correct = np.concatenate(confidence), np.concatenate(correct)
    brier = float(np.concatenate(brier).mean())
    edges = np.array([0.0, 0.5, 0.7, 0.9, 0.99, 1.0])
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, len(edges) - 2)
    ece = sum(abs(correct[which == b].mean() - confidence[which == b].mean()) * (which == b).mean()
              for b in range(len(edges) - 1) if (which == b).any())
    print(f"  impute: {len(confidence):,} missing cells in 1,000 new rows in {t_impute:.2f} s; "
          f"MAP accuracy {correct.mean():.3f}, Brier {brier:.3f}, ECE {ece:.3f}")
    print("    posterior of imputed state | cells | mean posterior | fraction correct")
    for b in range(len(edges) - 1):
        inside = which == b
        if inside.any():
            print(f"    {edges[b]:.2f}-{edges[b + 1]:.2f}{'':17}| {inside.sum():5d} | "
                  f"{confidence[inside].mean():14.3f} | {correct[inside].mean():.3f}")
    curve = calibration_curve(confidence, correct, out_dir / "imputation_calibration.png")
    print(f"  calibration of imputed cells -> {curve}")
    return [
        ("em: alarm KL to truth (latent + 20% missing)", f"{kl:.4f}"),
        ("em: fit time", f"{seconds:.2f} s ({fitted.n_iter_} iterations)"),
        ("em: imputation accuracy / Brier / ECE",
         f"{correct.mean():.3f} / {brier:.3f} / {ece:.3f}"),
        ("em: objective plot", str(plot)),
    ]
