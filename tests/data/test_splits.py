from __future__ import annotations

import numpy as np
import pytest
import torch

from probdl.data import ImageDataset, load_digits, split, split_indices
from probdl.errors import DataError


def test_split_is_disjoint_complete_and_reproducible():
    labels = load_digits().labels.numpy()
    a = split_indices(labels, 0.15, 0.2, seed=0)
    b = split_indices(labels, 0.15, 0.2, seed=0)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)
    joined = np.concatenate(a)
    assert len(joined) == len(labels) == len(np.unique(joined))
    assert not np.array_equal(a[0], split_indices(labels, 0.15, 0.2, seed=1)[0])


def test_split_is_stratified():
    ds = load_digits()
    train, val, test = split(ds, val=0.15, test=0.2, seed=0)
    overall = ds.class_counts() / len(ds)
    for part, frac in ((train, 0.65), (val, 0.15), (test, 0.2)):
        assert abs(len(part) / len(ds) - frac) < 0.01
        np.testing.assert_allclose(part.class_counts() / len(part), overall, atol=0.01)


def test_split_keeps_every_class_in_train_or_says_why():
    labels = torch.tensor([0] * 20 + [1] * 2)
    ds = ImageDataset(torch.zeros(22, 1, 2, 2), labels, ["common", "rare"])
    with pytest.raises(DataError, match="class 1 has only 2 example"):
        split(ds, val=0.3, test=0.3)
    train, _, _ = split(ds, val=0.15, test=0.2)
    assert train.class_counts().tolist()[1] >= 1
    with pytest.raises(DataError, match="val \\+ test < 1"):
        split(ds, val=0.6, test=0.5)


def test_split_parts_carry_their_seed_fractions_and_data_fingerprint():
    from probdl.data import fingerprint

    data = load_digits()
    parts = split(data, val=0.1, test=0.3, seed=4)
    for name, part in zip(("train", "val", "test"), parts, strict=True):
        assert part.split_info == {"part": name, "seed": 4, "val": 0.1, "test": 0.3,
                                   "fingerprint": fingerprint(data)}  # fmt: skip
    assert fingerprint(data) == fingerprint(load_digits())
    changed = ImageDataset(data.images.clone(), data.labels, data.classes)
    changed.images[0, 0, 0, 0] += 0.5
    assert fingerprint(changed) != fingerprint(data)
    assert parts[0].subset([0, 1]).split_info is None  # a subset is no longer that split
