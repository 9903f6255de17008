"""The in-memory image dataset every loader returns.

    from probdl.data import ImageDataset
    import torch
    ds = ImageDataset(torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 0, 1]), ["a", "b"])
    image, label = ds[0]          # works with torch.utils.data.DataLoader
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from probdl.errors import DataError

__all__ = ["ImageDataset"]


class ImageDataset(torch.utils.data.Dataset):
    """Images, integer labels and class names, held in memory as torch tensors.

    Parameters
    ----------
    images : array-like, shape (N, C, H, W)
        Pixel values in [0, 1]; stored as float32.
    labels : array-like, shape (N,)
        Class indices in ``range(len(classes))``; stored as int64.
    classes : sequence of str
        Class names, one per label value.
    source : str, optional
        Where the data came from (a file or dataset name), used in error messages.
    """

    def __init__(
        self,
        images: torch.Tensor | np.ndarray,
        labels: torch.Tensor | np.ndarray | Sequence[int],
        classes: Sequence[str],
        source: str = "dataset",
    ) -> None:
        images = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
        labels = torch.as_tensor(np.asarray(labels) if not torch.is_tensor(labels) else labels)
        if images.ndim != 4:
            raise DataError(
                f"{source}: images must have shape (N, C, H, W), got {tuple(images.shape)}; "
                "add a channel axis for grey images (images[:, None])."
            )
        if images.shape[-1] in (1, 3, 4) and images.shape[1] not in (1, 3, 4):
            raise DataError(
                f"{source}: images of shape {tuple(images.shape)} look channels-last (N, H, W, "
                f"C) with C = {images.shape[-1]}; ImageDataset takes (N, C, H, W): pass "
                "images.transpose(0, 3, 1, 2) (numpy) or images.permute(0, 3, 1, 2) (torch)."
            )
        if labels.ndim != 1:
            raise DataError(f"{source}: labels must be one-dimensional, got {tuple(labels.shape)}.")
        if len(images) != len(labels):
            raise DataError(
                f"{source}: {len(images)} images but {len(labels)} labels; "
                "each image needs exactly one label."
            )
        images = images.to(torch.float32)
        if not torch.isfinite(images).all():
            bad = (~torch.isfinite(images)).flatten(1).any(1).nonzero().flatten()
            raise DataError(
                f"{source}: {len(bad)} image(s) hold NaN or infinite pixels "
                f"(first at index {int(bad[0])}); clean or drop them before use."
            )
        if labels.is_floating_point():
            if not torch.equal(labels, labels.round()):
                raise DataError(f"{source}: labels must be whole numbers (class indices).")
        labels = labels.to(torch.int64)
        classes = [str(c) for c in classes]
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
            raise DataError(
                f"{source}: labels must lie in 0..{len(classes) - 1} for the {len(classes)} "
                f"classes {classes}, found {int(labels.min())}..{int(labels.max())}."
            )
        self.images = images
        self.labels = labels
        self.classes = classes
        self.source = source
        #: set by ``split``: which part of which split of which data this is
        self.split_info: dict | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        return (
            f"ImageDataset({n} images, {c}x{h}x{w}, {len(self.classes)} classes, "
            f"source={self.source!r})"
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        """The shape of one image, (C, H, W)."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> ImageDataset:
        """A new dataset holding the images at ``indices`` (the tensors are copied)."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.int64)
        return ImageDataset(self.images[idx], self.labels[idx], self.classes, self.source)

    def class_counts(self) -> np.ndarray:
        """Number of images of each class, shape (K,)."""
        return np.bincount(self.labels.numpy(), minlength=len(self.classes))
