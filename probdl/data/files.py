"""Loaders for users' own image files: MNIST-style IDX, CIFAR python batches, image folders.

    from probdl.data import load_idx, load_cifar, load_image_folder
    train = load_idx("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    cifar = load_cifar("cifar-10-batches-py")        # every data_batch_* and test_batch
    photos = load_image_folder("photos/", size=(32, 32))   # one subfolder per class

Every parser reads defensively: a wrong magic number, a truncated file, mismatched counts or
an unreadable image raise :class:`~probdl.errors.DataError` naming the file. CIFAR batches are
pickles, so they are read with an unpickler that only admits plain containers and numpy arrays:
a batch cannot run code.
"""

from __future__ import annotations

import gzip
import io
import pickle
from pathlib import Path
from typing import ClassVar

import numpy as np

from probdl.data.dataset import ImageDataset
from probdl.errors import DataError

__all__ = ["SIZE_FIX", "load_cifar", "load_idx", "load_image_folder", "load_images"]

#: how a message about images of several sizes ends, in Python's words; given to DataError
#: apart (its fix attribute), so that the CLI can say --resize instead
SIZE_FIX = "pass size=(H, W) to resize them to one size"

# IDX type codes (the third byte of the magic number) -> numpy big-endian dtype.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff"}


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DataError(f"{path}: no such file.")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise DataError(f"{path}: a damaged or truncated gzip file ({err}).") from None
    return raw


def _parse_idx(path: Path) -> np.ndarray:
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(
            f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'}); an IDX "
            "file starts with two zero bytes, a type code (0x08 for bytes) and the number of "
            "dimensions, as MNIST's train-images-idx3-ubyte does."
        )
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes, {ndim} dimensions).")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header < expected:
        raise DataError(
            f"{path}: truncated IDX file: shape {shape} needs {expected} bytes of data, "
            f"found {len(raw) - header}. Download or copy the file again."
        )
    return np.frombuffer(raw, dtype, count=int(np.prod(shape)), offset=header).reshape(shape)


def load_idx(
    images_path: str | Path, labels_path: str | Path, classes: list[str] | None = None
) -> ImageDataset:
    """MNIST / Fashion-MNIST IDX files, gzip-compressed or raw.

    Parameters
    ----------
    images_path : path
        IDX file of shape (N, H, W) or (N, C, H, W), bytes 0..255 (or floats in [0, 1]).
    labels_path : path
        IDX file of shape (N,) holding class indices.
    classes : list of str, optional
        Class names; by default "0", "1", ... up to the largest label.
    """
    images_path, labels_path = Path(images_path), Path(labels_path)
    images = _parse_idx(images_path)
    labels = _parse_idx(labels_path)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise DataError(
            f"{images_path}: expected images of shape (N, H, W), got {images.shape}; "
            "did you swap the images and labels files?"
        )
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected labels of shape (N,), got {labels.shape}.")
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} "
            "labels; pass the labels file that belongs to these images."
        )
    pixels = images.astype(np.float32)
    if images.dtype.kind in "ui":
        pixels /= 255.0
    if len(labels) and labels.min() < 0:
        raise DataError(f"{labels_path}: negative label {int(labels.min())}.")
    if classes is None:
        classes = [str(c) for c in range(int(labels.max()) + 1 if len(labels) else 0)]
    return ImageDataset(pixels, labels.astype(np.int64), classes, source=str(images_path))


class _SafeUnpickler(pickle.Unpickler):
    """Admits only what a CIFAR batch holds: builtin containers and numpy arrays."""

    _ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> type:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _load_cifar_pickle(path: Path) -> dict:
    raw = _read_bytes(path)
    try:
        obj = _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except pickle.UnpicklingError as err:
        raise DataError(f"{path}: not a CIFAR python batch ({err}).") from None
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as err:
        raise DataError(f"{path}: a truncated or damaged CIFAR batch ({err}).") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: a CIFAR batch is a dict, found {type(obj).__name__}.")
    return {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def load_cifar(directory: str | Path, part: str = "all") -> ImageDataset:
    """CIFAR-10 or CIFAR-100 "python version" batches from ``directory``.

    Parameters
    ----------
    directory : path
        The extracted folder (``cifar-10-batches-py`` or ``cifar-100-python``).
    part : {"all", "train", "test"}
        Which batches to read.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: no such directory of CIFAR batches.")
    if part not in ("all", "train", "test"):
        raise DataError(f"load_cifar: part must be 'all', 'train' or 'test', got {part!r}.")
    names = {
        "train": sorted(directory.glob("data_batch_*")) + sorted(directory.glob("train")),
        "test": sorted(directory.glob("test_batch")) + sorted(directory.glob("test")),
    }
    files = names["train"] + names["test"] if part == "all" else names[part]
    if not files:
        raise DataError(
            f"{directory}: no CIFAR batches found (expected data_batch_1..5 and test_batch for "
            "CIFAR-10, or train and test for CIFAR-100)."
        )
    images, labels = [], []
    for path in files:
        batch = _load_cifar_pickle(path)
        key = next((k for k in ("labels", "fine_labels") if k in batch), None)
        if "data" not in batch or key is None:
            raise DataError(f"{path}: a CIFAR batch needs 'data' and 'labels' entries.")
        data = np.asarray(batch["data"])
        batch_labels = np.asarray(batch[key], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3072:
            raise DataError(
                f"{path}: 'data' must be (N, 3072) bytes (32x32x3), got {data.shape}; "
                "the file is truncated or not a CIFAR batch."
            )
        if len(data) != len(batch_labels):
            raise DataError(f"{path}: {len(data)} images but {len(batch_labels)} labels.")
        images.append(data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
        labels.append(batch_labels)
    meta_classes = _cifar_class_names(directory)
    all_labels = np.concatenate(labels)
    n_classes = max(len(meta_classes), int(all_labels.max()) + 1)
    classes = meta_classes if len(meta_classes) == n_classes else [str(c) for c in range(n_classes)]
    return ImageDataset(np.concatenate(images), all_labels, classes, source=str(directory))


def _cifar_class_names(directory: Path) -> list[str]:
    for meta_name, key in (("batches.meta", "label_names"), ("meta", "fine_label_names")):
        path = directory / meta_name
        if path.is_file():
            meta = _load_cifar_pickle(path)
            names = meta.get(key, [])
            return [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return []


def _read_images(
    files: list[Path], size: tuple[int, int] | None, channels: int | None, where: Path
) -> np.ndarray:
    """Decode image files into one float32 array (N, C, H, W) in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    pictures = []
    for path in files:
        try:
            with Image.open(path) as img:
                img.load()
                pictures.append(img.copy())
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise DataError(f"{path}: unreadable image ({err}); remove or replace it.") from None
    if channels is None:
        colour = any(p.mode not in ("1", "L", "LA", "I", "I;16", "F") for p in pictures)
        channels = 3 if colour else 1
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}.")
    mode = "RGB" if channels == 3 else "L"
    arrays = []
    for picture in pictures:
        picture = picture.convert(mode)
        if size is not None:
            picture = picture.resize((size[1], size[0]), Image.BILINEAR)
        array = np.asarray(picture, dtype=np.float32) / 255.0
        arrays.append(array[None] if channels == 1 else array.transpose(2, 0, 1))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DataError(
            f"{where}: images differ in size ({sorted(shapes)[:3]}...)", fix=SIZE_FIX
        )
    return np.stack(arrays)


def load_image_folder(
    directory: str | Path, size: tuple[int, int] | None = None, channels: int | None = None
) -> ImageDataset:
    """Images in one subfolder per class (``dir/cat/*.png``, ``dir/dog/*.jpg``).

    Parameters
    ----------
    directory : path
        Folder whose subfolders name the classes (sorted alphabetically).
    size : (height, width), optional
        Resize every image to this size. Without it all images must share one size.
    channels : {1, 3}, optional
        Force grey (1) or colour (3). By default colour if any image is colour, else grey.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: no such image folder.")
    class_dirs = sorted(p for p in directory.iterdir() if p.is_dir())
    files = [
        (path, label)
        for label, class_dir in enumerate(class_dirs)
        for path in sorted(class_dir.iterdir())
        if path.suffix.lower() in _IMAGE_SUFFIXES
    ]
    if not files:
        raise DataError(
            f"{directory}: no images found; expected one subfolder per class holding "
            f"{', '.join(sorted(_IMAGE_SUFFIXES))} files."
        )
    images = _read_images([path for path, _ in files], size, channels, directory)
    labels = np.array([label for _, label in files], dtype=np.int64)
    return ImageDataset(images, labels, [d.name for d in class_dirs], source=str(directory))


def _convert(array: np.ndarray, size: tuple[int, int] | None, channels: int | None
             ) -> np.ndarray:
    """(N, C, H, W) images converted as image files are: grey to colour by repeating, colour
    to grey by luminance (ITU-R 601, as PIL's "L"), then a bilinear resize to ``size``."""
    if channels is not None and channels != array.shape[1]:
        if channels == 3 and array.shape[1] == 1:
            array = np.repeat(array, 3, axis=1)
        elif channels == 3 and array.shape[1] == 4:  # RGBA: the alpha channel is dropped
            array = array[:, :3]
        elif channels == 1 and array.shape[1] in (3, 4):
            array = np.tensordot(array[:, :3], np.float32([0.299, 0.587, 0.114]),
                                 axes=([1], [0]))[:, None].astype(np.float32)
        else:
            raise DataError(f"cannot convert images of {array.shape[1]} channels to {channels}.")
    if size is not None and tuple(array.shape[2:]) != tuple(size):
        import torch
        import torch.nn.functional as F

        resized = F.interpolate(torch.from_numpy(np.ascontiguousarray(array)), size=tuple(size),
                                mode="bilinear", align_corners=False, antialias=True)
        array = resized.numpy()
    return np.ascontiguousarray(array, dtype=np.float32)


def load_images(
    path: str | Path, size: tuple[int, int] | None = None, channels: int | None = None
) -> tuple[np.ndarray, list[str]]:
    """Unlabelled images for prediction: one file, a folder of files (searched recursively),
    or a ``.npy`` array of shape (N, C, H, W): floats as they are (in [0, 1] for a model
    trained on such pixels), integers as 0-255 bytes, divided by 255 (0/1 integers as they
    are). ``size`` (H, W)
    and ``channels`` (1 or 3) convert them, bilinear resize and grey to colour or back.

    Returns the images (N, C, H, W) float32 and a name for each (its file, or ``array[i]``).
    """
    path = Path(path)
    if path.suffix.lower() == ".npy" and path.is_file():
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise DataError(f"{path}: not a readable .npy array ({err}).") from None
        if array.ndim == 3:
            array = array[:, None]
        if array.ndim != 4 or array.dtype.kind not in "fiu":
            raise DataError(f"{path}: expected a numeric array (N, C, H, W), got {array.shape}.")
        if array.shape[-1] in (1, 3, 4) and array.shape[1] not in (1, 3, 4):
            raise DataError(
                f"{path}: the array {array.shape} looks channels-last (N, H, W, C); images must "
                "be (N, C, H, W): save it as array.transpose(0, 3, 1, 2).")
        # integers are bytes, 0-255 (but 0/1 integers are binary pixels, kept); floats are
        # taken as they are, so that the model's own pixel-range check (predict, evaluate)
        # refuses 0-255 floats with the fix, rather than a guess here silently darkening
        # images that overshoot 1 a little or are standardized
        scale = 255.0 if array.dtype.kind in "iu" and array.max(initial=0) > 1 else 1.0
        array = array.astype(np.float32) / np.float32(scale)
        return _convert(array, size, channels), [f"{path.name}[{i}]" for i in range(len(array))]
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    else:
        raise DataError(f"{path}: no such image file or folder.")
    if not files:
        raise DataError(f"{path}: no images found ({', '.join(sorted(_IMAGE_SUFFIXES))}).")
    images = _read_images(files, size, channels, path)
    return images, [str(p.relative_to(path) if path.is_dir() else p.name) for p in files]
