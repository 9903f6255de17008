"""Every example script runs on a fresh install (in its quick mode) and prints its figures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXPECTED_OUTPUT = {
    "01_bn_inference.py": "largest difference from pgmpy",
    "02_missing_data_em.py": "mean KL",
    "03_bayesian_cnn_digits.py": "predictions identical = True",
    "04_uncertainty_and_ood.py": "OOD (uniform noise) AUROC",
    "05_digit_sum_hybrid.py": "accuracy",
    "06_learning_from_sums.py": "accuracy",
}


def test_every_example_is_covered():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED_OUTPUT)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED_OUTPUT))
def test_example_runs(name, tmp_path):
    env = {**os.environ, "PROBDL_QUICK": "1", "MPLBACKEND": "Agg", "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert EXPECTED_OUTPUT[name] in done.stdout, done.stdout[-2000:]
