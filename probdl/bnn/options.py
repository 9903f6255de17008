"""The options `train` takes in groups: how parameters move (Optim), how images are read (Inputs).

    from probdl.bnn import Inputs, Optim, train
    train(model, tr, va, optim=Optim(lr=1e-3, batch_size=128), inputs=Inputs(augment="none"))

Augmentation runs in pixel space: a standardized batch x' = (x - mean) / std is mapped back to
x = x' std + mean, transformed (zero padding, as a dark background) and standardized again, so
rotations and zooms see the image the user gave.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch

from probdl.data import Augment
from probdl.errors import ModelError

__all__ = ["AUGMENTS", "Inputs", "Optim", "augment_standardized", "epoch_augment"]

SCHEDULES = ("cosine", "constant")
# Named augmentations for ``Inputs(augment=...)``: small rotations and zooms that keep a digit
# (or most objects) what it is; larger rotations with shifts made the digits model worse
# (docs/tuning-log.md).
AUGMENTS = {"light": {"rotate": 5.0, "scale": (0.92, 1.08)}, "none": None}


@dataclass
class Optim:
    """How the parameters move: Adam, its schedule, the averaging, when to stop.

    lr : Adam's (peak) learning rate.
    batch_size : minibatch size (the global batch under torchrun).
    schedule : "constant" or "cosine" (a decay to zero over the run). With the averaging, a
        constant rate keeps the iterates moving to the end and the average smooths their
        noise, which beat a cosine decay without averaging (docs/tuning-log.md).
    ema_decay : Polyak averaging of the iterates (0: off; 0.95, about the last 20 steps).
    patience : stop after this many epochs without a better validation NLL (None: never).
    """

    lr: float = 3e-3
    batch_size: int = 64
    schedule: str = "constant"
    ema_decay: float = 0.95
    patience: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or (
            self.batch_size < 1
        ):
            raise ModelError(f"batch_size must be an integer >= 1, got {self.batch_size!r}.")
        if not (isinstance(self.lr, int | float) and self.lr > 0 and math.isfinite(self.lr)):
            raise ModelError(f"lr must be a number > 0, got {self.lr!r}.")
        if self.schedule not in SCHEDULES:
            raise ModelError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ModelError(
                f"ema_decay must lie in [0, 1) (0: no averaging), got {self.ema_decay}."
            )
        if self.patience is not None and self.patience < 1:
            raise ModelError(f"patience must be >= 1 or None, got {self.patience}.")


@dataclass
class Inputs:
    """How training images are read: standardization and augmentation.

    standardize : fit per-channel standardization on the training images, stored in the model.
    augment : "light" (rotations of up to 5 degrees and zooms of 0.92-1.08, in pixel space),
        "none" or None (off), or a ``probdl.data.Augment``; applied to each training batch and
        reseeded per epoch. Turn it off where orientation or size carry the label.
    """

    standardize: bool = True
    augment: Augment | str | None = "light"

    def __post_init__(self) -> None:
        self.augment = _resolve_augment(self.augment)


def _resolve_augment(augment: Augment | str | None) -> Augment | None:
    if isinstance(augment, str) and augment in AUGMENTS:
        options = AUGMENTS[augment]
        return None if options is None else Augment(**options)
    if augment is None or isinstance(augment, Augment):
        return augment
    raise ModelError(
        f"augment must be one of {list(AUGMENTS)}, None or a probdl.data.Augment; got "
        f"{augment!r}."
    )


def epoch_augment(augment: Augment | None, seed: int, epoch: int) -> Augment | None:
    """A copy of ``augment`` reseeded for this epoch, so a resumed run sees the same images."""
    if augment is None or getattr(augment, "is_identity", False):
        return None
    aug = copy.copy(augment)
    aug.seed = (seed * 7919 + epoch) if augment.seed is None else augment.seed * 7919 + epoch
    if hasattr(aug, "_generators"):
        aug._generators = {}
    return aug


def augment_standardized(model: Any, aug: Any, xb: torch.Tensor) -> torch.Tensor:
    """Augment in pixel space ([0, 1], zero padding), then standardize again."""
    if xb.ndim == 5:  # several images per example: each is augmented on its own
        return augment_standardized(model, aug, xb.flatten(0, 1)).unflatten(0, xb.shape[:2])
    mean, std = model.standardize_mean_, model.standardize_std_
    if mean is None:
        return aug(xb)
    m, s = mean[None, :, None, None], std[None, :, None, None]
    return (aug(xb * s + m) - m) / s
