"""UAI files (the UAI inference competition format) for Bayesian networks, read and written here.

    from probdl.graph import BayesNet
    BayesNet.example("asia").write("asia.uai")
    bn = BayesNet.read("asia.uai")          # variables var_0, var_1, ...; states "0", "1", ...

pgmpy 1.1's ``UAIReader`` and ``UAIWriter`` disagree with the format (the child's index must
vary fastest in each table) and with each other, so a pgmpy round trip scrambles the CPTs; this
module follows the format: a family's scope lists the parents and then the child, and the child's
state varies fastest. UAI carries no names, so names and labels are ``var_i`` and ``"0", "1", ...``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import ModelError

__all__ = ["format_uai", "parse_uai"]


class _Tokens:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.items = [(m.group(0), text.count("\n", 0, m.start()) + 1)
                      for m in re.finditer(r"\S+", text)]
        self.pos = 0

    def next(self, what: str, kind=int):
        if self.pos >= len(self.items):
            last = self.items[-1][1] if self.items else 1
            raise ModelError(f"{self.path}, line {last}: malformed UAI file (it ends where "
                             f"{what} should follow)")
        token, line = self.items[self.pos]
        self.pos += 1
        try:
            return kind(token)
        except ValueError:
            raise ModelError(f"{self.path}, line {line}: malformed UAI file ({what} expected, "
                             f"found {token!r})") from None

    def line(self) -> int:
        return self.items[min(self.pos, len(self.items) - 1)][1] if self.items else 1


def parse_uai(path: Path, text: str):
    """(states, parents, cpts) of the Bayesian network in a UAI file's text."""
    tok = _Tokens(path, text)
    kind = tok.next("the network type", str)
    if kind.upper() != "BAYES":
        raise ModelError(f"{path}, line 1: a {kind} model is not a Bayesian network; only "
                         f"BAYES UAI files can be read")
    n = tok.next("the number of variables")
    cards = [tok.next("a variable's number of states") for _ in range(n)]
    names = [f"var_{i}" for i in range(n)]
    n_funcs = tok.next("the number of functions")
    if n_funcs != n:
        raise ModelError(f"{path}, line {tok.line()}: a Bayesian network needs one CPT per "
                         f"variable ({n}); the file declares {n_funcs}")
    scopes = []
    for _ in range(n):
        size = tok.next("a scope size")
        scope = [tok.next("a variable index") for _ in range(size)]
        if not scope or any(not 0 <= s < n for s in scope):
            raise ModelError(f"{path}, line {tok.line()}: scope {scope} names a variable "
                             f"outside 0..{n - 1}")
        scopes.append(scope)
    states = {v: [str(s) for s in range(k)] for v, k in zip(names, cards, strict=True)}
    parents, cpts = {}, {}
    for scope in scopes:
        size = tok.next("a table size")
        shape = [cards[s] for s in scope]
        if size != int(np.prod(shape)):
            raise ModelError(f"{path}, line {tok.line()}: table of {names[scope[-1]]} has "
                             f"{size} entries; its scope needs {int(np.prod(shape))}")
        values = np.array([tok.next("a probability", float) for _ in range(size)])
        table = values.reshape(shape)  # parents..., child (fastest)
        child = names[scope[-1]]
        parents[child] = [names[s] for s in scope[:-1]]
        cpts[child] = np.moveaxis(table, -1, 0)
    if len(cpts) != n:
        raise ModelError(f"{path}: some variable has no CPT (each must be the last variable of "
                         f"exactly one scope)")
    return states, parents, cpts


def format_uai(bn) -> str:
    """The network as UAI text; variables numbered in ``bn.variables`` order."""
    index = {v: i for i, v in enumerate(bn.variables)}
    lines = ["BAYES", str(len(index)), " ".join(str(len(bn.states[v])) for v in bn.variables),
             str(len(index))]
    for v in bn.variables:
        scope = [index[p] for p in bn.parents(v)] + [index[v]]
        lines.append(" ".join(map(str, [len(scope), *scope])))
    lines.append("")
    for v in bn.variables:
        table = np.moveaxis(np.asarray(bn.cpd(v)), 0, -1).reshape(-1)
        lines.append(str(table.size))
        lines.append(" ".join(repr(float(x)) for x in table))
        lines.append("")
    return "\n".join(lines)
