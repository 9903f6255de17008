"""The ``probdl`` command: one parser (:mod:`~probdl.cli.main`), one module per command family.

    from probdl.cli import main
    main(["bn", "query", "asia", "--target", "lung", "--evidence", "smoke=yes"])   # exit code

:mod:`~probdl.cli.bnn` runs ``train``, ``evaluate`` and ``predict``; :mod:`~probdl.cli.graph` the
``bn`` commands; :mod:`~probdl.cli.launch` re-runs a command under torchrun for ``--nproc``;
:mod:`probdl.cli.demo` is ``probdl demo``. The command line sits at the edge of the package:
nothing else in probdl imports it.
"""

from __future__ import annotations

from probdl.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
