"""Networks in and out: bundled examples, BIF / XMLBIF / UAI files, pgmpy round trips."""

from __future__ import annotations

import gzip
import warnings
from importlib import resources

import numpy as np
import pytest

from probdl.errors import ModelError
from probdl.graph import BayesNet
from probdl.graph.io import EXAMPLES
from tests.graph._graph_helpers import random_net


def _same(a: BayesNet, b: BayesNet) -> None:
    assert sorted(a.variables) == sorted(b.variables)
    assert a.states == b.states
    for v in a.variables:
        assert a.parents(v) == b.parents(v)
        np.testing.assert_array_equal(a.cpd(v), b.cpd(v))


@pytest.mark.parametrize("name", ["asia", "alarm", "child", "hailfinder"])
def test_fast_example_reader_equals_pgmpy_reader(name):
    from pgmpy.readwrite import BIFReader

    ref = resources.files("pgmpy") / "utils" / "example_models" / f"{name}.bif.gz"
    with ref.open("rb") as fh:
        text = gzip.decompress(fh.read()).decode()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = BIFReader(string=text).get_model()
    _same(BayesNet.example(name), BayesNet.from_pgmpy(model))


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_bundled_network_loads(name):
    bn = BayesNet.example(name)
    assert len(bn.variables) >= 2
    assert bn.graph.number_of_nodes() == len(bn.variables)
    pos = {v: i for i, v in enumerate(bn.variables)}
    assert all(pos[p] < pos[v] for v in bn.variables for p in bn.parents(v))


def test_unknown_example_names_the_choices():
    with pytest.raises(ModelError, match="alarm"):
        BayesNet.example("nope")


def test_pgmpy_round_trip_is_exact():
    bn = BayesNet.example("child")
    back = BayesNet.from_pgmpy(bn.to_pgmpy())
    _same(bn, back)
    assert back.variables == bn.variables


@pytest.mark.parametrize("suffix", ["bif", "xmlbif"])
def test_file_round_trip_keeps_everything(tmp_path, suffix):
    bn = BayesNet.example("alarm")
    path = tmp_path / f"alarm.{suffix}"
    bn.write(path)
    _same(bn, BayesNet.read(path))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_uai_round_trip_keeps_structure_and_cpts(tmp_path):
    bn = random_net(4, n_vars=5)
    path = tmp_path / "net.uai"
    bn.write(path)
    back = BayesNet.read(path)
    name = {f"var_{i}": v for i, v in enumerate(bn.variables)}
    for u in back.variables:
        assert [name[p] for p in back.parents(u)] == bn.parents(name[u])
        np.testing.assert_array_equal(back.cpd(u), bn.cpd(name[u]))


def test_uai_reader_follows_the_format(tmp_path):
    """The child's state varies fastest in a table (pgmpy 1.1's UAIReader gets this wrong)."""
    path = tmp_path / "t.uai"
    path.write_text("BAYES\n3\n2 2 3\n3\n1 0\n1 1\n3 0 1 2\n\n2\n0.2 0.8\n2\n0.4 0.6\n"
                    "12\n0.1 0.2 0.7\n0.3 0.3 0.4\n0.5 0.25 0.25\n0.6 0.3 0.1\n")
    bn = BayesNet.read(path)
    assert bn.parents("var_2") == ["var_0", "var_1"]
    np.testing.assert_allclose(bn.cpd("var_2")[:, 0, 1], [0.3, 0.3, 0.4])
    np.testing.assert_allclose(bn.cpd("var_2")[:, 1, 0], [0.5, 0.25, 0.25])


def test_xmlbif_refuses_labels_it_cannot_read_back(tmp_path):
    with pytest.raises(ModelError, match=r"\.bif instead"):
        BayesNet.example("child").write(tmp_path / "child.xmlbif")


@pytest.mark.parametrize(("suffix", "text", "line"), [
    ("bif", "network x {\n}\nvariable A {\n  type discrete [ 2 ] { a, b };\n}\n"
            "probability ( A ) {\n  table 0.5, 0.5;\n}\nprobability ( B | A ) {\n"
            "  (a) 0.1, 0.9;\n}\n", 9),
    ("xml", "<BIF><NETWORK><VARIABLE>\n<NAME>A</NAME></NETWORK>", 2),
    ("uai", "BAYES\n2\n2 2\n2\n1 0\n2 0 1\n\n2\n 0.5 0.5\n4\n 0.1 0.9\n", 11),
    ("uai", "BAYES\n2\n2 2\n2\n1 0\n2 0 x\n", 6),
])
def test_malformed_files_name_file_and_line(tmp_path, suffix, text, line):
    path = tmp_path / f"bad.{suffix}"
    path.write_text(text)
    with pytest.raises(ModelError, match=rf"bad\.{suffix}, line {line}: malformed"):
        BayesNet.read(path)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(ModelError, match="no such network file"):
        BayesNet.read(tmp_path / "none.bif")
    with pytest.raises(ModelError, match="unknown network format"):
        BayesNet.read(tmp_path / "net.json")


def test_from_structure_gives_uniform_cpts():
    bn = BayesNet.from_structure([("A", "B"), ("C", "B")],
                                 {"A": ["0", "1"], "B": ["x", "y", "z"], "C": [1, 2]})
    assert bn.parents("B") == ["A", "C"]
    assert bn.states["C"] == ["1", "2"]
    np.testing.assert_allclose(bn.cpd("B"), np.full((3, 2, 2), 1 / 3))
    assert set(bn.graph.edges()) == {("A", "B"), ("C", "B")}
    with pytest.raises(ModelError, match="'D' has no states"):
        BayesNet.from_structure([("D", "B")], {"B": ["x", "y"]})
