"""Classifier outputs as evidence in a Bayesian network: images meet structured knowledge.

    from probdl.bnn import BayesianCNN, train
    from probdl.data import load_digits, split
    from probdl.hybrid import HybridModel, digit_sum_network, pair_indices
    tr, va, te = split(load_digits(), val=0.15, test=0.2, seed=0)
    cnn = BayesianCNN(in_channels=1, num_classes=10, image_size=(8, 8))
    train(cnn, tr, va, epochs=10)
    hm = HybridModel(digit_sum_network(), {"D1": cnn, "D2": cnn}, class_prior=tr)
    i1, i2 = pair_indices(len(te), seed=0)
    sums = te.labels[i1] + te.labels[i2]
    post = hm.query(["D1", "D2"], images={"D1": te.images[i1], "D2": te.images[i2]},
                    evidence={"S": sums.numpy()})          # dict var -> numpy (B, 10)

How an image becomes evidence. A classifier trained on data with class frequencies pi(y)
outputs p(y | x) = p(x | y) pi(y) / p(x), so the likelihood of the node's states given the
image is p(x | y) ∝ p(y | x) / pi(y). That ratio enters the node as soft (virtual) evidence;
the network's own prior P(y | parents) then takes the place of pi, and is not counted twice:

    P(d1, d2 | x1, x2, s) ∝ P(d1) P(d2) [p(d1|x1)/pi(d1)] [p(d2|x2)/pi(d2)] P(s | d1, d2).

The whole batch is answered in one pass of the network's batched exact engine. With
``per_sample=True`` the classifier's weight draws stay apart: the posterior is computed under
each draw's probabilities (all draws in the same engine pass) and then averaged, so the
classifier's epistemic uncertainty carries through the network instead of being averaged away
before it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from probdl.bnn import CNNBase, predict
from probdl.errors import DataError, InferenceError, ModelError
from probdl.graph import BayesNet

__all__ = ["HybridModel"]


def normalized(values: Any, k: int, what: str, per: str = "class", zero: str = "") -> np.ndarray:
    """A probability vector (k,) from k positive weights or counts, or a ModelError.

    ``what`` names the argument in the messages ("class prior for 'D1'", "digit_prior"), ``per``
    what each entry belongs to, ``zero`` why an entry of 0 is refused. Public so that
    :mod:`probdl.hybrid.digit_sums`, built on public names only, checks its prior the same way.
    """
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise ModelError(f"{what} is not numeric ({err}).") from None
    if arr.shape != (k,):
        raise ModelError(
            f"{what} has {arr.size} entries but the node has {k} states; "
            f"give one probability (or count) per {per}."
        )
    if not np.isfinite(arr).all() or (arr <= 0).any():
        raise ModelError(f"{what} must be positive and finite, got {arr.tolist()}"
                         + (f"; {zero}." if zero else "."))
    return arr / arr.sum()


def _class_prior(values: Any, k: int, node: str) -> np.ndarray:
    """The class prior of ``node``'s classifier as given (weights or counts), normalized."""
    return normalized(values, k, f"class prior for {node!r}", zero="a class with prior 0 "
                      "cannot be divided out (did the training data lack a class?)")


def _prior_from(source: Any, k: int, where: str) -> np.ndarray:
    """A class prior from an ImageDataset / labels (frequencies) or from an array of weights."""
    if isinstance(source, str):
        if source != "uniform":
            raise ModelError(f"class prior for {where!r}: unknown name {source!r} (use 'uniform').")
        return np.full(k, 1.0 / k)
    labels = getattr(source, "labels", None)
    if labels is not None:
        y = np.asarray(torch.as_tensor(labels).cpu()).astype(np.int64).reshape(-1)
        if y.size == 0 or y.min() < 0 or y.max() >= k:
            raise ModelError(
                f"class prior for {where!r}: the dataset's labels must lie in 0..{k - 1} and be "
                f"non-empty (found {y.size} labels)."
            )
        counts = np.bincount(y, minlength=k)
        if (counts == 0).any():
            missing = np.flatnonzero(counts == 0).tolist()
            raise ModelError(
                f"class prior for {where!r}: classes {missing} never occur in the dataset, so "
                f"their training prior is 0 and cannot be divided out; pass the prior as an "
                f"array instead."
            )
        return counts / counts.sum()
    return _class_prior(source, k, where)


class HybridModel:
    """A Bayesian network some of whose nodes are observed through image classifiers.

    Parameters
    ----------
    bn : BayesNet
    classifiers : dict node -> trained classifier (``BayesianCNN``, ``MCDropoutCNN`` or
        ``DeterministicCNN``) whose classes are the node's states. When the class names equal
        the state labels (as sets) the columns are matched by name, otherwise by position.
    class_prior : the class frequencies each classifier was trained under, divided out of its
        predictions. Per node, the first of these that exists is used: the argument (one value
        for every node, or a dict node -> value), where a value is an ``ImageDataset`` (label
        frequencies), an array of probabilities or counts in the classifier's class order, or
        ``"uniform"``; else the classifier's ``class_prior_`` attribute if it stores one; else
        uniform.

    Attributes
    ----------
    class_priors_ : dict node -> numpy (k,), the priors divided out, in the node's state order.
    prior_sources_ : dict node -> ``"argument"``, ``"model"`` or ``"uniform"``.
    """

    def __init__(self, bn: BayesNet, classifiers: Mapping[str, Any],
                 class_prior: Any = None) -> None:
        self.bn = bn
        self.classifiers = dict(classifiers)
        self.class_prior = class_prior
        if not isinstance(bn, BayesNet):
            raise ModelError(f"HybridModel needs a probdl BayesNet, got {type(bn).__name__}.")
        if not self.classifiers:
            raise ModelError("HybridModel needs at least one classifier: {node: model}.")
        states = bn.states
        self.class_priors_: dict[str, np.ndarray] = {}
        self.prior_sources_: dict[str, str] = {}
        self._columns: dict[str, np.ndarray] = {}
        for node, model in self.classifiers.items():
            if node not in states:
                raise ModelError(
                    f"classifier given for {node!r}, which is not a node of the network; its "
                    f"nodes are {bn.variables}."
                )
            if not isinstance(model, CNNBase):
                raise ModelError(
                    f"the classifier for {node!r} is a {type(model).__name__}; HybridModel takes "
                    f"probdl's BayesianCNN, MCDropoutCNN or DeterministicCNN (trained with "
                    f"probdl.bnn.train or loaded with BayesianCNN.load)."
                )
            k = len(states[node])
            classes = [str(c) for c in model.classes_]
            n_classes = model.architecture.num_classes
            if n_classes != k:
                raise ModelError(
                    f"the classifier for {node!r} predicts {n_classes} classes but the node has "
                    f"{k} states {states[node]}; train it with num_classes={k} or pick the node "
                    f"whose states are its classes."
                )
            if sorted(classes) == sorted(states[node]):
                order = {c: i for i, c in enumerate(classes)}
                self._columns[node] = np.array([order[s] for s in states[node]])
            else:
                self._columns[node] = np.arange(k)
            prior, source = self._resolve_prior(node, model, k)
            self.class_priors_[node] = prior[self._columns[node]]
            self.prior_sources_[node] = source

    def _resolve_prior(self, node: str, model: Any, k: int) -> tuple[np.ndarray, str]:
        given = self.class_prior
        if isinstance(given, Mapping):
            given = given.get(node)
        if given is not None:
            return _prior_from(given, k, node), "argument"
        stored = getattr(model, "class_prior_", None)
        if stored is not None:
            return _class_prior(torch.as_tensor(stored).cpu().numpy(), k, node), "model"
        return np.full(k, 1.0 / k), "uniform"

    # ------------------------------------------------------------------ evidence
    def likelihoods(self, images: Mapping[str, Any], per_sample: bool = False,
                    num_samples: int = 32) -> dict[str, np.ndarray]:
        """The soft evidence each image batch puts on its node: p(y | x) / pi(y).

        Returns dict node -> numpy (B, k), or (S, B, k) with ``per_sample=True`` (one slice per
        weight draw; a MAP classifier's single slice is repeated to S).
        """
        if not isinstance(images, Mapping) or not images:
            raise InferenceError(
                "images must be a non-empty dict node -> image batch, e.g. {'D1': x1, 'D2': x2}."
            )
        sizes: dict[str, int] = {}
        out: dict[str, np.ndarray] = {}
        seen: dict[tuple[int, int], Any] = {}
        for node, batch in images.items():
            if node not in self.classifiers:
                raise InferenceError(
                    f"images given for {node!r}, which has no classifier; nodes with "
                    f"classifiers: {list(self.classifiers)}."
                )
            # One classifier shown the same batch for two nodes predicts once (same draws).
            key = (id(self.classifiers[node]), id(batch))
            if key not in seen:
                seen[key] = predict(self.classifiers[node], batch, num_samples)
            pred = seen[key]
            sizes[node] = len(pred)
            probs = pred.sample_probs if per_sample else pred.probs
            probs = probs.double().numpy()[..., self._columns[node]]
            out[node] = probs / self.class_priors_[node]
        if len(set(sizes.values())) > 1:
            raise DataError(
                f"image batches differ in size {sizes}; each row of the query is one case, so "
                f"every node needs the same number of images."
            )
        if per_sample:
            draws = max(v.shape[0] for v in out.values())
            out = {n: np.broadcast_to(v, (draws, *v.shape[1:])) for n, v in out.items()}
        return out

    def _rows(self, evidence: Any, batch: int) -> pd.DataFrame:
        """Hard evidence as B rows (NaN = unobserved); values are one label or one per row."""
        if evidence is None:
            return pd.DataFrame(index=range(batch))
        if isinstance(evidence, pd.DataFrame):
            if len(evidence) != batch:
                raise DataError(f"evidence has {len(evidence)} rows but the images hold {batch} "
                                f"cases; give one evidence row per case.")
            return evidence.reset_index(drop=True)
        if not isinstance(evidence, Mapping):
            raise InferenceError(f"evidence must be a dict var -> state (or one state per case) "
                                 f"or a DataFrame, got {type(evidence).__name__}.")
        columns = {}
        for var, value in evidence.items():
            if var not in self.bn.states:
                raise InferenceError(f"unknown variable {var!r} in evidence; the network's "
                                     f"variables are {self.bn.variables}.")
            if isinstance(value, str) or np.ndim(value) == 0:
                columns[var] = [value] * batch
                continue
            values = np.asarray(torch.as_tensor(value).cpu() if torch.is_tensor(value) else value,
                                dtype=object).reshape(-1)
            if len(values) != batch:
                raise DataError(f"evidence for {var!r} holds {len(values)} values but the images "
                                f"hold {batch} cases; give one state or one state per case.")
            columns[var] = values
        return pd.DataFrame(columns, index=range(batch))

    # ------------------------------------------------------------------ queries
    def query(self, targets: str | Sequence[str], images: Mapping[str, Any], evidence: Any = None,
              per_sample: bool = False, num_samples: int = 32) -> dict[str, np.ndarray]:
        """Posteriors of ``targets`` for a batch of cases, in one pass of the network's engine.

        Parameters
        ----------
        targets : a variable or list of variables.
        images : dict node -> image batch (N, C, H, W); every batch the same length B. Nodes
            with a classifier but no images get no soft evidence.
        evidence : hard evidence, dict var -> a state label (all cases) or B labels (one per
            case), or a DataFrame of B rows (NaN = unobserved).
        per_sample : average the posterior over the classifiers' weight draws instead of
            conditioning on their mean prediction.
        num_samples : weight draws per classifier.

        Returns
        -------
        dict var -> numpy (B, k), rows summing to one, columns in ``bn.states[var]`` order.
        """
        names = [targets] if isinstance(targets, str) else list(targets)
        if not names:
            raise InferenceError("no target variables given; name at least one variable.")
        for t in names:
            if t not in self.bn.states:
                raise InferenceError(f"unknown target {t!r}; the network's variables are "
                                     f"{self.bn.variables}.")
        return self.posteriors(names, self.likelihoods(images, per_sample, num_samples),
                               evidence, per_sample)

    def posteriors(self, targets: str | Sequence[str], likelihoods: Mapping[str, np.ndarray],
                   evidence: Any = None, per_sample: bool = False) -> dict[str, np.ndarray]:
        """Posteriors of ``targets`` given soft evidence already computed by :meth:`likelihoods`.

        For callers that predict once and query many times (e.g. pairs drawn from one batch of
        predictions). ``likelihoods`` maps node -> (B, k), or (S, B, k) with ``per_sample``.
        """
        names = [targets] if isinstance(targets, str) else list(targets)
        soft = dict(likelihoods)
        if not soft:
            raise InferenceError("likelihoods is empty; give node -> (B, k) arrays from "
                                 "HybridModel.likelihoods.")
        first = next(iter(soft.values()))
        batch = first.shape[-2]
        rows = self._rows(evidence, batch)
        if not per_sample:
            posts = self.bn.marginals(rows, soft_evidence=soft)
            return {t: posts[t] for t in names}
        draws = first.shape[0]
        # All draws in one engine pass: draw s of case b is row s * B + b.
        tiled = pd.concat([rows] * draws, ignore_index=True)
        flat = {n: v.reshape(draws * batch, -1) for n, v in soft.items()}
        posts = self.bn.marginals(tiled, soft_evidence=flat)
        return {t: posts[t].reshape(draws, batch, -1).mean(0) for t in names}
