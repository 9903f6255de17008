"""Standardization and augmentation as batched torch operations (CPU or CUDA).

    from probdl.data import Augment, Standardize, load_digits
    images = load_digits().images
    std = Standardize().fit(images)              # per-channel mean and std
    aug = Augment(rotate=15, flip=True, scale=(0.9, 1.1), crop=1, seed=0)
    batch = std(aug(images[:64]))
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from probdl.errors import DataError

__all__ = ["Augment", "Standardize"]


def _as_batch(images: torch.Tensor | np.ndarray, who: str) -> torch.Tensor:
    x = images if torch.is_tensor(images) else torch.as_tensor(np.asarray(images))
    if x.ndim != 4:
        raise DataError(f"{who}: expected images of shape (N, C, H, W), got {tuple(x.shape)}.")
    return x


class Standardize:
    """Per-channel standardization, fitted on training images only.

    ``fit`` stores ``mean_`` and ``std_`` (one value per channel); calling the object maps
    images to zero mean and unit variance per channel. ``state_dict`` makes it part of a
    saved model.

    Parameters
    ----------
    eps : float
        Floor on the standard deviation, so a constant channel does not divide by zero.
    """

    def __init__(self, eps: float = 1e-6) -> None:
        self.eps = eps

    def fit(self, images: torch.Tensor | np.ndarray) -> Standardize:
        x = _as_batch(images, "Standardize.fit").to(torch.float64)
        if len(x) == 0:
            raise DataError("Standardize.fit: no images to fit on.")
        if not torch.isfinite(x).all():
            raise DataError("Standardize.fit: images hold NaN or infinite pixels.")
        self.mean_ = x.mean(dim=(0, 2, 3)).to(torch.float32)
        self.std_ = x.std(dim=(0, 2, 3), unbiased=False).clamp_min(self.eps).to(torch.float32)
        return self

    def _check(self, x: torch.Tensor) -> None:
        if not hasattr(self, "mean_"):
            raise DataError("Standardize is not fitted: call .fit(train_images) first.")
        if x.shape[1] != len(self.mean_):
            raise DataError(
                f"Standardize was fitted for {len(self.mean_)} channel(s) but got images with "
                f"{x.shape[1]}; fit it on images of the same kind."
            )

    def transform(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        x = _as_batch(images, "Standardize").to(torch.float32)
        self._check(x)
        mean = self.mean_.to(x.device)[None, :, None, None]
        std = self.std_.to(x.device)[None, :, None, None]
        return (x - mean) / std

    __call__ = transform

    def inverse_transform(self, images: torch.Tensor) -> torch.Tensor:
        x = _as_batch(images, "Standardize.inverse_transform")
        self._check(x)
        return x * self.std_.to(x.device)[None, :, None, None] + self.mean_.to(x.device)[
            None, :, None, None
        ]

    def state_dict(self) -> dict[str, torch.Tensor]:
        if not hasattr(self, "mean_"):
            raise DataError("Standardize is not fitted: nothing to save.")
        return {"mean": self.mean_.clone(), "std": self.std_.clone()}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> Standardize:
        try:
            mean = torch.as_tensor(state["mean"], dtype=torch.float32)
            std = torch.as_tensor(state["std"], dtype=torch.float32)
        except (KeyError, TypeError) as err:
            raise DataError(f"Standardize state needs 'mean' and 'std' tensors ({err}).") from None
        if mean.shape != std.shape or mean.ndim != 1 or (std <= 0).any():
            raise DataError("Standardize state: 'mean' and 'std' must be (C,) with std > 0.")
        new = cls()
        new.mean_, new.std_ = mean, std
        return new

    def __repr__(self) -> str:
        if not hasattr(self, "mean_"):
            return "Standardize(unfitted)"
        return f"Standardize(mean={self.mean_.tolist()}, std={self.std_.tolist()})"


class Augment:
    """Random rotation, horizontal flip, scale and crop (shift), applied to a whole batch.

    Each image gets its own random parameters; one affine resampling does rotation, scale and
    shift together. With a seed the sequence of batches is reproducible; with every option off
    the call returns its input unchanged.

    Parameters
    ----------
    rotate : float
        Maximum rotation in degrees (uniform in [-rotate, rotate]).
    flip : bool
        Flip left-right with probability 1/2.
    scale : (low, high), optional
        Zoom factor range.
    crop : int
        Maximum shift in pixels, as a random crop of a padded image would give.
    seed : int, optional
        Seed of the augmentation's own generator.
    """

    def __init__(
        self,
        rotate: float = 0.0,
        flip: bool = False,
        scale: tuple[float, float] | None = None,
        crop: int = 0,
        seed: int | None = None,
    ) -> None:
        if rotate < 0 or crop < 0:
            raise DataError(f"Augment: rotate and crop must be >= 0, got {rotate}, {crop}.")
        if scale is not None and not (0 < scale[0] <= scale[1]):
            raise DataError(f"Augment: scale must be (low, high) with 0 < low <= high: {scale}.")
        self.rotate = rotate
        self.flip = flip
        self.scale = scale
        self.crop = crop
        self.seed = seed
        self._generators: dict[str, torch.Generator] = {}

    @property
    def is_identity(self) -> bool:
        no_scale = self.scale in (None, (1.0, 1.0))
        return self.rotate == 0 and not self.flip and no_scale and not self.crop

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[key]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = _as_batch(images, "Augment")
        if self.is_identity or len(x) == 0:
            return x
        n, _, h, w = x.shape
        gen = self._generator(x.device)
        opts = {"device": x.device, "generator": gen}

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.rand(n, **opts) * (high - low) + low

        angle = uniform(-self.rotate, self.rotate) * (math.pi / 180.0)
        zoom = uniform(*self.scale) if self.scale else torch.ones(n, device=x.device)
        mirror = (
            torch.where(torch.rand(n, **opts) < 0.5, -1.0, 1.0)
            if self.flip
            else torch.ones(n, device=x.device)
        )
        # affine_grid maps output to input coordinates in [-1, 1]: shifts are in half-widths.
        shift_x = uniform(-self.crop, self.crop).round() * (2.0 / w)
        shift_y = uniform(-self.crop, self.crop).round() * (2.0 / h)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack(
            [
                torch.stack([cos * mirror, -sin, shift_x], dim=1),
                torch.stack([sin * mirror, cos, shift_y], dim=1),
            ],
            dim=1,
        ).to(x.dtype if x.is_floating_point() else torch.float32)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(
            x.float() if not x.is_floating_point() else x,
            grid,
            mode="bilinear",
            padding_mode="zeros",
            align_corners=False,
        )

    def __repr__(self) -> str:
        return (
            f"Augment(rotate={self.rotate}, flip={self.flip}, scale={self.scale}, "
            f"crop={self.crop}, seed={self.seed})"
        )
