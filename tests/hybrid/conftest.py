from __future__ import annotations

import pytest

from probdl.data import load_digits, split


@pytest.fixture(scope="module")
def digits():
    return split(load_digits(), val=0.15, test=0.2, seed=0)
