"""Posterior predictive, uncertainty decomposition, selective prediction and evaluation.

    from probdl.bnn import predict, evaluate
    pred = predict(model, test.images, num_samples=32)
    pred.probs, pred.entropy, pred.epistemic          # (N, K), (N,), (N,)
    keep = ~pred.abstain(0.9)                         # answer only when confident
    scores = evaluate(model, test, num_samples=32, ood=noise_images)

Weight draws are pushed through the network together (a grouped convolution whose groups are
the samples), so S samples cost about S forward passes without a Python loop per sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from probdl import metrics
from probdl.bnn.base import CNNBase, check_labels
from probdl.errors import DataError, InferenceError

__all__ = ["Prediction", "check_same_split", "evaluate", "predict", "predictive_probs", "score"]

# activations per chunk of images (floats): keeps S x N x C x H x W within ~64 MB
_CHUNK_FLOATS = 1 << 24


def _check_samples(num_samples: int) -> int:
    if isinstance(num_samples, bool) or not isinstance(num_samples, int | np.integer):
        raise InferenceError(f"num_samples must be an integer >= 1, got {num_samples!r}.")
    if num_samples < 1:
        raise InferenceError(f"num_samples must be >= 1, got {num_samples}.")
    return int(num_samples)


@torch.no_grad()
def predictive_probs(
    model: CNNBase, images: Any, num_samples: int, prepared: bool = False
) -> torch.Tensor:
    """Class probabilities (S, N, K) under S posterior draws (S = 1 for a MAP model)."""
    s = _check_samples(num_samples) if model.stochastic else 1
    x = images if prepared else model.prepare(images)
    was_training = model.training
    model.eval()
    arch = model.architecture
    per_image = s * max(arch.filters) * arch.image_size[0] * arch.image_size[1]
    chunk = max(1, _CHUNK_FLOATS // per_image)
    try:
        parts = [
            model.logits_to_probs(model.sample_logits(x[i : i + chunk], s))
            for i in range(0, len(x), chunk)
        ]
    finally:
        model.train(was_training)
    if not parts:
        return torch.zeros(s, 0, arch.num_classes, device=x.device)
    return torch.cat(parts, dim=1)


@dataclass
class Prediction:
    """The posterior predictive of a batch of images and its uncertainty, as CPU tensors.

    Attributes
    ----------
    probs : (N, K) mean over samples of the class probabilities.
    sample_probs : (S, N, K) the probabilities under each weight draw.
    labels : (N,) most probable class.
    entropy : (N,) predictive entropy H[probs] (nats), total uncertainty.
    aleatoric : (N,) expected entropy E_w H[p(y | x, w)], the data's own noise.
    epistemic : (N,) mutual information entropy - aleatoric, the model's doubt.
    confidence : (N,) probability of the predicted class.
    classes : class names.
    """

    probs: torch.Tensor
    sample_probs: torch.Tensor
    labels: torch.Tensor
    entropy: torch.Tensor
    aleatoric: torch.Tensor
    epistemic: torch.Tensor
    confidence: torch.Tensor
    classes: list[str]

    @classmethod
    def from_samples(cls, sample_probs: torch.Tensor, classes: list[str]) -> Prediction:
        sp = sample_probs.detach().to("cpu", torch.float64)
        probs = sp.mean(0)
        ent = metrics.entropy(probs)
        epistemic = metrics.mutual_information(sp)
        conf, labels = probs.max(-1)
        return cls(
            probs=probs.float(),
            sample_probs=sp.float(),
            labels=labels,
            entropy=torch.from_numpy(ent).float(),
            aleatoric=torch.from_numpy(metrics.entropy(sp).mean(0)).float(),
            epistemic=torch.from_numpy(epistemic).float(),
            confidence=conf.float(),
            classes=list(classes),
        )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def class_names(self) -> list[str]:
        """The predicted class of each image, by name."""
        return [self.classes[i] for i in self.labels.tolist()]

    def abstain(self, threshold: float) -> torch.Tensor:
        """Boolean mask (N,): True where confidence < threshold, i.e. better not to answer."""
        if not 0.0 <= threshold <= 1.0:
            raise InferenceError(f"abstain threshold must lie in [0, 1], got {threshold}.")
        return self.confidence < threshold

    def risk_coverage(self, true_labels: Any) -> dict[str, np.ndarray | float]:
        """Error rate among the most confident examples, as a function of how many are kept."""
        y = check_labels(true_labels, self.probs.shape[1], len(self), where="true_labels")
        return metrics.risk_coverage(self.confidence, self.labels == y)


def predict(model: CNNBase, images: Any, num_samples: int = 32) -> Prediction:
    """Posterior predictive of ``images`` (a tensor (N, C, H, W) or an ImageDataset).

    ``num_samples`` weight draws for the Bayesian CNN and MC dropout; a MAP model makes one
    pass whatever ``num_samples`` says (its ``sample_probs`` then has S = 1).
    """
    _check_samples(num_samples)
    return Prediction.from_samples(predictive_probs(model, images, num_samples), model.classes_)


def _split_data(data: Any) -> tuple[Any, Any]:
    if isinstance(data, tuple) and len(data) == 2:
        return data
    if hasattr(data, "images") and hasattr(data, "labels"):
        return data.images, data.labels
    raise DataError(
        f"evaluate: data must be an ImageDataset or an (images, labels) pair, got "
        f"{type(data).__name__}."
    )


def check_same_split(model: CNNBase, data: Any) -> None:
    """A DataError when ``data`` is a part of another split of the model's training data.

    ``split()`` tags its parts with the seed, fractions and a fingerprint of the whole
    dataset; ``train`` stores the training part's tag in the model. Scoring a part of the
    same data split another way would score images the model trained on.
    """
    mine, theirs = model.split_, getattr(data, "split_info", None)
    if not mine or not theirs or mine.get("fingerprint") != theirs.get("fingerprint"):
        return
    same = all(mine.get(k) == theirs.get(k) for k in ("seed", "val", "test"))
    if not same:
        raise DataError(
            f"evaluate: the data is the {theirs.get('part')} part of split(seed="
            f"{theirs.get('seed')}, val={theirs.get('val')}, test={theirs.get('test')}), but the "
            f"model was trained on split(seed={mine.get('seed')}, val={mine.get('val')}, "
            f"test={mine.get('test')}) of the same data, so it overlaps the training images. "
            "Split with the model's seed and fractions (model.split_), or pass check_split=False."
        )
    if theirs.get("part") == "train":
        raise DataError(
            "evaluate: the data is the training part of the model's own split; score the "
            "test part, or pass check_split=False."
        )


def evaluate(
    model: CNNBase, data: Any, num_samples: int = 32, ood: Any = None, bins: int = 15,
    check_split: bool = True,
) -> dict[str, Any]:
    """Classification, calibration and uncertainty scores of ``model`` on ``data``.

    Always: accuracy, macro precision/recall/F1, confusion matrix, NLL, ECE (``bins`` bins),
    Brier, ``mean_entropy`` and ``aurc`` (area under the risk-coverage curve of selective
    prediction by confidence). With ``ood`` (an ImageDataset or image tensor of
    out-of-distribution inputs), predictive entropy as the score and OOD as the positive
    class: ``auroc_ood``, ``aupr_ood`` (average precision), ``fpr95_ood`` (the share of
    ``data`` flagged when 95% of ``ood`` is), and ``auroc_ood_mi`` (mutual information as the
    score; left out for a deterministic model, whose mutual information is identically zero,
    so its AUROC would be a meaningless 0.5). ``check_split``: refuse a part of another split
    of the data the model was trained on (see :func:`check_same_split`).
    """
    if check_split:
        check_same_split(model, data)
    images, labels = _split_data(data)
    pred = predict(model, images, num_samples)
    ood_pred = None
    if ood is not None:
        ood_pred = predict(model, ood.images if hasattr(ood, "images") else ood, num_samples)
    return score(model, pred, labels, ood_pred, bins)


def score(
    model: CNNBase, pred: Prediction, labels: Any, ood_pred: Prediction | None = None,
    bins: int = 15,
) -> dict[str, Any]:
    """:func:`evaluate`'s scores from predictions already drawn, so that a caller who also
    plots them (the CLI, the demo) draws them once and shows the very numbers it prints."""
    y = check_labels(labels, model.architecture.num_classes, len(pred), where="evaluate labels")
    scores = metrics.classification_report(pred.probs, y, bins)
    scores["mean_entropy"] = float(pred.entropy.mean())
    scores["aurc"] = metrics.risk_coverage(pred.confidence, pred.labels == y)["aurc"]
    if ood_pred is not None:
        scores["auroc_ood"] = metrics.auroc(ood_pred.entropy, pred.entropy)
        scores["aupr_ood"] = metrics.aupr(ood_pred.entropy, pred.entropy)
        scores["fpr95_ood"] = metrics.fpr_at_tpr(ood_pred.entropy, pred.entropy, 0.95)
        if model.stochastic:  # a deterministic model has no epistemic part to rank by
            scores["auroc_ood_mi"] = metrics.auroc(ood_pred.epistemic, pred.epistemic)
    return scores
