"""What the commands print and where their files land: the rules every command shares.

    from probdl.cli.output import OutputPaths, emit_json, json_mode
    with json_mode(True), OutputPaths(files=["out/fitted.bif"]):   # out/ exists, writable
        print("EM ...")                    # --json: goes to stderr
        emit_json({"rows": 10})            # the one JSON document, on stdout

``--json``: stdout carries exactly one JSON document, so ``probdl ... --json | jq`` works;
every other line a command prints (progress, "plot -> ...") goes to stderr. ``json_mode``
redirects ``sys.stdout`` to stderr for the whole command, so a stray print anywhere below
cannot break the document; :func:`emit_json` writes to the stdout the command started with.

Output paths: two outputs of one command that name the same file (after resolving ``..`` and
links) are a :class:`~probdl.errors.UsageError`, found before anything is created. Missing
parent folders are created and proved writable before any work starts
(:func:`probdl.files.check_writable`), so a run does not learn at the end that it cannot save;
when the command then fails, the folders it created and left empty are removed again, so an
invalid argument leaves nothing behind. Folders created by a command that succeeds are named
on stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from probdl.errors import DataError, UsageError
from probdl.files import check_writable, figure_format

__all__ = ["OutputPaths", "emit_json", "json_mode"]

_stdout: list[TextIO] = []  # the stdout of each command running in JSON mode (innermost last)


@contextlib.contextmanager
def json_mode(enabled: bool) -> Iterator[None]:
    """While active (and ``enabled``), ``print`` goes to stderr; :func:`emit_json` to stdout."""
    if not enabled:
        yield
        return
    _stdout.append(sys.stdout)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _stdout.pop()


def emit_json(document: Any) -> None:
    """Print ``document`` as the command's JSON result on the real stdout."""
    out = _stdout[-1] if _stdout else sys.stdout
    print(json.dumps(document, indent=2), file=out)
    out.flush()


def _given(paths: Iterable[str | Path | None] | Mapping[str, str | Path | None]
           ) -> list[tuple[str | None, str | Path]]:
    """(option or None, path) for each path given: a None path is an option not given."""
    pairs = paths.items() if isinstance(paths, Mapping) else ((None, p) for p in paths)
    return [(label, p) for label, p in pairs if p is not None]


def _same(a: Path, b: Path) -> bool:
    """One file by its resolved path, or (both existing) by device and inode: hard links,
    case-insensitive file systems."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its ancestors that do not exist yet, deepest first."""
    return [p for p in (folder, *folder.parents) if not p.exists()]


class OutputPaths:
    """Prepare the folders of the output ``files`` and the output ``folders`` before the work.

    On entry each folder is created if missing and proved writable
    (:func:`probdl.files.check_writable`); a file path that is an existing folder is refused.
    If the body raises, or calls :meth:`undo` (a command that failed with an exit code), the
    folders created here that are still empty are removed. ``None`` entries (options not
    given) are skipped. ``inputs`` (option -> path) are the files the command reads: an
    output that is one of them is refused. ``figures`` are files too, whose suffix must name
    a format :mod:`probdl.plots` writes (png, pdf, svg). ``files``, ``figures`` and ``folders`` may
    map the option that names each path (``{"--out": ..., "--posteriors": ...}``) to it, for
    the messages.

    Raises
    ------
    UsageError
        Two of the paths are one file, an output is an input, or a figure's suffix is no
        format it can be written in, before anything is created.
    DataError
        A path that cannot be created or written, naming it and the fix.
    """

    def __init__(self, files: Iterable[str | Path | None] | Mapping[str, str | Path | None] = (),
                 folders: Iterable[str | Path | None] | Mapping[str, str | Path | None] = (),
                 figures: Iterable[str | Path | None] | Mapping[str, str | Path | None] = (),
                 inputs: Mapping[str, str | Path | None] | None = None) -> None:
        files, figures, folders = _given(files), _given(figures), _given(folders)
        self.figures = [(label, Path(p)) for label, p in figures]
        # every output, labelled for the messages by its option or else by itself
        self.outputs = [(label or str(p), Path(p)) for label, p in [*files, *figures]]
        self.named = self.outputs + [(label or str(p), Path(p)) for label, p in folders]
        self.files = [p for _, p in self.outputs]
        self.folders = [Path(p) for _, p in folders]
        self.inputs = [(label, Path(p)) for label, p in _given(inputs or {})]
        self.created: list[Path] = []

    def check(self) -> None:
        """Refuse a figure of a format that cannot be written, and two outputs that are one
        file (the second write would replace the first)."""
        figures = [p for _, p in self.figures]
        for path in self.files:
            if path.is_dir():
                example = "out.png" if path in figures else "out.csv"
                raise DataError(f"{path}: is a folder; give a file name, e.g. {path / example}")
        for label, path in self.figures:
            try:
                figure_format(path, UsageError)
            except UsageError as err:
                raise UsageError(f"{label} {err}" if label else str(err)) from None
        for i, (second, path) in enumerate(self.named):
            for first, other in self.named[:i]:
                if _same(path, other):
                    raise UsageError(
                        f"{first} and {second} name the same file ({path}): one would "
                        f"overwrite the other; give each its own name.")
        for label, path in self.outputs:
            for source, other in self.inputs:
                if other.is_file() and _same(path, other):
                    raise UsageError(
                        f"{label} names the command's input {source} ({path}): writing it "
                        f"would destroy what is read; give the output another name.")

    def __enter__(self) -> OutputPaths:
        self.check()
        try:
            for folder in [p.parent for p in self.files] + self.folders:
                self.created += [p for p in _missing_folders(folder) if p not in self.created]
                check_writable(folder, what="output folder")
        except BaseException:
            self.undo()
            raise
        return self

    def undo(self) -> None:
        """Remove the folders this created that are still empty, deepest first."""
        for folder in sorted(self.created, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):  # not empty (something was written) or gone
                folder.rmdir()
        self.created = []

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        if kind is not None:
            self.undo()
            return
        # the outermost new folder of each path says it all ("created runs", not "runs/x")
        for folder in (p for p in self.created if p.parent not in self.created):
            if folder.is_dir():
                print(f"probdl: created folder {folder}", file=sys.stderr)
