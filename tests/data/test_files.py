"""Loaders for users' files, each tested on small files written here."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
from PIL import Image

from probdl.data import load_cifar, load_idx, load_image_folder
from probdl.data.files import SIZE_FIX
from probdl.errors import DataError


def write_idx(path, array, gz=False):
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    payload = header + array.tobytes()
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_round_trips_pixels_and_labels(tmp_path, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 5, 4), dtype=np.uint8)
    labels = np.array([0, 1, 2, 1, 0, 2, 2], dtype=np.uint8)
    ds = load_idx(
        write_idx(tmp_path / "img.idx", images, gz), write_idx(tmp_path / "lab.idx", labels, gz)
    )
    assert ds.images.shape == (7, 1, 5, 4)
    np.testing.assert_allclose(ds.images[:, 0].numpy(), images / 255.0, rtol=1e-6)
    assert ds.labels.tolist() == labels.tolist()
    assert ds.classes == ["0", "1", "2"]


def test_load_idx_rejects_bad_magic(tmp_path):
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"PK\x03\x04" + bytes(20))
    labels = write_idx(tmp_path / "lab.idx", [0])
    with pytest.raises(DataError, match=r"bad\.idx.*not an IDX file"):
        load_idx(bad, labels)


def test_load_idx_rejects_truncated_file(tmp_path):
    images = write_idx(tmp_path / "img.idx", np.zeros((4, 3, 3)))
    images.write_bytes(images.read_bytes()[:-5])
    with pytest.raises(DataError, match="truncated"):
        load_idx(images, write_idx(tmp_path / "lab.idx", [0, 1, 0, 1]))


def test_load_idx_rejects_truncated_gzip(tmp_path):
    images = write_idx(tmp_path / "img.idx.gz", np.zeros((4, 3, 3)), gz=True)
    images.write_bytes(images.read_bytes()[:-12])
    with pytest.raises(DataError, match=r"img\.idx\.gz"):
        load_idx(images, write_idx(tmp_path / "lab.idx", [0, 1, 0, 1]))


def test_load_idx_rejects_count_mismatch(tmp_path):
    images = write_idx(tmp_path / "img.idx", np.zeros((4, 3, 3)))
    with pytest.raises(DataError, match=r"4 images.*3 labels"):
        load_idx(images, write_idx(tmp_path / "lab.idx", [0, 1, 0]))


def write_cifar(directory, n_per_batch=5, batches=2, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    directory.mkdir(exist_ok=True)
    written = []
    for b in range(batches):
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, classes, size=n_per_batch).tolist()
        name = f"data_batch_{b + 1}" if b < batches - 1 else "test_batch"
        with open(directory / name, "wb") as fh:
            pickle.dump({b"data": data, b"labels": labels}, fh, protocol=2)
        written.append((data, labels))
    with open(directory / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(classes)]}, fh)
    return written


def test_load_cifar_reads_batches_in_channel_first_layout(tmp_path):
    written = write_cifar(tmp_path / "cifar")
    ds = load_cifar(tmp_path / "cifar")
    assert ds.images.shape == (10, 3, 32, 32)
    first = written[0][0][0].reshape(3, 32, 32) / 255.0
    np.testing.assert_allclose(ds.images[0].numpy(), first, rtol=1e-6)
    assert ds.labels.tolist() == written[0][1] + written[1][1]
    assert ds.classes == [f"c{i}" for i in range(10)]
    assert len(load_cifar(tmp_path / "cifar", part="test")) == 5


def test_load_cifar_rejects_truncated_batch(tmp_path):
    write_cifar(tmp_path / "cifar")
    path = tmp_path / "cifar" / "data_batch_1"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="data_batch_1"):
        load_cifar(tmp_path / "cifar")


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_load_cifar_refuses_code_in_a_pickle(tmp_path):
    directory = tmp_path / "cifar"
    directory.mkdir()
    with open(directory / "data_batch_1", "wb") as fh:
        pickle.dump({b"data": _Exploit(), b"labels": [0]}, fh)
    with pytest.raises(DataError, match="refusing to load"):
        load_cifar(directory)


def write_folder(root, sizes=((6, 5),), mode="RGB"):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i, (h, w) in enumerate(sizes):
            shape = (h, w, 3) if mode == "RGB" else (h, w)
            Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode).save(
                root / cls / f"{i}.png"
            )


def test_load_image_folder_labels_by_subfolder(tmp_path):
    write_folder(tmp_path / "imgs", sizes=((6, 5), (6, 5)))
    ds = load_image_folder(tmp_path / "imgs")
    assert ds.classes == ["cat", "dog"]
    assert ds.images.shape == (4, 3, 6, 5)
    assert ds.labels.tolist() == [0, 0, 1, 1]
    original = np.asarray(Image.open(tmp_path / "imgs" / "dog" / "1.png"), dtype=np.float32)
    np.testing.assert_allclose(ds.images[3].numpy(), original.transpose(2, 0, 1) / 255, rtol=1e-6)


def test_load_image_folder_grey_and_resize(tmp_path):
    write_folder(tmp_path / "imgs", sizes=((6, 5), (9, 7)), mode="L")
    with pytest.raises(DataError, match="differ in size") as caught:
        load_image_folder(tmp_path / "imgs")
    assert caught.value.fix == SIZE_FIX  # kept apart, for the command line to say --resize
    ds = load_image_folder(tmp_path / "imgs", size=(8, 8))
    assert ds.images.shape == (4, 1, 8, 8)


def test_load_image_folder_empty_and_unreadable(tmp_path):
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no images found"):
        load_image_folder(tmp_path / "empty")
    write_folder(tmp_path / "imgs")
    (tmp_path / "imgs" / "cat" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"broken\.png.*unreadable"):
        load_image_folder(tmp_path / "imgs")


def test_load_images_reads_a_file_a_folder_and_an_array(tmp_path):
    from probdl.data import load_images

    write_folder(tmp_path / "imgs", sizes=((6, 5),), mode="L")
    images, names = load_images(tmp_path / "imgs", size=(8, 8))
    assert images.shape == (2, 1, 8, 8) and names == ["cat/0.png", "dog/0.png"]
    one, one_name = load_images(tmp_path / "imgs" / "cat" / "0.png")
    assert one.shape == (1, 1, 6, 5) and one_name == ["0.png"]
    np.save(tmp_path / "batch.npy", np.full((3, 1, 4, 4), 0.5, dtype=np.float32))
    array, array_names = load_images(tmp_path / "batch.npy")
    assert array.shape == (3, 1, 4, 4) and array_names[2] == "batch.npy[2]"
    # bytes are divided by 255; floats are kept as given, even past 1 (a slight overshoot, or
    # standardized pixels): the model's range check judges them, no guess here
    np.save(tmp_path / "bytes.npy", np.full((1, 1, 2, 2), 51, dtype=np.uint8))
    np.testing.assert_allclose(load_images(tmp_path / "bytes.npy")[0], 0.2, rtol=1e-6)
    binary = np.array([[[[0, 1], [1, 0]]]], dtype=np.int64)  # 0/1 integers: binary pixels
    np.save(tmp_path / "binary.npy", binary)
    np.testing.assert_array_equal(load_images(tmp_path / "binary.npy")[0], binary)
    over = np.array([[[[0.0, 0.5], [1.05, -0.3]]]], dtype=np.float64)
    np.save(tmp_path / "over.npy", over)
    np.testing.assert_allclose(load_images(tmp_path / "over.npy")[0], over, rtol=1e-6)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"objects\.npy"):
        load_images(tmp_path / "objects.npy")
