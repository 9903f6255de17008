"""The errors probdl raises on bad input.

Every error a user can provoke is a :class:`ProbdlError`, so one ``except`` clause catches them
all. Each message says what was wrong, where (file, variable, row) and how to fix it::

    from probdl.errors import DataError
    try:
        load_idx("labels.idx", "images.idx")
    except DataError as err:
        print(err)   # names the file, the bad magic number and what an IDX file starts with
"""

from __future__ import annotations

__all__ = ["CPTError", "CheckpointError", "DataError", "InferenceError", "ModelError",
           "ProbdlError", "UsageError"]


class ProbdlError(Exception):
    """Base class of every error probdl raises on bad input or an impossible request.

    ``ProbdlError(problem, fix=...)`` reads "problem; fix." and keeps both parts as the
    attributes ``problem`` and ``fix`` (``fix`` is None when none was given apart), so that a
    caller speaking other words than Python's, the command line, can swap the fix without
    parsing the message.
    """

    def __init__(self, problem: str, *, fix: str | None = None) -> None:
        super().__init__(problem if fix is None else f"{problem}; {fix}.")
        self.problem = problem
        self.fix = fix


class DataError(ProbdlError, ValueError):
    """Input data is malformed: a file, an image tensor, a label, a table of rows."""


class ModelError(ProbdlError, ValueError):
    """A model is malformed: a cyclic graph, a CPT of the wrong shape, a bad configuration."""


class CPTError(ModelError, DataError):
    """A network's CPT is not a conditional distribution: a column that does not sum to 1 (beyond
    the 1e-6 that rounding in network files explains), named with its variable and parent states.
    It is both a :class:`ModelError` (the model is malformed) and a :class:`DataError` (the file
    or arrays it came from are)."""


class InferenceError(ProbdlError, ValueError):
    """A query cannot be answered: unknown names, impossible evidence, a plan too large."""


class CheckpointError(ProbdlError, OSError):
    """A saved model cannot be loaded: truncated, another architecture or format version, unsafe."""


class UsageError(ProbdlError, ValueError):
    """A command line that contradicts itself (two outputs of one name, a plot format matplotlib
    cannot write, ``--resume`` of no run): raised by :mod:`probdl.cli` before any work starts;
    the command exits with 2, as for a usage error argparse finds."""
