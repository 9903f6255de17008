"""Shared parts of the bad-input sweeps (tests/test_fuzz.py, tests/test_fuzz_cli.py).

Cases per target scale with ``PROBDL_FUZZ_SCALE`` (default 1); with ``PROBDL_FUZZ_REPORT=path``
the number of cases tried per target is written there as JSON (docs/reliability.md). With
``PROBDL_FUZZ_COLLECT=path`` a sweep does not stop at the first bad case: it appends every one
(input, exception, traceback) to that file, for triage.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import traceback
import warnings
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from probdl.errors import ProbdlError

SEED = 20261127
SCALE = float(os.environ.get("PROBDL_FUZZ_SCALE", "1"))
COLLECT = os.environ.get("PROBDL_FUZZ_COLLECT")
TRIED: Counter = Counter()


def _settings(examples: int):
    # no shrinking: a failing case is reported as found (shrinking parsers can take minutes)
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True,
                    phases=(Phase.explicit, Phase.generate))


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    """Writes the cases tried so far, per target, when a sweep module ends."""
    yield
    path = os.environ.get("PROBDL_FUZZ_REPORT")
    if path:
        Path(path).write_text(json.dumps({"seed": SEED, "scale": SCALE, **TRIED}, indent=2))


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _case(target: str, inputs: dict, call, check) -> None:
    """One case: ``call()`` must raise a ProbdlError or return what ``check`` accepts."""
    TRIED[target] += 1
    try:
        try:
            with _quiet():
                answer = call()
        except ProbdlError:
            return
        check(answer)
    except Exception as err:
        if not COLLECT:
            raise
        with open(COLLECT, "a") as fh:
            tb = traceback.format_exception(type(err), err, err.__traceback__)
            fh.write(f"=== {target}\n{inputs!r}\n{''.join(tb[-4:])}\n")




junk_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8)
