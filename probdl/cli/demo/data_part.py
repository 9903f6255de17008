"""Demo part 1: preparing the digits (split, standardize, augment)."""

from __future__ import annotations

from pathlib import Path

from probdl.data import Augment, Standardize, load_digits, split


def run(out_dir: Path) -> list[tuple[str, str]]:
    from probdl.plots import image_grid

    digits = load_digits()
    train, val, test = split(digits, val=0.15, test=0.2, seed=0)
    std = Standardize().fit(train.images)
    print(f"digits: {len(digits)} images of {digits.shape}, {len(digits.classes)} classes")
    print(f"  split (stratified, seed 0): train {len(train)}, val {len(val)}, test {len(test)}")
    for name, part in (("train", train), ("val", val), ("test", test)):
        before = part.images.mean().item(), part.images.std().item()
        z = std(part.images)
        print(
            f"  {name:5s} mean/std per channel: before {before[0]:.3f}/{before[1]:.3f}"
            f"  after {z.mean().item():+.3f}/{z.std().item():.3f}"
        )
    augment = Augment(rotate=15, flip=False, scale=(0.9, 1.1), crop=1, seed=0)
    batch = train.images[:32]
    grid = image_grid(
        augment(batch), out_dir / "augmented_digits.png", [str(int(y)) for y in train.labels[:32]]
    )
    print(f"  augmented batch (rotate 15, scale 0.9-1.1, shift 1) -> {grid}")
    return [
        ("data: train/val/test", f"{len(train)}/{len(val)}/{len(test)}"),
        ("data: augmented grid", str(grid)),
    ]
