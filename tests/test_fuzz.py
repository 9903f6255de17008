"""Bad input, swept by hypothesis, for the Bayesian-network half: a correct result or a ProbdlError.

Targets: mutated network files (BIF, XMLBIF, UAI) for ``BayesNet.read``; random evidence dicts,
soft evidence and row frames for ``query``/``marginals``/``log_likelihood``/``map``, checked
against brute-force enumeration of asia's 256 joint states whenever they succeed. Any other
exception, a wrong answer or a hang (pytest-timeout) fails the sweep. Images and the command
line: tests/test_fuzz_cli.py; scale, counts and triage: tests/_fuzz.py.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, seed
from hypothesis import strategies as st

from probdl.errors import ProbdlError
from probdl.graph import BayesNet
from tests._fuzz import SEED, _case, _quiet, _settings, junk_text, report_counts  # noqa: F401


# ---- brute force on asia ----------------------------------------------------------------------
class Enumeration:
    """Asia's joint distribution as a table of all 2^8 states: the reference for every query."""

    def __init__(self, bn: BayesNet):
        self.bn = bn
        self.variables = list(bn.variables)
        self.index = {v: j for j, v in enumerate(self.variables)}
        cards = [len(bn.states[v]) for v in self.variables]
        self.codes = np.array(list(itertools.product(*map(range, cards))))
        p = np.ones(len(self.codes))
        for v in self.variables:
            axes = [self.codes[:, self.index[v]]]
            axes += [self.codes[:, self.index[u]] for u in bn.parents(v)]
            p *= bn.cpd(v)[tuple(axes)]
        self.joint = p

    def weights(self, evidence: dict[str, int], soft: dict[str, np.ndarray] | None = None):
        w = self.joint.copy()
        for v, s in evidence.items():
            w = w * (self.codes[:, self.index[v]] == s)
        for v, vec in (soft or {}).items():
            w = w * np.asarray(vec, dtype=float)[self.codes[:, self.index[v]]]
        return w

    def posterior(self, var: str, w: np.ndarray) -> np.ndarray:
        k = len(self.bn.states[var])
        return np.bincount(self.codes[:, self.index[var]], weights=w, minlength=k) / w.sum()

    def map_log_prob(self, targets: list[str], w: np.ndarray) -> float:
        keys = [tuple(row) for row in self.codes[:, [self.index[t] for t in targets]]]
        sums: dict = {}
        for key, value in zip(keys, w, strict=True):
            sums[key] = sums.get(key, 0.0) + value
        return math.log(max(sums.values()) / w.sum())


@pytest.fixture(scope="module")
def asia():
    return BayesNet.example("asia")


@pytest.fixture(scope="module")
def enum(asia):
    return Enumeration(asia)


def _valid_label(bn, var, value) -> int | None:
    """The state index of value if it is one of var's labels as text, else None."""
    if isinstance(value, str) and value in bn.states[var]:
        return list(bn.states[var]).index(value)
    return None


# ---- strategies -------------------------------------------------------------------------------
ASIA = ["asia", "tub", "smoke", "lung", "bronc", "either", "xray", "dysp"]
odd_values = st.one_of(
    st.sampled_from(["yes", "no", "YES", " yes", "", "nan", "None", "1", "0"]),
    junk_text, st.none(), st.just(float("nan")), st.integers(-3, 3),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
    st.lists(st.sampled_from(["yes", "no"]), max_size=2), st.binary(max_size=3),
)
names = st.one_of(st.sampled_from(ASIA), st.sampled_from(ASIA), junk_text, st.integers(-1, 9),
                  st.none())
soft_vectors = st.one_of(
    st.lists(st.one_of(st.floats(-1, 3), st.sampled_from([math.nan, math.inf, -math.inf])),
             min_size=0, max_size=3),
    st.lists(st.floats(0.01, 3), min_size=2, max_size=2),
    st.just([0.0, 0.0]), st.just([[0.2, 0.8]]), st.just("yes"), st.none(),
)


# ---- 1. mutated network files -----------------------------------------------------------------
@pytest.fixture(scope="module")
def network_texts(asia, tmp_path_factory):
    folder = tmp_path_factory.mktemp("nets")
    texts = _ShortDict()
    with _quiet():
        for suffix in (".bif", ".xmlbif", ".uai"):
            asia.write(folder / f"asia{suffix}")
            texts[suffix] = (folder / f"asia{suffix}").read_text()
    return texts


class _ShortDict(dict):
    """Asia's files as text, shown by name only in hypothesis's failure reports."""

    def __repr__(self) -> str:
        return "<asia's BIF, XMLBIF and UAI texts>"


TOKENS = ["{", "}", ";", "(", ")", ",", "|", "<", ">", "/", "\"", "=", " ", "\n", "-1", "0",
          "1", "2", "0.5", "1e309", "nan", "-0.0", "variable", "probability", "table",
          "discrete", "[ 2 ]", "[ 0 ]", "yes", "no", "asia", "BAYES", "MARKOV", "<VARIABLE>",
          "<OUTCOME>", "<!DOCTYPE", "é", "\x00", "\t"]
mutation = st.tuples(
    st.sampled_from(["truncate", "delete", "insert", "number", "duplicate_line", "swap_lines"]),
    st.floats(0, 1), st.floats(0, 1), st.one_of(st.sampled_from(TOKENS), junk_text),
)
NUMBER = re.compile(r"-?\d+(\.\d+)?(e-?\d+)?")


def _mutate(text: str, ops) -> str:
    for op, a, b, token in ops:
        i, j = sorted((int(a * len(text)), int(b * len(text))))
        lines = text.split("\n")
        li, lj = int(a * (len(lines) - 1)), int(b * (len(lines) - 1))
        if op == "truncate":
            text = text[:i]
        elif op == "delete":
            text = text[:i] + text[j:j + 1 + (j - i) % 40]
        elif op == "insert":
            text = text[:i] + token + text[i:]
        elif op == "number":
            numbers = list(NUMBER.finditer(text))
            if numbers:
                m = numbers[int(a * (len(numbers) - 1))]
                text = text[:m.start()] + token + text[m.end():]
        elif op == "duplicate_line":
            text = "\n".join([*lines[:li + 1], lines[li], *lines[li + 1:]])
        else:
            lines[li], lines[lj] = lines[lj], lines[li]
            text = "\n".join(lines)
    return text


def _check_network(bn: BayesNet) -> None:
    """A network that was read must be a valid one: normalized CPTs, and queries answer."""
    assert len(bn.variables) > 0
    for var in bn.variables:
        table = np.asarray(bn.cpd(var), dtype=float)
        assert np.all(np.isfinite(table)) and np.all(table >= 0)
        np.testing.assert_allclose(table.sum(axis=0), 1.0, atol=1e-6)
    posterior = bn.query([bn.variables[-1]])[bn.variables[-1]]
    assert np.isclose(posterior.sum(), 1.0) and np.all(np.isfinite(posterior.to_numpy()))


# BIF drawn less often: pgmpy's BIF parser takes about a second per file
@pytest.mark.timeout(150)
@seed(SEED)
@_settings(36)
@given(suffix=st.sampled_from([".bif", ".xmlbif", ".xmlbif", ".xmlbif", ".uai", ".uai", ".uai"]),
       ops=st.lists(mutation, min_size=1, max_size=3))
def test_mutated_network_files_read_or_raise_probdl_errors(network_texts, tmp_path_factory,
                                                           suffix, ops):
    path = tmp_path_factory.mktemp("m", numbered=True) / f"net{suffix}"
    text = _mutate(network_texts[suffix], ops)
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    _case("BayesNet.read (mutated BIF/XMLBIF/UAI)", {"suffix": suffix, "text": text},
          lambda: BayesNet.read(path), _check_network)


# ---- 2. evidence --------------------------------------------------------------------------------
@pytest.mark.timeout(150)
@seed(SEED)
@_settings(150)
@given(targets=st.one_of(st.lists(names, max_size=3), names),
       evidence=st.one_of(st.dictionaries(names, odd_values, max_size=4), st.none(),
                          st.just([]), st.just("smoke=yes")),
       soft=st.one_of(st.none(), st.dictionaries(names, soft_vectors, max_size=2)),
       joint=st.booleans())
def test_query_answers_exactly_or_raises(asia, enum, targets, evidence, soft, joint):
    _case("BayesNet.query (evidence, soft evidence)",
          {"targets": targets, "evidence": evidence, "soft": soft, "joint": joint},
          lambda: asia.query(targets, evidence=evidence, soft_evidence=soft, joint=joint),
          lambda answer: _check_query(asia, enum, targets, evidence, soft, joint, answer))


def _check_query(asia, enum, targets, evidence, soft, joint, answer):
    target_list = [targets] if isinstance(targets, str) else list(targets)
    series = [answer] if joint else [answer[t] for t in target_list]
    for s in series:
        assert np.all(np.isfinite(s.to_numpy())) and np.isclose(s.sum(), 1.0)
    labels = {v: _valid_label(asia, v, x) for v, x in (evidence or {}).items()} \
        if isinstance(evidence, dict) else {}
    soft_ok = all(np.shape(v) == (2,) for v in (soft or {}).values())
    if joint or None in labels.values() or not soft_ok or not all(
            t in ASIA for t in target_list):
        return
    w = enum.weights(labels, {v: np.asarray(x, float) for v, x in (soft or {}).items()})
    for t, s in zip(target_list, series, strict=True):
        np.testing.assert_allclose(s.to_numpy(), enum.posterior(t, w), rtol=1e-9, atol=1e-12)


cells = st.one_of(st.sampled_from(["yes", "no"]), st.just(np.nan), st.just(None), odd_values)
columns = st.lists(st.one_of(st.sampled_from(ASIA), junk_text), min_size=0, max_size=5)


@st.composite
def frames(draw):
    cols = draw(columns)
    n = draw(st.integers(0, 6))
    data = {c: [draw(cells) for _ in range(n)] for c in dict.fromkeys(cols)}
    frame = pd.DataFrame(data, index=range(n)) if data else pd.DataFrame(index=range(n))
    kind = draw(st.sampled_from(["object", "category", "as-is", "dict", "series", "list"]))
    if kind == "category" and len(frame.columns):
        with contextlib.suppress(Exception):
            frame = frame.astype("category")
    if kind == "dict":
        return {c: v[0] for c, v in data.items() if v} if n else dict.fromkeys(cols, "yes")
    if kind == "series":
        return frame.iloc[0] if n else pd.Series(dtype=object)
    if kind == "list":
        return [list(r) for r in frame.itertuples(index=False)]
    return frame


def _row_labels(asia, frame) -> list[dict[str, int]] | None:
    """Each row's evidence as state indices if every cell is a label or missing, else None."""
    if not isinstance(frame, pd.DataFrame) or not set(frame.columns) <= set(ASIA):
        return None
    rows = []
    for _, row in frame.astype(object).iterrows():
        evidence = {}
        for var, value in row.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            code = _valid_label(asia, var, value)
            if code is None:
                return None
            evidence[var] = code
        rows.append(evidence)
    return rows


@pytest.mark.timeout(200)
@seed(SEED)
@_settings(150)
@given(rows=frames(), which=st.sampled_from(["marginals", "log_likelihood", "map", "map_t"]),
       targets=st.lists(st.sampled_from(ASIA), min_size=1, max_size=2, unique=True))
def test_row_queries_answer_exactly_or_raise(asia, enum, rows, which, targets):
    def call():
        if which == "marginals":
            return asia.marginals(rows)
        if which == "log_likelihood":
            return asia.log_likelihood(rows)
        return asia.map(rows, targets=targets if which == "map_t" else None)

    _case(f"BayesNet.{which.replace('_t', '')} (row frames)",
          {"rows": rows, "which": which, "targets": targets}, call,
          lambda answer: _check_rows(asia, enum, rows, which, targets, answer))


def _check_rows(asia, enum, rows, which, targets, answer):
    expected = _row_labels(asia, rows)
    if which == "marginals":
        for var in ASIA:
            assert np.all(np.isfinite(answer[var]))
            np.testing.assert_allclose(answer[var].sum(axis=1), 1.0, atol=1e-9)
    if expected is None:
        return
    for i, evidence in enumerate(expected):
        w = enum.weights(evidence)
        if which == "marginals":
            for var in ASIA:
                np.testing.assert_allclose(answer[var][i], enum.posterior(var, w), atol=1e-10)
        elif which == "log_likelihood":
            assert answer[i] == pytest.approx(math.log(w.sum()), rel=1e-9, abs=1e-12)
        else:
            hidden = [v for v in ASIA if v not in evidence]
            chosen = targets if which == "map_t" else hidden
            if not chosen:
                continue
            assert answer["log_prob"].iloc[i] == pytest.approx(enum.map_log_prob(chosen, w),
                                                              abs=1e-9)


FOUND = {  # what the sweep found, each once a raw exception; now each a clear ProbdlError
    "query evidence not a dict": lambda bn: bn.query("asia", evidence="smoke=yes"),
    "query targets None": lambda bn: bn.query(None),
    "query targets a number": lambda bn: bn.query(0),
    "list as a cell": lambda bn: bn.marginals(pd.DataFrame({"bronc": [["no", "no"]]})),
    "list as evidence": lambda bn: bn.query("xray", evidence={"bronc": ["no", "no"]}),
    "soft evidence as text": lambda bn: bn.query("smoke", soft_evidence={"smoke": "yes"}),
}


@pytest.mark.parametrize("case", sorted(FOUND))
def test_what_the_sweep_found_raises_probdl_errors(asia, case):
    with pytest.raises(ProbdlError):
        FOUND[case](asia)


def test_what_the_sweep_found_elsewhere(asia, tmp_path, capsys):
    from probdl.bnn import evaluate
    from probdl.cli import main

    (tmp_path / "empty.bif").write_text("")
    with pytest.raises(ProbdlError, match="defines no variables"):
        BayesNet.read(tmp_path / "empty.bif")
    assert len(asia.map(pd.DataFrame(), targets=["asia"])) == 0
    model = __import__("probdl.bnn", fromlist=["BayesianCNN"]).BayesianCNN(
        1, 3, (8, 8), filters=(4,), dense=(8,))
    with pytest.raises(ProbdlError, match="class indices"):
        evaluate(model, (torch.rand(1, 1, 8, 8), "0"))
    assert main(["train", "--out", str(tmp_path / "run"), "--epochs", "1", "--seed", "-1"]) == 1
    assert "seed must be a whole number" in capsys.readouterr().err


def test_every_variable_observed_is_answered_too(asia, enum):
    """The sweep's first find: rows without a hidden variable."""
    rows = asia.sample(3, seed=3)
    marginals = asia.marginals(rows)
    codes = _row_labels(asia, rows)
    for i, evidence in enumerate(codes):
        w = enum.weights(evidence)
        for var in ASIA:
            np.testing.assert_allclose(marginals[var][i], enum.posterior(var, w), atol=1e-12)


