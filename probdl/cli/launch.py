"""Re-run the current ``probdl`` command as N processes under torchrun.

    # `probdl bn fit asia data.csv --out fitted.bif --nproc 2` ends up calling:
    from probdl.cli.launch import relaunch_under_torchrun
    exit_code = relaunch_under_torchrun(2, ["bn", "fit", "asia", "data.csv", "--out",
                                            "fitted.bif", "--nproc", "2"])
    # python -m torch.distributed.run --standalone --nproc_per_node 2 -m probdl.cli \\
    #     bn fit asia data.csv --out fitted.bif

``--standalone`` runs the rendezvous on this machine on a free port; for several machines
start ``torchrun`` yourself on each (docs/scaling.md).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from probdl.errors import ModelError

__all__ = ["relaunch_under_torchrun", "torchrun_command"]


def _strip_nproc(argv: Sequence[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for token in argv:
        if skip:
            skip = False
            continue
        if token == "--nproc":
            skip = True
            continue
        if token.startswith("--nproc="):
            continue
        out.append(token)
    return out


def torchrun_command(nproc: int, argv: Sequence[str]) -> list[str]:
    """The torchrun command line that runs ``probdl <argv>`` (``--nproc`` removed) N times."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc_per_node", str(int(nproc)), "-m", "probdl.cli", *_strip_nproc(argv),
    ]


def relaunch_under_torchrun(nproc: int, argv: Sequence[str]) -> int:
    """Run the current command as ``nproc`` processes under torchrun and wait for them.

    Parameters
    ----------
    nproc : int
        Processes on this machine (one per GPU when training on CUDA).
    argv : list of str
        The command's arguments as ``probdl.cli.main`` received them (``--nproc`` is removed).

    Returns
    -------
    int
        torchrun's exit code: 0 when every rank succeeded.
    """
    from probdl import distributed

    if nproc < 1:
        raise ModelError(f"--nproc must be >= 1, got {nproc}.")
    if distributed.launched_by_torchrun():
        raise ModelError(
            "--nproc was given inside a torchrun job; drop --nproc (torchrun's "
            "--nproc_per_node already sets the number of processes)."
        )
    try:  # torchrun and its ranks inherit main's OMP_WAIT_POLICY with the environment
        return subprocess.call(torchrun_command(nproc, argv))
    except KeyboardInterrupt:
        return 130
