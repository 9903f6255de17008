from __future__ import annotations

import math

import pytest
import torch

from probdl.data import Augment, Standardize, load_digits, make_shapes, split
from probdl.errors import DataError


def test_standardize_gives_zero_mean_unit_std_on_train():
    train, _, test = split(make_shapes(120, size=12, seed=0))
    std = Standardize().fit(train.images)
    z = std(train.images)
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    spread = z.std(dim=(0, 2, 3), unbiased=False)
    torch.testing.assert_close(spread, torch.ones(3), atol=1e-4, rtol=0)
    back = std.inverse_transform(std(test.images))
    torch.testing.assert_close(back, test.images, atol=1e-5, rtol=0)


def test_standardize_state_round_trip_and_channel_check():
    std = Standardize().fit(load_digits().images)
    again = Standardize.from_state_dict(std.state_dict())
    torch.testing.assert_close(again(torch.ones(2, 1, 8, 8)), std(torch.ones(2, 1, 8, 8)))
    with pytest.raises(DataError, match="fitted for 1 channel"):
        std(torch.zeros(2, 3, 8, 8))
    with pytest.raises(DataError, match="not fitted"):
        Standardize()(torch.zeros(1, 1, 2, 2))


def test_augment_is_identity_when_off_and_reproducible_with_a_seed():
    x = make_shapes(16, size=16, seed=0).images
    assert Augment()(x) is x
    kwargs = dict(rotate=20, flip=True, scale=(0.8, 1.2), crop=2, seed=7)
    a, b = Augment(**kwargs), Augment(**kwargs)
    first = a(x)
    assert first.shape == x.shape
    torch.testing.assert_close(first, b(x))
    assert not torch.equal(first, a(x))  # the next batch gets fresh randomness
    assert not torch.allclose(first, x)


def test_augment_flip_is_an_exact_mirror():
    x = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(64, 1, 1, 1)
    flipped = Augment(flip=True, seed=0)(x)
    mirrored = [torch.allclose(img, x[0].flip(-1), atol=1e-5) for img in flipped]
    unchanged = [torch.allclose(img, x[0], atol=1e-5) for img in flipped]
    assert all(m or u for m, u in zip(mirrored, unchanged, strict=True))
    assert 16 < sum(mirrored) < 48


def test_augment_rotation_leaves_a_centred_disc_alone_but_moves_a_bar():
    yy, xx = torch.meshgrid(torch.arange(32.0) + 0.5, torch.arange(32.0) + 0.5, indexing="ij")
    r2 = (yy - 16) ** 2 + (xx - 16) ** 2
    disc = torch.exp(-r2 / 40.0)[None, None].repeat(16, 1, 1, 1)
    bar = ((yy - 16).abs() < 2).float()[None, None].repeat(16, 1, 1, 1)
    rotate = Augment(rotate=45, seed=0)
    assert (rotate(disc) - disc).abs().max() < 0.02
    moved = (Augment(rotate=45, seed=0)(bar) - bar).abs().flatten(1).mean(1)
    assert (moved > 0.01).float().mean() > 0.8


def test_augment_scale_zooms_about_the_centre():
    yy, xx = torch.meshgrid(torch.arange(32.0) + 0.5, torch.arange(32.0) + 0.5, indexing="ij")
    square = (((yy - 16).abs() < 6) & ((xx - 16).abs() < 6)).float()[None, None]
    bigger = Augment(scale=(1.5, 1.5), seed=0)(square)
    assert math.isclose(float(bigger.sum()), float(square.sum()) * 1.5**2, rel_tol=0.08)


def test_augment_rejects_bad_arguments():
    with pytest.raises(DataError):
        Augment(rotate=-1)
    with pytest.raises(DataError):
        Augment(scale=(1.2, 0.8))
