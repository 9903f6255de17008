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


def _typed_pgmpy_model():
    """A pgmpy model whose states are not strings: ints for C, bools for A."""
    from pgmpy.factors.discrete import TabularCPD
    from pgmpy.models import DiscreteBayesianNetwork

    model = DiscreteBayesianNetwork([("A", "C")])
    model.name = "typed"
    model.add_cpds(
        TabularCPD("A", 2, [[0.3], [0.7]], state_names={"A": [True, False]}),
        TabularCPD("C", 3, [[0.2, 0.5], [0.3, 0.25], [0.5, 0.25]], evidence=["A"],
                   evidence_card=[2], state_names={"C": [0, 1, 2], "A": [True, False]}))
    return model


def test_pgmpy_gets_back_the_state_names_it_had_types_included():
    from pgmpy.inference import VariableElimination

    model = _typed_pgmpy_model()
    bn = BayesNet.from_pgmpy(model)
    assert bn.states == {"A": ["True", "False"], "C": ["0", "1", "2"]}  # probdl's: str
    back = bn.to_pgmpy()
    for var in ("A", "C"):
        assert back.get_cpds(var).state_names == model.get_cpds(var).state_names
    assert back.name == "typed"
    ref = VariableElimination(model).query(["A"], evidence={"C": 2}, show_progress=False)
    mine = VariableElimination(back).query(["A"], evidence={"C": 2}, show_progress=False)
    np.testing.assert_allclose(mine.values, ref.values, atol=1e-12)
    # a network fitted from it keeps them too
    fitted = bn.fit(bn.sample(200, seed=0), max_iter=3)
    assert fitted.to_pgmpy().get_cpds("C").state_names["C"] == [0, 1, 2]


@pytest.mark.parametrize("suffix", [".bif", ".xmlbif"])
def test_written_files_keep_the_network_name(tmp_path, suffix):
    from pgmpy import readwrite

    path = tmp_path / f"net{suffix}"
    BayesNet.example("asia").write(path)
    reader = readwrite.BIFReader if suffix == ".bif" else readwrite.XMLBIFReader
    assert reader(str(path)).get_model().name == "asia"  # pgmpy's own reading of the file
    assert BayesNet.read(path).name == "asia"
    fitted = BayesNet.read(path).fit(BayesNet.example("asia").sample(100, seed=0), max_iter=2)
    fitted.write(tmp_path / f"fitted{suffix}")
    assert BayesNet.read(tmp_path / f"fitted{suffix}").name == "asia"
    BayesNet.from_structure([("a", "b")], {"a": ["x", "y"], "b": ["u", "v"]}).write(
        tmp_path / f"new{suffix}")  # no name of its own: the file's, never "unknown"
    assert BayesNet.read(tmp_path / f"new{suffix}").name == "new"


def test_pgmpy_deprecation_notices_never_reach_users(tmp_path):
    """In a fresh process, as a user runs it (pytest's own filters hide these notices)."""
    import subprocess
    import sys

    script = """
from probdl.graph import BayesNet, learn_structure
from probdl.hybrid import digit_sum_network
bn = BayesNet.example("asia")
for suffix in (".bif", ".xmlbif", ".uai"):
    bn.write("net" + suffix)
    BayesNet.read("net" + suffix)
BayesNet.from_pgmpy(bn.to_pgmpy())
rows = bn.sample(300, seed=0)
learn_structure(rows).fit(rows, method="bayes")
bn.fit(rows.drop(columns="either"), latent={"either": 2}, max_iter=2)
digit_sum_network()
"""
    done = subprocess.run([sys.executable, "-W", "always", "-c", script], cwd=tmp_path,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pgmpy" not in done.stderr and "Warning" not in done.stderr, done.stderr[-2000:]


RAIN = """network rain {{
}}
variable Grass {{
  type discrete [ 2 ] {{ dry, {label} }};
}}
variable Worm {{
  type discrete [ 2 ] {{ yes, no }};
}}
probability ( Grass ) {{
  table 0.7, 0.3;
}}
probability ( Worm | Grass ) {{
  (dry) 0.1, 0.9;
  ({label}) 0.8, 0.2;
}}
"""


def test_a_bif_label_pgmpy_cannot_read_is_named_with_its_line(tmp_path):
    path = tmp_path / "rain.bif"
    path.write_text(RAIN.format(label="wet (soaked)"))
    with pytest.raises(ModelError) as err:
        BayesNet.read(path)
    message = str(err.value)
    assert message.startswith(f"{path}, line 14: ") and "'wet (soaked)' of 'Grass'" in message
    assert "sums to" not in message and "'wet_soaked'" in message
    path.write_text(RAIN.format(label="wet_soaked"))  # the suggested fix reads
    assert BayesNet.read(path).states["Grass"] == ["dry", "wet_soaked"]


def test_bif_refuses_to_write_labels_it_cannot_read_back(tmp_path):
    bn = BayesNet({"G": ["dry", "wet (soaked)"], "W": ["yes", "no"]}, {"W": ["G"]},
                  {"G": [0.7, 0.3], "W": [[0.1, 0.8], [0.9, 0.2]]})
    with pytest.raises(ModelError, match=r"'wet \(soaked\)' of 'G'.*rename the state, e\.g\. "
                                         r"'wet_soaked'"):
        bn.write(tmp_path / "rain.bif")
    # pgmpy's XMLBIF writer would silently write 'wet _soaked_': refused as well
    with pytest.raises(ModelError, match=r"would change the state label 'wet \(soaked\)' of "
                                         r"'G'.*e\.g\. 'wet_soaked'"):
        bn.write(tmp_path / "rain.xmlbif")
    assert not list(tmp_path.iterdir())
    plain = BayesNet({"G": ["dry", "wet_soaked"], "W": ["yes", "no"]}, {"W": ["G"]},
                     {"G": [0.7, 0.3], "W": [[0.1, 0.8], [0.9, 0.2]]})
    for suffix in (".bif", ".xmlbif"):
        plain.write(tmp_path / f"rain{suffix}")
        _same(BayesNet.read(tmp_path / f"rain{suffix}"), plain)
