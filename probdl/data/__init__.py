"""Preparing image data: loaders, splits, standardization and augmentation.

    from probdl.data import Augment, Standardize, load_digits, split
    train, val, test = split(load_digits(), val=0.15, test=0.2, seed=0)
    std = Standardize().fit(train.images)
    aug = Augment(rotate=15, flip=True, scale=(0.9, 1.1), crop=1, seed=0)
"""

from probdl.data.builtin import SHAPE_CLASSES, load_digits, load_mnist_sample, make_shapes
from probdl.data.dataset import ImageDataset
from probdl.data.files import load_cifar, load_idx, load_image_folder, load_images
from probdl.data.splits import fingerprint, split, split_indices
from probdl.data.transforms import Augment, Standardize

__all__ = [
    "SHAPE_CLASSES",
    "Augment",
    "ImageDataset",
    "Standardize",
    "fingerprint",
    "load_cifar",
    "load_digits",
    "load_idx",
    "load_image_folder",
    "load_images",
    "load_mnist_sample",
    "make_shapes",
    "split",
    "split_indices",
]
