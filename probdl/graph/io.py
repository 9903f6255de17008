"""Networks in and out: pgmpy's bundled examples, BIF / XMLBIF / UAI files, pgmpy models.

    from probdl.graph import BayesNet
    bn = BayesNet.example("child")
    bn.write("child.xmlbif"); BayesNet.read("child.xmlbif").states == bn.states   # True
    model = bn.to_pgmpy(); BayesNet.from_pgmpy(model)

Bundled networks are bnlearn BIF files inside the pgmpy package; they are parsed here with a
small regular-expression reader (about 50x faster than pyparsing) and, should one not fit its
simple grammar, with pgmpy's ``BIFReader``. BIF and XMLBIF files go through
``pgmpy.readwrite`` and keep names, states and CPTs exactly; UAI files go through
:mod:`probdl.graph.uai`, because pgmpy's UAI reader and writer scramble CPTs.
"""

from __future__ import annotations

import contextlib
import gzip
import re
import warnings
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..files import atomic_write

__all__ = ["EXAMPLES", "NETWORK_SUFFIXES", "example", "from_pgmpy", "inherit", "network_format",
           "quiet_pgmpy", "read", "to_pgmpy", "write"]

EXAMPLES = ("asia", "cancer", "earthquake", "sachs", "survey", "alarm", "barley", "child",
            "insurance", "mildew", "water", "hailfinder", "hepar2", "win95pts", "andes",
            "diabetes", "link", "munin1", "munin2", "munin3", "munin4", "pathfinder", "pigs",
            "munin")

_VARIABLE = re.compile(r"variable\s+([^\s{]+)\s*\{\s*type\s+discrete\s*\[\s*(\d+)\s*\]\s*"
                       r"\{([^}]*)\}\s*;\s*\}")
_PROBABILITY = re.compile(r"probability\s*\(\s*([^|)\s]+)\s*(?:\|([^)]*))?\)\s*\{([^}]*)\}")
_ROW = re.compile(r"\(([^)]*)\)([^;]*);")


@contextlib.contextmanager
def quiet_pgmpy() -> Iterator[None]:
    """Hide pgmpy's deprecation notices (1.1 announces renames for 1.3 on import and on calls):
    they are about probdl's calls, which a user of probdl cannot change."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def inherit(template, network):
    """Give ``network`` (fitted from ``template``) its name and pgmpy's state labels."""
    network.name = getattr(template, "name", None)
    native = getattr(template, "_pgmpy_states", {})
    network._pgmpy_states = {v: labels for v, labels in native.items()
                             if network.states.get(v) == [str(s) for s in labels]}
    return network


class _Unsupported(Exception):
    """The fast reader met a construct it does not handle; pgmpy's reader takes over."""


def _parse_bif(text: str):
    states = {m.group(1): [s.strip() for s in m.group(3).split(",")]
              for m in _VARIABLE.finditer(text)}
    if not states or text.count("variable ") != len(states):
        raise _Unsupported
    parents, cpts = {}, {}
    for m in _PROBABILITY.finditer(text):
        v = m.group(1)
        ps = [p.strip() for p in (m.group(2) or "").split(",") if p.strip()]
        body = m.group(3).strip()
        shape = (len(states[v]), *[len(states[p]) for p in ps])
        if body.startswith("table"):
            if ps:
                raise _Unsupported
            arr = np.array([float(x) for x in body[5:].rstrip(";").split(",")])
        else:
            arr = np.full(shape, np.nan)
            lookups = [{s: i for i, s in enumerate(states[p])} for p in ps]
            for row in _ROW.finditer(body):
                config = [s.strip() for s in row.group(1).split(",")]
                pos = tuple(lk[s] for lk, s in zip(lookups, config, strict=True))
                arr[(slice(None), *pos)] = [float(x) for x in row.group(2).split(",")]
        parents[v], cpts[v] = ps, arr.reshape(shape)
    if len(cpts) != len(states):
        raise _Unsupported
    return states, parents, cpts


def example(cls, name: str):
    if name not in EXAMPLES:
        raise ModelError(f"unknown example network {name!r}; choose one of {list(EXAMPLES)}")
    ref = resources.files("pgmpy") / "utils" / "example_models" / f"{name}.bif.gz"
    with ref.open("rb") as fh:
        text = gzip.decompress(fh.read()).decode("utf-8")
    try:
        states, parents, cpts = _parse_bif(text)
    except (_Unsupported, KeyError, ValueError):
        with quiet_pgmpy():
            from pgmpy.readwrite import BIFReader
            bn = from_pgmpy(cls, BIFReader(string=text).get_model())
        bn.name = name  # the bundled files all say "network unknown"
        return bn
    return cls(states, parents, cpts, name=name)


def from_pgmpy(cls, model):
    with quiet_pgmpy():
        return _from_pgmpy(cls, model)


def _from_pgmpy(cls, model):
    states, parents, cpts = {}, {}, {}
    cpds = {cpd.variable: cpd for cpd in model.get_cpds()}
    for v in model.nodes():
        if v not in cpds:
            raise ModelError(f"pgmpy model has no CPD for node {v!r}; add one with add_cpds")
        cpd = cpds[v]
        ps = list(cpd.variables[1:])
        if set(ps) != set(model.get_parents(v)):
            raise ModelError(f"CPD of {v!r} conditions on {ps} but the graph gives parents "
                             f"{list(model.get_parents(v))}")
        states[v] = list(cpd.state_names[v])
        parents[v] = ps
        cpts[v] = np.asarray(cpd.values, dtype=np.float64).reshape(
            [int(c) for c in cpd.cardinality])
    bn = cls(states, parents, cpts, name=getattr(model, "name", None) or None)
    # bn.states holds str labels; pgmpy gets its own back (0 stays 0, not "0") from to_pgmpy
    bn._pgmpy_states = {v: list(ss) for v, ss in states.items()
                        if not all(isinstance(s, str) for s in ss)}
    return bn


def to_pgmpy(bn):
    with quiet_pgmpy():
        return _to_pgmpy(bn)


def _to_pgmpy(bn):
    from pgmpy.factors.discrete import TabularCPD
    from pgmpy.models import DiscreteBayesianNetwork

    labels = {**bn.states, **getattr(bn, "_pgmpy_states", {})}
    model = DiscreteBayesianNetwork()
    model.name = bn.name or ""
    model.add_nodes_from(bn.variables)
    model.add_edges_from((p, v) for v in bn.variables for p in bn.parents(v))
    cpds = []
    for v in bn.variables:
        ps = bn.parents(v)
        table = np.array(bn.cpd(v))
        cpds.append(TabularCPD(
            variable=v, variable_card=table.shape[0], values=table.reshape(table.shape[0], -1),
            evidence=ps or None, evidence_card=list(table.shape[1:]) or None,
            state_names={u: list(labels[u]) for u in [v, *ps]}))
    model.add_cpds(*cpds)
    return model


# The network file formats by suffix (what `network_format` and the CLI accept).
NETWORK_SUFFIXES = {".bif": "bif", ".xmlbif": "xmlbif", ".xml": "xmlbif", ".uai": "uai"}


def network_format(path: str | Path) -> str:
    """"bif", "xmlbif" or "uai" by the file's suffix; ModelError for any other suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in NETWORK_SUFFIXES:
        raise ModelError(f"{path}: unknown network format {suffix!r}; use .bif, .xmlbif, .xml "
                         f"or .uai")
    return NETWORK_SUFFIXES[suffix]


def _line_of(err: BaseException) -> str:
    for e in (err, err.__cause__, err.__context__):
        if e is None:
            continue
        line = getattr(e, "lineno", None)
        if line is None and getattr(e, "position", None):
            line = e.position[0]
        if line is not None:
            return f", line {line}"
    m = re.search(r"line[: ]+(\d+)", str(err))
    return f", line {m.group(1)}" if m else ""


def _line_of_token(path: Path, err: BaseException) -> str:
    """Where a file mentions the name an error complains about (first line holding it)."""
    m = re.search(r"'([^']+)'", str(err))
    if not m:
        return ""
    word = re.compile(rf"(?<![\w.]){re.escape(m.group(1))}(?![\w.])")
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if word.search(line):
                return f", line {number}"
    return ""


_XML_SAFE = re.compile(r"[A-Za-z0-9_]+")


def _plain(label: str) -> str:
    """``label`` with every run of other characters than letters, digits and _ as one "_"."""
    return re.sub(r"[^A-Za-z0-9_]+", "_", label).strip("_") or "state"


_PARENTS = re.compile(r"probability\s*\(\s*[^|)\s]+\s*\|([^)]*)\)")


def _check_bif_rows(path: Path, text: str) -> None:
    """Refuse a parent's state label that pgmpy's BIF reader cannot read in a CPT row.

    A row such as ``(wet (soaked)) 0.8, 0.2;`` ends its states at the first ")": pgmpy reads
    the label "wet (soaked", matches no state and leaves that CPT column all zeros, so the
    error would otherwise name the symptom ("column sums to 0"), not the label.
    """
    parents = {p.strip() for m in _PARENTS.finditer(text) for p in m.group(1).split(",")}
    lines = text.splitlines()
    for m in _VARIABLE.finditer(text):
        var, labels = m.group(1), [s.strip() for s in m.group(3).split(",")]
        bad = [label for label in labels if set(label) & set("()")]
        if var not in parents or not bad:
            continue
        declared = text.count("\n", 0, m.start()) + 1
        row = next((n for n, line in enumerate(lines[declared:], declared + 1)
                    if line.lstrip().startswith("(") and bad[0] in line), declared)
        fix = _plain(bad[0])
        raise ModelError(
            f"{path}, line {row}: pgmpy's BIF reader cannot read the state label {bad[0]!r} of "
            f"{var!r} in a CPT row (its parentheses end the row's states); rename it without "
            f"( or ), e.g. {fix!r}, in the variable block (line {declared}) and in every row")


def read(cls, path):
    path = Path(path)
    kind = network_format(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such network file")
    if kind == "uai":
        from .uai import parse_uai

        states, parents, cpts = parse_uai(path, path.read_text(encoding="utf-8"))
        try:
            return cls(states, parents, cpts, name=path.stem)  # UAI files carry no name
        except ModelError as err:
            raise ModelError(f"{path}: {err}") from None
    if kind == "bif":
        _check_bif_rows(path, path.read_text(encoding="utf-8", errors="replace"))
    try:
        with quiet_pgmpy():
            from pgmpy import readwrite

            if kind == "bif":
                model = readwrite.BIFReader(str(path)).get_model()
            else:
                model = readwrite.XMLBIFReader(str(path)).get_model()
    except ModelError:
        raise
    except Exception as err:  # pgmpy and its parsers raise many kinds on a malformed file
        where = _line_of(err) or _line_of_token(path, err)
        raise ModelError(f"{path}{where}: malformed {kind.upper()} file "
                         f"({type(err).__name__}: {err})") from None
    try:
        bn = from_pgmpy(cls, model)
    except ModelError as err:
        raise ModelError(f"{path}: {err}") from None
    if not bn.variables:
        raise ModelError(f"{path}: the file defines no variables (empty or cut short?)")
    return bn


def write(bn, path) -> None:
    path = Path(path)
    kind = network_format(path)
    if kind == "bif":
        parents = {p for v in bn.variables for p in bn.parents(v)}
        odd = [(v, s) for v in sorted(parents) for s in bn.states[v] if set(s) & set("()")]
        odd += [(v, s) for v, ss in bn.states.items() for s in ss if set(s) & set(",;{}")]
        if odd:
            raise ModelError(f"{path}: pgmpy's BIF reader cannot read back the state label "
                             f"{odd[0][1]!r} of {odd[0][0]!r} (, ; {{ }} anywhere, ( ) in a "
                             f"parent's states); rename the state, e.g. {_plain(odd[0][1])!r}")
    if kind == "xmlbif":
        # pgmpy's XMLBIF writer silently replaces every other character by "_"
        odd = [(v, s) for v, ss in bn.states.items() for s in ss if not _XML_SAFE.fullmatch(s)]
        if odd:
            raise ModelError(f"{path}: pgmpy's XMLBIF writer would change the state label "
                             f"{odd[0][1]!r} of {odd[0][0]!r} (it keeps letters, digits and _ "
                             f"only); write .bif instead, or rename the state, e.g. "
                             f"{_plain(odd[0][1])!r}")
    if kind == "uai":
        from .uai import format_uai

        text = format_uai(bn)
    else:
        # the writers' str() is the file's text (write_bif/write_xmlbif go through it too);
        # a network without a name takes the file's, not pgmpy's "unknown"
        model = to_pgmpy(bn)
        model.name = bn.name or path.stem
        with quiet_pgmpy():
            from pgmpy import readwrite

            writer = readwrite.BIFWriter if kind == "bif" else readwrite.XMLBIFWriter
            text = str(writer(model))
    with atomic_write(path, "w") as fh:
        fh.write(text)
