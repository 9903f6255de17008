"""BayesNet: a discrete Bayesian network, validated once, answered by the compiled engine.

    from probdl.graph import BayesNet
    bn = BayesNet.example("asia")
    bn.query(["lung"], evidence={"smoke": "yes"})["lung"]
    bn.marginals(bn.sample(100, seed=0).assign(lung=float("nan")))["lung"].shape   # (100, 2)

A network is immutable: its CPTs are read-only numpy arrays (``cpd(v)`` has shape
(k_v, k_parent1, ...), parents in ``parents(v)`` order) and no query changes it. CPT columns
within 1e-6 of summing to 1 (bnlearn files round their entries) are divided by their sum, so
every exact path answers the same distribution. Queries are answered by one compiled engine
per network and device (:mod:`probdl.graph.inference`); file formats live in
:mod:`probdl.graph.io`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

from ..errors import CPTError, InferenceError, ModelError
from . import io
from .inference import queries
from .inference.engine import DEFAULT_MEMORY_BUDGET, Engine

__all__ = ["BayesNet"]

_TOL = 1e-6


class BayesNet:
    """A discrete Bayesian network with exact, batched inference.

    Parameters
    ----------
    states : dict variable -> list of state labels (converted to str)
    parents : dict variable -> list of parent variables (missing key: no parents)
    cpts : dict variable -> array of shape (k_var, k_parent1, ...), columns summing to 1
    name : str, optional
        The network's name (``BayesNet.example`` and files set it; BIF/XMLBIF files keep it).

    Attributes
    ----------
    memory_budget : float
        Bytes the engine may use for one batch (default 2 GiB); rows are processed in blocks
        that fit, and a row whose cliques alone exceed it raises
        :class:`~probdl.errors.InferenceError` naming the clique (``method="sampling"`` helps).
    device : str or torch.device
        Where the engine runs: ``"cpu"`` (compiled loops) or a CUDA device (torch).
    """

    def __init__(self, states: Mapping[str, Sequence[Any]],
                 parents: Mapping[str, Sequence[str]], cpts: Mapping[str, Any],
                 name: str | None = None) -> None:
        self.name = name  # written into BIF/XMLBIF files; None: the file's stem
        self._pgmpy_states: dict[str, list] = {}  # from_pgmpy's labels when not all str
        self.memory_budget: float = DEFAULT_MEMORY_BUDGET
        self.device = "cpu"
        self._engines: dict[str, Any] = {}  # one compiled engine per device
        names = [str(v) for v in states]
        if len(set(names)) != len(names):
            raise ModelError(f"duplicate variable names in {names}")
        self._states = {str(v): [str(s) for s in ss] for v, ss in states.items()}
        for v, ss in self._states.items():
            if not ss or len(set(ss)) != len(ss):
                raise ModelError(f"variable {v!r} needs distinct state labels; got {ss}")
        raw_parents = {str(v): [str(p) for p in ps] for v, ps in parents.items()}
        for v, ps in raw_parents.items():
            if v not in self._states:
                raise ModelError(f"parents given for {v!r}, which is not a variable; "
                                 f"variables: {names}")
            for p in ps:
                if p not in self._states:
                    raise ModelError(f"parent {p!r} of {v!r} is not a variable; add it to "
                                     f"states or remove the edge (variables: {names})")
        graph = nx.DiGraph()
        graph.add_nodes_from(names)
        graph.add_edges_from((p, v) for v, ps in raw_parents.items() for p in ps)
        if not nx.is_directed_acyclic_graph(graph):
            cycle = " -> ".join(e[0] for e in nx.find_cycle(graph))
            raise ModelError(f"the graph has a cycle ({cycle}); a Bayesian network must be "
                             f"acyclic: remove one of these edges")
        order = {v: i for i, v in enumerate(names)}
        self._variables = list(nx.lexicographical_topological_sort(graph, key=order.get))
        self._parents = {v: list(raw_parents.get(v, [])) for v in self._variables}
        self._graph = graph
        self._cpts = {}
        for v in self._variables:
            if v not in cpts:
                raise ModelError(f"no CPT given for variable {v!r}")
            self._cpts[v] = self._check_cpt(v, cpts[v])
        self._index = {v: i for i, v in enumerate(self._variables)}
        self._state_index = {v: {s: i for i, s in enumerate(ss)} for v, ss in self._states.items()}

    def _check_cpt(self, v: str, table: Any) -> np.ndarray:
        shape = (len(self._states[v]), *[len(self._states[p]) for p in self._parents[v]])
        try:
            arr = np.array(table, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ModelError(f"CPT of {v!r} is not numeric: {err}") from None
        if arr.shape != shape:
            if arr.size == int(np.prod(shape)) and arr.ndim == 2 and arr.shape[0] == shape[0]:
                arr = arr.reshape(shape)  # pgmpy's (k, prod parent cards) layout
            else:
                raise ModelError(
                    f"CPT of {v!r} has shape {arr.shape} but its states and parents "
                    f"{self._parents[v]} need {shape} (k_var, k_parent1, ...)")
        if np.isnan(arr).any() or (arr < 0).any():
            raise ModelError(f"CPT of {v!r} has negative or NaN entries; probabilities must "
                             f"lie in [0, 1]")
        sums = arr.sum(axis=0)
        if np.abs(sums - 1).max(initial=0) > _TOL:
            bad = np.unravel_index(np.abs(sums - 1).argmax(), sums.shape)
            named = ", ".join(f"{p}={self._states[p][i]}"
                              for p, i in zip(self._parents[v], bad, strict=True))
            named = named or "no parents"
            raise CPTError(f"CPT of {v!r}: column {tuple(int(i) for i in bad)} ({named}) sums "
                           f"to {sums[bad]:.8g}, not 1 (tolerance {_TOL}); normalize it over "
                           f"the variable's states (axis 0)")
        # rounding in network files (columns off by up to 1e-7): divide so every exact path sees
        # one distribution; sums within float error of 1 stay as given (round trips are exact)
        arr = np.where(np.abs(sums - 1) > 1e-12, arr / sums, arr)
        arr.setflags(write=False)
        return arr

    # ------------------------------------------------------------------ construction
    @classmethod
    def example(cls, name: str) -> BayesNet:
        """A network bundled with pgmpy (asia, alarm, child, ..., munin), read offline."""
        return io.example(cls, name)

    @classmethod
    def read(cls, path) -> BayesNet:
        """Read a .bif, .xmlbif/.xml or .uai file (by suffix) through ``pgmpy.readwrite``."""
        return io.read(cls, path)

    def write(self, path) -> None:
        """Write the network as .bif, .xmlbif/.xml or .uai (by suffix), atomically."""
        io.write(self, path)

    @classmethod
    def from_pgmpy(cls, model) -> BayesNet:
        """Convert a pgmpy ``DiscreteBayesianNetwork`` (state order kept, labels as str)."""
        return io.from_pgmpy(cls, model)

    def to_pgmpy(self):
        """The network as a pgmpy ``DiscreteBayesianNetwork`` with ``TabularCPD`` s."""
        return io.to_pgmpy(self)

    @classmethod
    def from_structure(cls, edges: Iterable[tuple[str, str]],
                       states: Mapping[str, Sequence[Any]]) -> BayesNet:
        """A network with the given edges and states and uniform CPTs (fit it to data)."""
        parents: dict[str, list[str]] = {str(v): [] for v in states}
        for p, c in edges:
            if str(c) not in parents:
                raise ModelError(f"edge ({p!r}, {c!r}): {c!r} has no states; states lists "
                                 f"{list(parents)}")
            parents[str(c)].append(str(p))
        cards = {str(v): len(ss) for v, ss in states.items()}
        for v, ps in parents.items():
            for p in ps:
                if p not in cards:
                    raise ModelError(f"edge ({p!r}, {v!r}): {p!r} has no states; states lists "
                                     f"{list(cards)}")
        cpts = {v: np.full((cards[v], *[cards[p] for p in ps]), 1.0 / cards[v])
                for v, ps in parents.items()}
        return cls(states, parents, cpts)

    # ------------------------------------------------------------------ accessors
    @property
    def graph(self) -> nx.DiGraph:
        """The DAG as a ``networkx.DiGraph`` (a copy: editing it does not change the network)."""
        return self._graph.copy()

    @property
    def variables(self) -> list[str]:
        """Variable names in topological order."""
        return list(self._variables)

    @property
    def states(self) -> dict[str, list[str]]:
        """State labels of every variable, in CPT order."""
        return {v: list(ss) for v, ss in self._states.items()}

    def parents(self, var: str) -> list[str]:
        """Parents of ``var`` in CPT axis order."""
        return list(self._parents[self.check_variable(var)])

    def cpd(self, var: str, frame: bool = False) -> np.ndarray | pd.DataFrame:
        """The CPT of ``var``, shape (k_var, k_parent1, ...), read-only.

        ``frame=True``: the same numbers as a labelled ``pandas.DataFrame``, one row per state
        of ``var`` (index named ``var``), one column per configuration of the parents (their
        states, a MultiIndex over several parents, named after them); a variable without
        parents has the single column ``P(var)``. Each column sums to 1.
        """
        table = self._cpts[self.check_variable(var)]
        if not frame:
            return table
        parents = self._parents[var]
        if parents:
            columns = pd.MultiIndex.from_product([self._states[p] for p in parents],
                                                 names=parents)
        else:
            columns = pd.Index([f"P({var})"])
        return pd.DataFrame(table.reshape(len(self._states[var]), -1),
                            index=pd.Index(self._states[var], name=var), columns=columns)

    def series_index(self, var: str) -> pd.Index:
        """The states of ``var`` as a pandas Index (built once: queries return many Series)."""
        cache = self.__dict__.setdefault("_index_cache", {})
        if var not in cache:
            cache[var] = pd.Index(self._states[var], name=var)
        return cache[var]

    def check_variable(self, var: str) -> str:
        """``var`` if it is a variable of the network, else an InferenceError listing them."""
        if var not in self._index:
            raise InferenceError(f"unknown variable {var!r}; the network's variables are "
                                 f"{self._variables}")
        return var

    def __repr__(self) -> str:
        edges = self._graph.number_of_edges()
        return f"BayesNet({len(self._variables)} variables, {edges} edges)"

    def engine(self, device: Any = None) -> Engine:
        """The network compiled for ``device`` (default ``self.device``), built on first use and
        kept: its junction tree (``engine.tree``) and every cache of the queries live there."""
        key = str(device if device is not None else self.device)
        if key not in self._engines:
            cards = [len(self._states[v]) for v in self._variables]
            parents = [[self._index[p] for p in self._parents[v]] for v in self._variables]
            cpts = [self._cpts[v] for v in self._variables]
            if key == "cpu":
                self._engines[key] = Engine.compile(cards, parents, cpts, self._variables)
            else:
                from .inference.torch_engine import TorchEngine
                base = self.engine("cpu")
                self._engines[key] = TorchEngine(base, key)
        return self._engines[key]

    # ------------------------------------------------------------------ evidence
    def encode(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """Rows (DataFrame or dict) -> state indices (B, n) in ``variables`` order (0 where
        unobserved) and the observed mask (B, n); unknown names and labels raise
        InferenceError naming them."""
        if isinstance(rows, dict):
            return self._encode_case(rows)
        frame = queries.as_frame(rows)
        b = len(frame)
        states = np.zeros((b, len(self._variables)), dtype=np.int64)
        observed = np.zeros((b, len(self._variables)), dtype=bool)
        columns = [str(c) for c in frame.columns]
        unknown = [c for c in columns if c not in self._index]
        if unknown:
            raise InferenceError(f"unknown variable {unknown[0]!r} in evidence; the network's "
                                 f"variables are {self._variables}")
        values = frame.to_numpy(dtype=object)
        # one hash pass over every cell; missing cells (NaN, None, NA) get code -1
        try:
            codes, uniques = pd.factorize(values.ravel())
        except TypeError:  # a list, dict or other unhashable cell: name its column
            for c, var in enumerate(columns):
                try:
                    pd.factorize(values[:, c])
                except TypeError:
                    raise InferenceError(
                        f"{var!r} holds a value that is not a state label (a list, dict or "
                        f"other object); valid states: {self._states[var]}") from None
            raise
        codes = codes.reshape(values.shape)
        seen = codes >= 0
        width = len(columns)
        # each distinct (label, column) pair is looked up once, in a dense table of them all
        key = np.where(seen, codes * width + np.arange(width), 0)
        present = np.zeros(len(uniques) * width + 1, dtype=bool)
        present[key[seen]] = True
        pairs = np.flatnonzero(present)
        lookup = np.zeros(present.size, dtype=np.int64)
        lookup[pairs] = [_state_code(uniques[p // width], self._state_index[columns[p % width]])
                         for p in pairs.tolist()]
        bad = pairs[lookup[pairs] < 0]
        if bad.size:
            label, c = uniques[bad[0] // width], int(bad[0] % width)
            row = int(np.flatnonzero(codes[:, c] == bad[0] // width)[0])
            var = columns[c]
            raise InferenceError(f"unknown state {label!r} of {var!r} (row {row}); valid "
                                 f"states: {self._states[var]}")
        mapped = np.where(seen, lookup[key], 0)
        target = [self._index[c] for c in columns]
        states[:, target] = mapped
        observed[:, target] = seen
        return states, observed

    def _encode_case(self, case: dict) -> tuple[np.ndarray, np.ndarray]:
        """One case as a dict (the fast path of single queries: no DataFrame)."""
        states = np.zeros((1, len(self._variables)), dtype=np.int64)
        observed = np.zeros((1, len(self._variables)), dtype=bool)
        for var, value in case.items():
            var = str(var)
            if var not in self._index:
                raise InferenceError(f"unknown variable {var!r} in evidence; the network's "
                                     f"variables are {self._variables}")
            if value is None or (isinstance(value, float) and np.isnan(value)):
                continue
            code = _state_code(value, self._state_index[var])
            if code < 0:
                raise InferenceError(f"unknown state {value!r} of {var!r} in evidence; valid "
                                     f"states: {self._states[var]}")
            states[0, self._index[var]] = code
            observed[0, self._index[var]] = True
        return states, observed

    # ------------------------------------------------------------------ queries
    def query(self, targets, evidence=None, soft_evidence=None, joint: bool = False,
              method: str = "exact", n: int = 10_000, seed: int = 0):
        """Posterior of ``targets`` given evidence (dict var -> state label).

        Returns a dict var -> ``pandas.Series`` over the states, or with ``joint=True`` one
        Series indexed by a MultiIndex over the targets' states. ``method="sampling"`` uses
        likelihood weighting with ``n`` samples instead of exact inference.
        """
        return queries.query(self, targets, evidence, soft_evidence, joint, method, n, seed)

    def marginals(self, rows, soft_evidence=None, method: str = "exact", n: int = 2_000,
                  seed: int = 0) -> dict[str, np.ndarray]:
        """P(X | row) for every variable X and row: dict var -> numpy (B, k).

        ``method="sampling"`` estimates them by likelihood weighting with ``n`` samples per
        row, for networks whose cliques exceed the memory budget.
        """
        return queries.marginals(self, rows, soft_evidence, method, n, seed)

    def log_likelihood(self, rows) -> np.ndarray:
        """log P(observed part of each row), numpy (B,)."""
        return queries.log_likelihood(self, rows)

    def map(self, rows, targets=None) -> pd.DataFrame:
        """Most probable joint state of ``targets`` (default: the unobserved ones) per row."""
        return queries.map_states(self, rows, targets)

    def sample(self, n: int, seed: int = 0) -> pd.DataFrame:
        """``n`` rows drawn by forward sampling, states as labels."""
        from .inference.sampling import forward_sample
        return forward_sample(self, n, seed)

    def fit(self, rows, **kwargs) -> BayesNet:
        """Fit the CPTs to rows with missing cells by EM: see
        :func:`probdl.graph.learning.em.fit`."""
        from .learning.em import fit
        return fit(self, rows, **kwargs)

    def impute(self, rows, **kwargs):
        """Fill the missing cells of rows: see :func:`probdl.graph.impute.impute`."""
        from .impute import impute
        return impute(self, rows, **kwargs)


def _state_code(value: Any, lookup: dict[str, int]) -> int:
    """Index of a state label (str, or a number such as 1.0 for the label "1"); -1 if unknown."""
    code = lookup.get(str(value))
    if code is None and isinstance(value, float | np.floating) and float(value).is_integer():
        code = lookup.get(str(int(value)))
    return -1 if code is None else code
