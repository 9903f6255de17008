"""Post-hoc temperature scaling: one number T fitted on the validation split, kept in the model.

    from probdl.bnn.calibration import fit_temperature
    t = fit_temperature(model, va.images, va.labels)   # sets model.temperature_ = t

Guo et al. (2017): divide every logit by T > 0 and pick T to minimize the validation NLL of
each weight draw, averaged over the draws,

    T* = argmin_T  -(1/N) sum_n (1/S) sum_s log softmax(z_ns / T)[y_n],

with z_ns the logits of image n under weight draw s (S = 1 for a MAP model, where this is the
NLL itself; the draws are held fixed during the search). The draws are calibrated one by one
rather than through their mixture: sharpening every draw towards a hard vote lowers the
mixture's validation NLL whenever each image has one correct draw, a direction that fits the
few draws held fixed rather than the model. T > 1 softens over-confident predictions, T < 1
sharpens under-confident ones; the predicted classes of each draw never change. The NLL is
smooth in log T, and the search runs over log T in [log 0.05, log 20] with scipy's bounded
Brent method. The fit is kept only where it carries over (:func:`_generalizes`): a T fitted
on either half of the images must lower the other half's NLL, and a sharpening one (T < 1) by
more than two standard errors of the per-image gains; otherwise T stays 1.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar

from probdl.bnn.base import CNNBase, check_labels
from probdl.errors import DataError

__all__ = ["fit_temperature", "fitted_temperature", "temperature_nll"]

BOUNDS = (0.05, 20.0)


def temperature_nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    """NLL of the labels under each draw's logits (S, N, outputs) divided by T, averaged."""
    return float(_image_nll(logits, labels, temperature).mean())


def _image_nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Each image's NLL at temperature T, averaged over the draws: (N,)."""
    z = logits.double() / temperature
    if z.shape[-1] == 1:  # one logit: log p(1) = logsigmoid(z), log p(0) = logsigmoid(-z)
        log_p = torch.cat([F.logsigmoid(-z), F.logsigmoid(z)], dim=-1)
    else:
        log_p = torch.log_softmax(z, dim=-1)
    picked = log_p.gather(-1, labels.expand(len(z), -1)[..., None]).squeeze(-1)  # (S, N)
    return -picked.mean(0)


@torch.no_grad()
def fit_temperature(
    model: CNNBase, images: Any, labels: Any, num_samples: int = 8, *, prepared: bool = False,
    seed: int = 0,
) -> float:
    """Fit ``model.temperature_`` on held-out images by NLL; returns it.

    ``num_samples`` weight draws (one pass for a MAP model), drawn once with ``seed``.
    """
    x = images if prepared else model.prepare(images, where="calibration images")
    y = check_labels(labels, model.architecture.num_classes, len(x), where="calibration labels")
    if len(x) == 0:
        raise DataError("fit_temperature: no images to calibrate on.")
    was_training = model.training
    model.eval()
    s = num_samples if model.stochastic else 1
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        logits = torch.cat([model.sample_logits(x[i : i + 512], s) for i in range(0, len(x), 512)],
                           dim=1).cpu()  # fmt: skip
    finally:
        torch.set_rng_state(state)
        model.train(was_training)
    t = fitted_temperature(logits, y.cpu(), seed)
    model.temperature_ = t
    return t


def fitted_temperature(logits: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> float:
    """The temperature :func:`fit_temperature` keeps for logits (S, N, outputs) already drawn:
    the NLL-optimal T where it carries over to held-out halves (:func:`_generalizes`), else 1."""
    return _best_temperature(logits, labels) if _generalizes(logits, labels, seed) else 1.0


def _best_temperature(logits: torch.Tensor, y: torch.Tensor) -> float:
    predicted = (logits[..., 0] > 0).long() if logits.shape[-1] == 1 else logits.argmax(-1)
    if bool((predicted == y).all()):
        # no draw is wrong on any image: the NLL falls all the way to T -> 0 (sharpening only
        # raises each correct class), and nothing here says how confident the model may be on
        # the next, unseen error; no search needed
        return 1.0
    found = minimize_scalar(
        lambda log_t: temperature_nll(logits, y, math.exp(log_t)),
        bounds=(math.log(BOUNDS[0]), math.log(BOUNDS[1])), method="bounded",
        options={"xatol": 1e-3},
    )  # fmt: skip
    t = float(np.exp(found.x))
    # keep T = 1 unless the fit is really better (a flat NLL leaves the model as trained)
    return t if temperature_nll(logits, y, t) < temperature_nll(logits, y, 1.0) else 1.0


def _generalizes(logits: torch.Tensor, y: torch.Tensor, seed: int) -> bool:
    """Whether a temperature fitted on either half of the images lowers the NLL of the other
    half; a sharpening one (T < 1) by more than twice the standard error of the per-image gains.

    With few errors among the held-out images the NLL-optimal T is set by a handful of
    them, and sharpening that fits them makes the next, unseen errors confidently wrong
    (docs/tuning-log.md has the cases). Such a fit passes a plain cross-fit often enough: its
    per-image gains are tiny on the many confident, right images and large and of either sign
    on the few wrong ones, so their mean is within noise; a systematic miscalibration, every
    image asking for about the same T, is not. Softening (T > 1) is the cautious direction,
    at worst a little NLL on right images, and the one shifted inputs want, so it needs only
    to carry over.
    """
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    halves = order[: len(y) // 2], order[len(y) // 2 :]
    if min(len(h) for h in halves) < 2:
        return False
    for fit, check in (halves, halves[::-1]):
        t = _best_temperature(logits[:, fit], y[fit])
        gain = _image_nll(logits[:, check], y[check], 1.0) - _image_nll(
            logits[:, check], y[check], t
        )
        noise = 2.0 * float(gain.std()) / math.sqrt(len(gain)) if t < 1.0 else 0.0
        if not float(gain.mean()) > noise:
            return False
    return True
