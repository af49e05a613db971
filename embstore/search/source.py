"""Block sources: one way to stream vectors, whatever holds them.

Every search routine in :mod:`embstore.search` reads its database through a
:class:`BlockSource`, which yields ``(start, block)`` pairs of contiguous
``float32`` blocks of at most ``block_rows`` rows. Anything array-like can be
wrapped (NumPy arrays, ``np.memmap``, dask or xarray arrays), as can a
callable that returns a fresh iterator on every call (which is how the
analyzer feeds a store chunk by chunk), so the same code runs on data that
fits in memory and on data that does not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.blocks import DEFAULT_BLOCK_ROWS, VectorBlocks
from ..analysis.spec import VectorSpec
from ..errors import SelectionError, ShapeMismatchError, ValidationError

__all__ = [
    "DEFAULT_BLOCK_ROWS",
    "BlockSource",
    "as_block_source",
    "as_float32_matrix",
    "positions_of_ids",
]


def positions_of_ids(labels: Any, id_name: str, ids: Any) -> np.ndarray:
    """Positions of the vectors whose id is in ``ids``, in the order of ``ids``.

    Parameters
    ----------
    labels : pandas.DataFrame
        One row per vector (``EmbeddingAnalyzer.labels``).
    id_name : str
        The id column.
    ids : scalar or sequence
        Wanted ids; every vector of each id is returned (several for
        unpooled, per-query vectors).

    Returns
    -------
    numpy.ndarray
        Integer positions into ``labels``.

    Raises
    ------
    SelectionError
        If an id is not among the labels; the message shows some that are.

    Examples
    --------
    >>> import pandas as pd
    >>> positions_of_ids(pd.DataFrame({"image_id": [7, 3, 9]}), "image_id", [9, 7]).tolist()
    [2, 0]
    """
    from .queries import unique_ids

    want = unique_ids(ids)  # a repeated id counts once, at its last occurrence
    col = labels[id_name]
    present = pd.Index(col.unique())
    absent = want[present.get_indexer(want) < 0] if len(want) else want
    if len(absent):
        raise SelectionError(
            f"ids {absent[:5].tolist()} are not in the analysed rows ({len(present)} ids, "
            f"e.g. {present[:3].tolist()}); check the id values and the selection."
        )
    # vectorised join: rank of each labelled vector's id among the wanted ids
    rank = pd.Index(want).get_indexer(col.to_numpy())
    pos = np.flatnonzero(rank >= 0)
    return pos[np.argsort(rank[pos], kind="stable")]


def as_float32_matrix(x: Any, dim: int | None = None, name: str = "vectors") -> np.ndarray:
    """Return ``x`` as a C-contiguous 2-D ``float32`` array.

    Parameters
    ----------
    x : array_like
        A 2-D array (a 1-D array is taken as one vector).
    dim : int, optional
        Expected number of columns.
    name : str
        Name used in error messages.

    Returns
    -------
    numpy.ndarray
        ``float32``, C-contiguous, shape ``(n, dim)``.

    Raises
    ------
    ShapeMismatchError
        If ``x`` is not 1-D/2-D or has the wrong number of columns.

    Examples
    --------
    >>> as_float32_matrix([1, 2, 3]).shape
    (1, 3)
    """
    if hasattr(x, "compute") and not isinstance(x, np.ndarray):
        x = x.compute()
    arr = np.asarray(getattr(x, "values", x) if not isinstance(x, np.ndarray) else x)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ShapeMismatchError(
            f"{name} must be a 2-D array (n, dim); got shape {arr.shape}. "
            "Pool or reshape the vectors first."
        )
    if dim is not None and arr.shape[1] != dim:
        raise ShapeMismatchError(
            f"{name} have {arr.shape[1]} columns but the index/database has dim={dim}; "
            "pass vectors from the same variable, pooling and layer."
        )
    return np.ascontiguousarray(arr, dtype=np.float32)


class BlockSource:
    """Re-iterable stream of ``(start, float32 block)`` pairs.

    Parameters
    ----------
    factory : callable
        ``factory(block_rows)`` returns a fresh iterator of ``(start, block)``
        pairs (or bare blocks, in which case starts are counted).
    n : int, optional
        Total number of rows, when known.
    dim : int, optional
        Number of columns, when known (otherwise read from the first block).
    reiterable : bool
        Whether ``factory`` may be called more than once. One-shot sources
        (plain generators) support single-pass algorithms only.
    read_rows : int, optional
        Ask ``factory`` for at most this many rows per read. Reads are
        always joined (or split) into blocks of exactly the requested size. Use it when producing a row
        costs much more memory than its float32 vector (e.g. mean-pooling
        100 queries per row): reads stay small while search batches stay large.
    fresh : bool
        Whether every block is a new array that consumers may overwrite
        (normalise in place) instead of copying; False for views of the
        caller's data.

    Examples
    --------
    >>> src = as_block_source(np.ones((5, 3)))
    >>> [(s, b.shape) for s, b in src.blocks(2)]
    [(0, (2, 3)), (2, (2, 3)), (4, (1, 3))]
    """

    def __init__(
        self,
        factory: Callable[[int], Iterable[Any]],
        n: int | None = None,
        dim: int | None = None,
        reiterable: bool = True,
        read_rows: int | None = None,
        fresh: bool = False,
    ) -> None:
        self._factory = factory
        self.fresh = fresh
        self.max_read_rows = read_rows
        self.n = n
        self.dim = dim
        self.reiterable = reiterable
        self._used = False

    def blocks(self, block_rows: int = DEFAULT_BLOCK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, block)`` with ``block`` a float32 ``(m, dim)`` array.

        Parameters
        ----------
        block_rows : int
            Upper bound on rows per block (sources may yield smaller blocks).

        Yields
        ------
        start : int
            Position of the block's first row.
        block : numpy.ndarray
            C-contiguous float32 block.
        """
        if block_rows < 1:
            raise ValidationError(f"block_rows must be >= 1, got {block_rows}.")
        if self._used and not self.reiterable:
            raise ValidationError(
                "this block source is a one-shot iterator and was already consumed; "
                "pass an array or a callable returning a fresh iterator for multi-pass searches."
            )
        self._used = True
        yield from self._joined(block_rows)

    def _split(self, ask: int, block_rows: int) -> Iterator[tuple[int, np.ndarray]]:
        pos = 0
        for item in self._factory(ask):
            if isinstance(item, tuple) and len(item) == 2:
                start, block = item
                start = int(start)
            else:
                start, block = pos, item
            block = as_float32_matrix(block, self.dim, name="block")
            if self.dim is None:
                self.dim = block.shape[1]
            # split oversize blocks so memory stays bounded by block_rows
            for off in range(0, block.shape[0], block_rows):
                part = block[off : off + block_rows]
                yield start + off, part
            pos = start + block.shape[0]
        if self.n is None:
            self.n = pos

    def _joined(self, block_rows: int) -> Iterator[tuple[int, np.ndarray]]:
        read = min(int(self.max_read_rows or block_rows), block_rows)
        buf: list[np.ndarray] = []
        have = 0
        first = 0
        for start, part in self._split(read, read):
            if not buf and part.shape[0] == block_rows:
                yield start, part  # already a full block: no copy
                continue
            if not buf:
                first = start
            buf.append(part)
            have += part.shape[0]
            while have >= block_rows:
                out = np.empty((block_rows, part.shape[1]), dtype=np.float32)
                filled = 0
                while filled < block_rows:
                    take = min(block_rows - filled, buf[0].shape[0])
                    out[filled : filled + take] = buf[0][:take]
                    buf[0] = buf[0][take:]
                    if buf[0].shape[0] == 0:
                        buf.pop(0)
                    filled += take
                yield first, out
                first += block_rows
                have -= block_rows
        if have:
            yield first, np.concatenate(buf)

    def peek_dim(self) -> int:
        """Return the number of columns, reading one block if needed."""
        if self.dim is None:
            if not self.reiterable:
                raise ValidationError("pass dim= for a one-shot block iterator.")
            for _, _block in self.blocks(1024):
                break
            else:
                raise ValidationError("the block source is empty: no vectors to search.")
            self._used = False
        return int(self.dim)  # type: ignore[arg-type]

    def count(self) -> int:
        """Return the number of rows, streaming once if unknown."""
        if self.n is None:
            total = 0
            for _, block in self.blocks():
                total += block.shape[0]
            self.n = total
        return int(self.n)

    def read_rows(self, rows: np.ndarray, block_rows: int = DEFAULT_BLOCK_ROWS) -> np.ndarray:
        """Gather the given rows (any order, repeats allowed) in one streaming pass.

        Parameters
        ----------
        rows : array_like of int
            Row positions.
        block_rows : int
            Rows per streamed block.

        Returns
        -------
        numpy.ndarray
            float32 ``(len(rows), dim)`` in the order of ``rows``.
        """
        rows = np.asarray(rows, dtype=np.int64).ravel()
        n = self.n
        if n is not None and rows.size and (rows.min() < 0 or rows.max() >= n):
            raise ValidationError(
                f"row positions must lie in [0, {n}); got {rows.min()}..{rows.max()}."
            )
        out: np.ndarray | None = None
        for start, block in self.blocks(block_rows):
            if out is None:
                out = np.empty((rows.size, block.shape[1]), dtype=np.float32)
            hit = (rows >= start) & (rows < start + block.shape[0])
            if hit.any():
                out[hit] = block[rows[hit] - start]
        if out is None:
            out = np.empty((rows.size, self.dim or 0), dtype=np.float32)
        return out


def _array_factory(arr: Any) -> Callable[[int], Iterator[tuple[int, np.ndarray]]]:
    def factory(block_rows: int) -> Iterator[tuple[int, np.ndarray]]:
        n = arr.shape[0]
        for start in range(0, n, block_rows):
            yield start, arr[start : start + block_rows]

    return factory


def _is_vector_source(data: Any) -> bool:
    """An analyzer, a store or a store path (named vectors, read with a spec)."""
    import os

    from ..analysis.sources import _looks_like_store

    return (
        isinstance(data, (str, os.PathLike))
        or (hasattr(data, "vectors") and hasattr(data, "labels"))
        or _looks_like_store(data)
    )


def as_block_source(
    data: Any,
    dim: int | None = None,
    n: int | None = None,
    *,
    spec: VectorSpec | None = None,
) -> BlockSource:
    """Wrap vectors in a :class:`BlockSource`.

    Parameters
    ----------
    data : array_like, BlockSource, VectorBlocks, vector source, callable or iterable
        A 2-D NumPy / memmap / dask / xarray array (sliced lazily block by
        block); :class:`~embstore.analysis.blocks.VectorBlocks`; an analyzer,
        :class:`embstore.Store` or store path, whose vectors ``spec`` names
        (read by :func:`embstore.analysis.blocks.vector_blocks`); a callable
        ``f(block_rows)`` returning a fresh iterator of ``(start, block)``
        pairs or blocks (re-iterable); or any other iterable of blocks (one
        pass only).
    dim, n : int, optional
        Columns and rows, when known and not inferable.
    spec : VectorSpec, optional
        Which vectors of a vector source (default: the store's default
        variable, mean-pooled).

    Returns
    -------
    BlockSource

    Examples
    --------
    >>> src = as_block_source(np.zeros((10, 4), dtype=np.float16))
    >>> src.n, src.dim
    (10, 4)
    >>> as_block_source(face_path, spec=VectorSpec("embedding")).n
    80
    """
    if isinstance(data, BlockSource):
        return data
    if spec is not None or _is_vector_source(data):
        from ..analysis.blocks import vector_blocks

        data = vector_blocks(data, spec)[0]
    if isinstance(data, VectorBlocks):
        blocks = data
        return BlockSource(lambda _rows: iter(blocks), n=blocks.n, dim=blocks.dim, fresh=True)
    if hasattr(data, "shape") and hasattr(data, "__getitem__") and len(data.shape) in (1, 2):
        shape = data.shape
        if len(shape) == 1:
            data = np.asarray(data)[None, :]
            shape = data.shape
        if hasattr(data, "dims") and hasattr(data, "data"):  # xarray: slice the underlying array
            data = data.data
        return BlockSource(_array_factory(data), n=int(shape[0]), dim=int(shape[1]))
    if hasattr(data, "shape"):
        raise ShapeMismatchError(
            f"vectors must be 2-D (n, dim); got shape {tuple(data.shape)}. Pool or reshape first."
        )
    if callable(data):
        return BlockSource(data, n=n, dim=dim, reiterable=True)
    if isinstance(data, Iterable):
        it = iter(data)
        return BlockSource(lambda _rows: it, n=n, dim=dim, reiterable=False)
    raise ValidationError(
        f"cannot stream vectors from {type(data).__name__}; pass an array, "
        "a callable returning an iterator of blocks, or an iterable of blocks."
    )
