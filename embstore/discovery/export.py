"""Exports: Parquet files and Hugging Face ``datasets.Dataset``.

Both write one row per store row (or per vector, see ``pool``): the id, every
row coordinate, then one fixed-size list column per variable. Rows are
streamed in blocks of ``block_rows`` (one Parquet row group / one Arrow record
batch each), so a store larger than memory exports with one block in memory.

The HF dataset is backed by an Arrow stream file written the same way and
memory-mapped by :meth:`datasets.Dataset.from_file` (no copy into the HF
cache), so ``add_faiss_index`` / ``get_nearest_examples`` work on it directly.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._optional import attempt_import
from ..errors import ValidationError

__all__ = ["iter_record_batches", "to_hf_dataset", "write_arrow_stream", "write_parquet"]

#: Store rows per record batch / row group.
BLOCK_ROWS = 16384


def _variables(an: Any, variables: Sequence[str] | str | None) -> list[str]:
    if variables is None:
        names = list(an.variables)
        return [v for v in names if len(an.variables[v]) == 1] or names
    names = [variables] if isinstance(variables, str) else list(variables)
    known = set(an.variables) | set(an.ragged_variables)
    bad = [v for v in names if v not in known]
    if bad:
        raise ValidationError(f"variables {bad} are not in the store; variables: {sorted(known)}.")
    return names


def _coord_frame(an: Any) -> pd.DataFrame:
    df = an.coords.reset_index()
    return df.rename(columns={df.columns[0]: an.id_name}).reset_index(drop=True)


def iter_record_batches(
    an: Any,
    variables: Sequence[str] | str | None = None,
    pool: str | None = "mean",
    *,
    normalize: bool = False,
    block_rows: int = BLOCK_ROWS,
) -> Iterator[Any]:
    """Yield ``pyarrow.RecordBatch`` blocks of ids, coordinates and vectors.

    Parameters
    ----------
    an : EmbeddingAnalyzer
        Rows to export (a selection is fine).
    variables : str or list of str, optional
        Variables to export (default: every one-vector-per-row variable,
        else every dense variable).
    pool : str or None
        Pooling for variables with more dims (e.g. ``query_embeddings``):
        ``"mean"`` (default) gives one vector per row; ``None`` keeps them
        as nested fixed-size lists ``[query][hidden]``.
    normalize : bool
        L2-normalise the vectors (an inner-product index on them then
        ranks by cosine, as :meth:`EmbeddingAnalyzer.search` does).
    block_rows : int
        Store rows per batch.

    Yields
    ------
    pyarrow.RecordBatch
    """
    pa = attempt_import("pyarrow")
    names = _variables(an, variables)
    coords = _coord_frame(an)
    n = len(coords)
    arrays = {}
    for v in names:
        per_row = len(an.variables.get(v, ())) <= 1 or pool is not None
        arrays[v] = (an.vectors(v, pool=pool if not per_row or pool else "mean"), per_row)
    block_rows = max(1, int(block_rows))
    for s in range(0, n, block_rows):
        e = min(n, s + block_rows)
        cols = {c: pa.array(coords[c].to_numpy()[s:e]) for c in coords.columns}
        for v, (arr, per_row) in arrays.items():
            q = arr.shape[0] // max(n, 1)
            block = np.asarray(arr.data[s * q : e * q].compute(), dtype=np.float32)
            if normalize:
                norms = np.linalg.norm(block, axis=1, keepdims=True)
                block = (block / np.where(norms > 0, norms, 1)).astype(np.float32)
            d = block.shape[1]
            flat = pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1)), d)
            if not per_row:
                flat = pa.FixedSizeListArray.from_arrays(flat, q)
            cols[v] = flat
        yield pa.RecordBatch.from_pydict(cols)


def write_parquet(
    an: Any,
    path: str | os.PathLike,
    variables: Any = None,
    pool: str | None = "mean",
    *,
    normalize: bool = False,
    block_rows: int = BLOCK_ROWS,
) -> Path:
    """Write the rows of ``an`` to one Parquet file (one row group per block).

    Parameters
    ----------
    an : EmbeddingAnalyzer
        Rows to export.
    path : path
        Output ``.parquet`` file (replaced if present).
    variables, pool, normalize, block_rows
        As in :func:`iter_record_batches`.

    Returns
    -------
    pathlib.Path
    """
    pq = attempt_import("pyarrow.parquet")
    path = Path(path)
    batches = iter_record_batches(an, variables, pool, normalize=normalize, block_rows=block_rows)
    if not _write_batches(batches, path, lambda schema: pq.ParquetWriter(str(path), schema)):
        pa = attempt_import("pyarrow")  # no rows: an empty file with the id column
        pq.write_table(pa.table({an.id_name: pa.array([], pa.int64())}), str(path))
    return path


def _write_batches(batches: Any, path: Path, open_writer: Any) -> bool:
    """Write record batches through ``open_writer(schema)``; False when there were none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        for batch in batches:
            if writer is None:
                writer = open_writer(batch.schema)
            writer.write_batch(batch)
    finally:
        if writer is not None:
            writer.close()
    return writer is not None


def write_arrow_stream(
    an: Any,
    path: str | os.PathLike,
    variables: Any = None,
    pool: str | None = "mean",
    *,
    normalize: bool = False,
    block_rows: int = BLOCK_ROWS,
) -> Path:
    """Write the rows of ``an`` to an Arrow IPC stream file (the format HF datasets maps).

    Parameters
    ----------
    an : EmbeddingAnalyzer
        Rows to export.
    path : path
        Output ``.arrow`` file.
    variables, pool, normalize, block_rows
        As in :func:`iter_record_batches`.

    Returns
    -------
    pathlib.Path
    """
    pa = attempt_import("pyarrow")
    path = Path(path)
    batches = iter_record_batches(an, variables, pool, normalize=normalize, block_rows=block_rows)
    if not _write_batches(batches, path, lambda schema: pa.ipc.new_stream(str(path), schema)):
        raise ValidationError("no rows to export: the selection is empty.")
    return path


def to_hf_dataset(
    an: Any,
    variables: Any = None,
    pool: str | None = "mean",
    *,
    normalize: bool = False,
    path: str | os.PathLike | None = None,
    block_rows: int = BLOCK_ROWS,
) -> Any:
    """The rows of ``an`` as a Hugging Face :class:`datasets.Dataset`.

    Parameters
    ----------
    an : EmbeddingAnalyzer
        Rows to export.
    variables, pool, normalize, block_rows
        As in :func:`iter_record_batches`.
    path : path, optional
        Where the backing ``.arrow`` file is written (default: a new
        temporary folder, kept while the dataset is in use).

    Returns
    -------
    datasets.Dataset
        Memory-mapped from the Arrow file; vector columns are fixed-size
        float32 lists.
    """
    datasets = attempt_import("datasets")
    if path is None:
        path = Path(tempfile.mkdtemp(prefix="embstore-hf-")) / "data.arrow"
    arrow = write_arrow_stream(
        an, path, variables, pool, normalize=normalize, block_rows=block_rows
    )
    return datasets.Dataset.from_file(str(arrow))
