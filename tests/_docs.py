"""Run what a Markdown page shows, as a reader would: its Python blocks and `probdl` lines.

    cd "$(mktemp -d)" && PYTHONPATH=/path/to/repo python -m tests._docs /path/to/repo/README.md

The blocks of one page run in order in the current folder and share one namespace, so a page
may make a file in one block and use it in the next. In a ```python block every line runs. In
a shell block (no language, bash, sh, console) each line starting with ``probdl`` runs through
``probdl.cli.main`` and must exit 0; a ``torchrun ... -m probdl.cli ARGS`` line (several
machines, GPUs, data a test machine lacks) has its ARGS parsed by the real parser, not run;
other lines (make, pip, pytest) are not probdl's and are left alone. A block preceded by
``<!-- docs-test: skip REASON -->`` is skipped, and the reason is required.

Quick settings (the only rewrites, so a page runs in seconds): ``--epochs N`` and ``epochs=N``
become 1, and a bare ``probdl demo`` runs its graph part (tests/cli/test_demo.py and ``make
demo`` cover the rest). A failure is reported as ``PAGE, line N: ...`` with the traceback or
the command's exit code, and the run stops there.
"""

from __future__ import annotations

import re
import shlex
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```\s*([\w-]*)\s*$")
SKIP = re.compile(r"^<!--\s*docs-test:\s*skip\b\s*(.*?)\s*-->\s*$")
SHELL = {"", "bash", "sh", "console", "shell"}
QUICK = [
    (re.compile(r"--epochs[ =]\d+"), "--epochs 1"),
    (re.compile(r"\bepochs=\d+"), "epochs=1"),
    (re.compile(r"^probdl demo$"), "probdl demo --parts graph"),
]


@dataclass
class Block:
    page: str
    line: int  # of the block's first line of content
    language: str
    text: str
    skip: str | None  # the reason, when the page marks the block as not to run


@dataclass
class Command:
    page: str
    line: int
    text: str  # as the page shows it (continuation lines joined)
    argv: list[str]  # what follows `probdl` (or `-m probdl.cli`), quick settings applied
    run: bool  # False: parsed only (a torchrun line)


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, with the skip mark that precedes each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise ValueError(f"{path.name}, line {i + 1}: a code block that never closes")
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        mark = SKIP.match(before.strip())
        if mark and not mark.group(1):
            raise ValueError(f"{path.name}, line {i}: docs-test: skip needs a reason")
        found.append(Block(path.name, i + 2, m.group(1).lower(), "\n".join(lines[i + 1:end]),
                           mark.group(1) if mark else None))
        i = end + 1
    return found


def quick(text: str) -> str:
    for pattern, replacement in QUICK:
        text = pattern.sub(replacement, text)
    return text


def commands(block: Block) -> list[Command]:
    """The `probdl` lines of a shell block (run) and its torchrun lines (parsed)."""
    if block.language not in SHELL:
        return []
    found = []
    lines = block.text.splitlines()
    i = 0
    while i < len(lines):
        start, text = i, lines[i]
        while text.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text.rstrip()[:-1] + " " + lines[i].strip()
        i += 1
        try:
            words = shlex.split(text, comments=True)
        except ValueError:
            continue
        if words[:1] == ["probdl"]:
            argv = shlex.split(quick(" ".join(shlex.quote(w) for w in words)))[1:]
            found.append(Command(block.page, block.line + start, text.strip(), argv, True))
        elif "probdl.cli" in words and words[words.index("probdl.cli") - 1] == "-m":
            argv = words[words.index("probdl.cli") + 1:]
            found.append(Command(block.page, block.line + start, text.strip(), argv, False))
    return found


def runnable(path: Path) -> bool:
    """Whether a page has anything this module runs or parses."""
    return any(b.skip is None and (b.language == "python" or commands(b)) for b in blocks(path))


class Failed(Exception):
    """A block or command of a page failed; the message names the page and the line."""


def _run_command(command: Command) -> None:
    from probdl.cli import build_parser, main

    where = f"{command.page}, line {command.line}: `{command.text}`"
    if not command.run:
        try:
            build_parser().parse_args(command.argv)
        except SystemExit as exit_:
            raise Failed(f"{where}: its probdl arguments do not parse "
                         f"(exit {exit_.code})") from None
        return
    print(f"\n$ probdl {' '.join(command.argv)}   # {command.page}, line {command.line}",
          file=sys.stderr, flush=True)
    try:
        code = main(command.argv)
    except SystemExit as exit_:  # --help, or a usage error
        code = exit_.code or 0
    except Exception:
        raise Failed(f"{where} raised:\n{traceback.format_exc()}") from None
    if code != 0:
        raise Failed(f"{where} exited {code} (its error is printed above)")


def run_page(path: Path) -> None:
    """Run a page's blocks in order in the current folder; raise Failed at the first failure."""
    namespace: dict = {"__name__": "__main__"}
    for block in blocks(path):
        if block.skip is not None:
            print(f"{block.page}, line {block.line}: skipped ({block.skip})", file=sys.stderr)
            continue
        if block.language == "python":
            # padded so that a traceback's line numbers are the page's own
            code = compile("\n" * (block.line - 1) + quick(block.text), block.page, "exec")
            try:
                exec(code, namespace)
            except Exception:
                raise Failed(f"{block.page}, line {block.line}: the Python block fails:\n"
                             f"{traceback.format_exc()}") from None
            continue
        for command in commands(block):
            _run_command(command)


if __name__ == "__main__":
    page = Path(sys.argv[1])
    try:
        run_page(page)
    except Failed as failure:
        print(f"\nFAILED {failure}", file=sys.stderr)
        sys.exit(1)
    print(f"{page.name}: every block ran", file=sys.stderr)
