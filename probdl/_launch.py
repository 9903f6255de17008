"""Re-run the current ``probdl`` command as N processes under torchrun.

    # `probdl bn fit asia data.csv --out fitted.bif --nproc 2` ends up calling:
    from probdl._launch import relaunch_under_torchrun
    exit_code = relaunch_under_torchrun(2)
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


def _running_cli_argv() -> list[str]:
    """The argument list of the ``probdl.cli.main`` call on the stack, else ``sys.argv[1:]``.

    ``main(argv)`` may be called in-process with its own list (tests, notebooks), in which
    case ``sys.argv`` belongs to the host program and must not be re-run.
    """
    from probdl import cli

    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is cli.main.__code__:
            argv = frame.f_locals.get("argv")
            if argv is not None:
                return [str(a) for a in argv]
            break
        frame = frame.f_back
    return sys.argv[1:]


def torchrun_command(nproc: int, argv: Sequence[str]) -> list[str]:
    """The torchrun command line that runs ``probdl <argv>`` (``--nproc`` removed) N times."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc_per_node", str(int(nproc)), "-m", "probdl.cli", *_strip_nproc(argv),
    ]


def relaunch_under_torchrun(nproc: int, argv: Sequence[str] | None = None) -> int:
    """Run the current command as ``nproc`` processes under torchrun and wait for them.

    Parameters
    ----------
    nproc : int
        Processes on this machine (one per GPU when training on CUDA).
    argv : list of str, optional
        The command's arguments; by default those of the running ``probdl.cli.main``.

    Returns
    -------
    int
        torchrun's exit code: 0 when every rank succeeded.
    """
    import os

    from probdl import distributed

    if nproc < 1:
        raise ModelError(f"--nproc must be >= 1, got {nproc}.")
    if distributed.launched_by_torchrun():
        raise ModelError(
            "--nproc was given inside a torchrun job; drop --nproc (torchrun's "
            "--nproc_per_node already sets the number of processes)."
        )
    args = list(argv) if argv is not None else _running_cli_argv()
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        return subprocess.call(torchrun_command(nproc, args), env=env)
    except KeyboardInterrupt:
        return 130
