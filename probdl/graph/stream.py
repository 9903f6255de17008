"""Batched Bayesian-network inference over tables larger than memory, chunk by chunk.

    from probdl.graph import BayesNet
    from probdl.graph.stream import stream_marginals, stream_map, stream_impute
    bn = BayesNet.example("asia")
    bn.sample(100_000, seed=0).to_csv("cases.csv", index=False)
    stream_marginals(bn, "cases.csv", "posteriors.csv", chunk_rows=20_000)
    stream_map(bn, "cases.csv", "map.parquet")          # Parquet needs pyarrow

The source (CSV, or Parquet with pyarrow) is read ``chunk_rows`` rows at a time; each chunk
goes through one batched call of the network and its answer is appended to the output, so
memory holds one chunk whatever the table's size. Row ``i`` of the output answers row ``i`` of
the source. The output is written atomically: a temporary file beside it, fsync, rename.

Under torchrun (``torchrun --nproc_per_node N script.py``) chunk ``c`` goes to rank
``c mod N``; each rank writes its chunks to a parts folder beside the output, and rank 0
merges them in order once every rank is done (the output must then sit on a file system all
ranks share). Rank 0 shows the progress bar.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from probdl import distributed as ddp
from probdl.errors import DataError, InferenceError
from probdl.files import atomic_write, check_writable

__all__ = [
    "MISSING_MARKERS",
    "TASKS",
    "missing_as_nan",
    "read_chunks",
    "stream",
    "stream_impute",
    "stream_map",
    "stream_marginals",
]

TASKS = ("marginals", "map", "impute")
_CSV = {".csv", ".txt"}
_PARQUET = {".parquet", ".pq"}


def _format(path: Path, role: str) -> str:
    suffix = path.suffix.lower()
    if suffix in _CSV:
        return "csv"
    if suffix in _PARQUET:
        return "parquet"
    raise DataError(
        f"{path}: the {role} must end in .csv or .parquet (got {suffix or 'no suffix'!r}); "
        "rename it or convert it."
    )


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise DataError(
            "reading or writing Parquet needs the pyarrow package, which is not installed; "
            "`pip install pyarrow`, or use CSV files."
        ) from None
    return pyarrow


# How CSV files spell a missing cell. A cell holding one of these is missing unless it is a
# state label of its column's variable: child, insurance and hailfinder have states named
# "None", which pandas' default reader would silently turn into gaps.
MISSING_MARKERS = frozenset(
    {"", "NA", "N/A", "n/a", "#N/A", "<NA>", "NaN", "nan", "null", "NULL", "None"}
)


def missing_as_nan(
    frame: pd.DataFrame, states: Mapping[str, Sequence[str]] | None = None
) -> pd.DataFrame:
    """``frame`` (cells as text) with :data:`MISSING_MARKERS` cells set to NaN, except in a
    column whose variable (in ``states``) has a state of that name."""
    out = frame.copy()
    for column in out.columns:
        labels = set((states or {}).get(column, ()))
        markers = [m for m in MISSING_MARKERS if m not in labels]
        out[column] = out[column].where(~out[column].isin(markers))
    return out


def read_chunks(
    source: str | Path, chunk_rows: int, states: Mapping[str, Sequence[str]] | None = None
) -> Iterator[pd.DataFrame]:
    """The rows of a CSV or Parquet file, ``chunk_rows`` at a time, states as labels.

    CSV cells are read as text; empty cells and the usual spellings of a gap
    (:data:`MISSING_MARKERS`: ``NA``, ``NaN``, ``None``, ...) are missing, except where a
    variable in ``states`` has a state of that name.
    """
    source = Path(source)
    kind = _format(source, "source")
    if not source.is_file():
        raise DataError(f"{source}: no such file.")
    if kind == "csv":
        try:
            reader = pd.read_csv(source, dtype=str, chunksize=chunk_rows,
                                 keep_default_na=False)
            with reader:
                for chunk in reader:
                    yield missing_as_nan(chunk, states)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise DataError(f"{source}: not a readable CSV file ({err}).") from None
        return
    pa = _pyarrow()
    try:
        parquet = pa.parquet.ParquetFile(source)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{source}: not a readable Parquet file ({err}).") from None
    for batch in parquet.iter_batches(batch_size=chunk_rows):
        yield batch.to_pandas()


def _count_rows(source: Path) -> int | None:
    """Rows of a Parquet file from its footer; None for CSV (the bar then counts up)."""
    if _format(source, "source") != "parquet":
        return None
    return int(_pyarrow().parquet.ParquetFile(source).metadata.num_rows)


def _answer(bn: Any, task: str, rows: pd.DataFrame, targets: Sequence[str] | None
            ) -> pd.DataFrame:
    if task == "marginals":
        marginals = bn.marginals(rows)
        columns = {}
        for var, probs in marginals.items():
            for k, state in enumerate(bn.states[var]):
                columns[f"P({var}={state})"] = probs[:, k]
        return pd.DataFrame(columns)
    if task == "map":
        return bn.map(rows, targets=targets).reset_index(drop=True)
    filled, _ = bn.impute(rows)
    return filled.reset_index(drop=True)


class _Writer:
    """Appends answer chunks to an open CSV or Parquet file with one fixed schema."""

    def __init__(self, fh: Any, kind: str):
        self.fh, self.kind = fh, kind
        self.parquet = None
        self.schema = None
        self.header = True

    def write(self, frame: pd.DataFrame) -> None:
        if self.kind == "csv":
            frame.to_csv(self.fh, index=False, header=self.header)
            self.header = False
            return
        pa = _pyarrow()
        if self.parquet is None:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            self.schema = table.schema
            self.parquet = pa.parquet.ParquetWriter(self.fh, self.schema)
        else:
            table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
        self.parquet.write_table(table)

    def close(self) -> None:
        if self.parquet is not None:
            self.parquet.close()


@contextlib.contextmanager
def _output(path: Path, kind: str) -> Iterator[_Writer]:
    with atomic_write(path, "w" if kind == "csv" else "wb") as fh:
        writer = _Writer(fh, kind)
        yield writer
        writer.close()


def stream(
    bn: Any,
    source: str | Path,
    out: str | Path,
    task: str = "marginals",
    targets: Sequence[str] | None = None,
    chunk_rows: int = 10_000,
    distributed: bool | None = None,
    progress: bool = True,
) -> Path:
    """Answer ``task`` for every row of ``source`` and write the answers to ``out``.

    Parameters
    ----------
    bn : BayesNet
        The network; rows' columns are any subset of its variables, NaN = unobserved.
    source, out : path
        ``.csv`` or ``.parquet`` (Parquet needs pyarrow). ``out`` is replaced atomically.
    task : {"marginals", "map", "impute"}
        ``marginals``: a column ``P(var=state)`` for every variable and state;
        ``map``: :meth:`BayesNet.map` per row (the targets' joint MAP state and ``log_prob``);
        ``impute``: the rows with every missing cell filled by :meth:`BayesNet.impute`.
    targets : list of str, optional
        For ``map``: the variables to maximize over (default: each row's unobserved ones).
    chunk_rows : int
        Rows per chunk: memory grows with it, not with the table.
    distributed : bool, optional
        Split chunks across the ranks of a torchrun job (default: when launched by torchrun).
    progress : bool
        A tqdm bar over rows (rank 0 only).

    Returns
    -------
    pathlib.Path
        ``out``, complete on every rank when this returns.
    """
    from tqdm.auto import tqdm

    if task not in TASKS:
        raise InferenceError(f"task must be one of {TASKS}, got {task!r}.")
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int | np.integer) \
            or chunk_rows < 1:
        raise DataError(f"chunk_rows must be an integer >= 1, got {chunk_rows!r}.")
    source, out = Path(source), Path(out)
    out_kind = _format(out, "output")
    if out_kind == "parquet":
        _pyarrow()
    if source.resolve() == out.resolve():
        raise DataError(f"{out}: the output would overwrite its own source; pick another path.")
    if not source.is_file():
        raise DataError(f"{source}: no such file.")
    check_writable(out.parent, what="output folder")  # before hours of inference, not after
    many = ddp.resolve(distributed)
    rank, world = ddp.rank(), ddp.world_size()
    total = _count_rows(source)
    bar = tqdm(total=total, unit="rows", desc=f"{task}", disable=not progress or rank != 0,
               leave=False)
    parts = None
    if many:
        token = ddp.broadcast_object(uuid.uuid4().hex if rank == 0 else None)
        parts = out.parent / f".{out.name}.{token}.parts"
        parts.mkdir(parents=True, exist_ok=True)
    try:
        if parts is None:
            with _output(out, out_kind) as writer:
                for start, chunk in _numbered(source, chunk_rows, bn.states):
                    writer.write(_checked_answer(bn, task, chunk, targets, source, start))
                    bar.update(len(chunk))
            return out
        failure = None
        try:
            for index, (start, chunk) in enumerate(_numbered(source, chunk_rows, bn.states)):
                if index % world == rank:
                    answer = _checked_answer(bn, task, chunk, targets, source, start)
                    with _output(parts / f"{index:09d}{out.suffix}", out_kind) as writer:
                        writer.write(answer)
                # every rank walks every chunk, so rank 0's bar counts the whole table
                bar.update(len(chunk))
        except Exception as err:  # re-raised below, once every rank knows the job failed
            failure = err
        # all ranks agree on success before rank 0 merges, so none waits for a dead peer
        if ddp.sum_scalar(failure is not None) > 0:
            if rank == 0:
                shutil.rmtree(parts, ignore_errors=True)
            if failure is not None:
                raise failure
            raise DataError(f"streaming {source} failed on another rank; see its message.")
        if rank == 0:
            _merge(sorted(parts.iterdir()), out, out_kind)
            shutil.rmtree(parts, ignore_errors=True)
        ddp.barrier()
    finally:
        bar.close()
    return out


def _numbered(source: Path, chunk_rows: int, states) -> Iterator[tuple[int, pd.DataFrame]]:
    start = 0
    for chunk in read_chunks(source, chunk_rows, states):
        yield start, chunk
        start += len(chunk)


def _checked_answer(bn, task, chunk, targets, source, start) -> pd.DataFrame:
    try:
        return _answer(bn, task, chunk.reset_index(drop=True), targets)
    except (InferenceError, DataError) as err:
        raise type(err)(
            f"{source}, in the chunk of data rows {start}..{start + len(chunk) - 1} "
            f"(0-based; row numbers below count within the chunk): {err}"
        ) from None


def _merge(part_files: list[Path], out: Path, kind: str) -> None:
    """Concatenate the ranks' part files in chunk order (CSV: bytes, one header)."""
    with _output(out, kind) as writer:
        for i, part in enumerate(part_files):
            if kind == "csv":
                text = part.read_text()
                writer.fh.write(text if i == 0 else text.split("\n", 1)[1])
            else:
                writer.write(_pyarrow().parquet.read_table(part).to_pandas())


def stream_marginals(bn: Any, source: str | Path, out: str | Path, **kwargs: Any) -> Path:
    """``P(var=state | row)`` for every variable and row of ``source``: see :func:`stream`."""
    return stream(bn, source, out, task="marginals", **kwargs)


def stream_map(bn: Any, source: str | Path, out: str | Path, **kwargs: Any) -> Path:
    """The most probable completion of every row of ``source``: see :func:`stream`."""
    return stream(bn, source, out, task="map", **kwargs)


def stream_impute(bn: Any, source: str | Path, out: str | Path, **kwargs: Any) -> Path:
    """Every row of ``source`` with its missing cells filled: see :func:`stream`."""
    return stream(bn, source, out, task="impute", **kwargs)
