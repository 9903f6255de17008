"""Files that are never lost: atomic writes that honour the umask, and the writable-folder check.

    from probdl.files import atomic_write, check_writable
    check_writable("runs/digits", needed_bytes=50_000_000)   # or raises now, not minutes in
    with atomic_write("runs/digits/results.csv", "w") as fh:
        fh.write("a,b\n")

An atomic write goes to a temporary file beside the target, is fsynced, then renamed over it:
the rename is atomic on POSIX file systems, so readers see the old file or the new one and a
process killed mid-write leaves the old file intact. ``tempfile.mkstemp`` creates files with
mode 0600 whatever the umask; the file is given ``0666 & ~umask`` before the rename, as
``open()`` would have done, so written files are as readable as the user expects.

The writable check exists because a training run that only learns at its first checkpoint,
minutes in, that the disk is full or the folder read-only has wasted those minutes; the probe
finds out in milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from probdl.errors import DataError, ProbdlError

__all__ = ["FIGURE_FORMATS", "atomic_write", "check_writable", "figure_format", "umask"]

#: the formats :mod:`probdl.plots` writes, each named by its file suffix
FIGURE_FORMATS = ("png", "pdf", "svg")

#: the probe writes at most this much for real; larger needs are checked against free space
_PROBE_CAP = 64 << 20
_BLOCK = 1 << 20


def umask() -> int:
    """The process's file-creation mask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Write to a temporary file beside ``path``, fsync it, then rename it over ``path``.

    Missing parent folders are created. The file gets mode ``0666 & ~umask``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def figure_format(path: str | Path, error: type[ProbdlError] = DataError) -> str:
    """The format a figure's file name asks for by its suffix: ``png``, ``pdf`` or ``svg``.

    Raises ``error`` for any other suffix (a file named ``plot.txt`` holding PNG bytes helps
    nobody), naming the suffixes that work.
    """
    suffix = Path(path).suffix
    if suffix.lower().lstrip(".") in FIGURE_FORMATS:
        return suffix.lower().lstrip(".")
    names = [f".{f}" for f in FIGURE_FORMATS]
    end = f"end the file name in {', '.join(names[:-1])} or {names[-1]}"
    if not suffix:
        raise error(f"{path}: no suffix to pick the figure's format; {end}.")
    raise error(f"{path}: cannot write a figure in the {suffix} format; {end} (the suffix picks "
                "the format).")


def _mb(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def check_writable(
    directory: str | Path,
    needed_bytes: int = 0,
    what: str = "output folder",
    error: type[ProbdlError] = DataError,
) -> Path:
    """Create ``directory`` if needed and prove that ``needed_bytes`` can be written there.

    Three checks, cheapest first: the folder can be created; the file system reports enough
    free space; a temporary file of ``min(needed_bytes, 64 MiB)`` (at least one byte) is
    written, fsynced and deleted, which catches read-only mounts, permissions, quotas and
    file-size limits that the free-space figure does not show.

    Parameters
    ----------
    directory : path
    needed_bytes : int
        What the work will write there at most (e.g. two checkpoints during an atomic replace).
    what : str
        Names the folder in the error message ("checkpoint folder", ...).
    error : ProbdlError subclass
        Raised with a message naming the folder, the cause and a fix.

    Returns
    -------
    pathlib.Path
        ``directory``.
    """
    directory = Path(directory)
    fix = "pick another --out/folder, or free space or fix permissions there"
    if directory.exists() and not directory.is_dir():
        raise error(f"{directory}: the {what} is a file, not a folder; {fix}.")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise error(
            f"{directory}: the {what} cannot be created ({err.strerror or err}); {fix}."
        ) from None
    free = shutil.disk_usage(directory).free
    if needed_bytes > free:
        raise error(
            f"{directory}: the {what} has {_mb(free)} free but this run writes about "
            f"{_mb(needed_bytes)}; {fix}."
        )
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".probdl-write-probe.", dir=directory)
        with os.fdopen(fd, "wb") as fh:
            remaining = max(1, min(int(needed_bytes), _PROBE_CAP))
            block = bytes(min(remaining, _BLOCK))
            while remaining > 0:
                fh.write(block[:remaining])
                remaining -= len(block)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as err:
        raise error(
            f"{directory}: cannot write to the {what} ({err.strerror or err}); {fix}."
        ) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return directory
