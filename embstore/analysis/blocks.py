"""The one producer of vector blocks: a store (or analyzer) plus a :class:`VectorSpec`.

Every analysis that streams vectors (local search, near-duplicates and
clustering, the fairness statistics, the Dask paths) reads them through this
module, as ``(start, float32 block)`` pairs (:data:`~embstore.analysis.spec.Blocks`):

* :func:`block_bounds` groups storage chunks into row ranges of at most
  ``block_rows`` vectors (a larger chunk is split), so each chunk is read once.
* :class:`VectorBlocks` holds a lazy ``(n, dim)`` array and those ranges. It
  is picklable and opaque to Dask, so a Dask task can read its own block
  (:meth:`VectorBlocks.load`) and iterating it yields the block stream.
* :func:`vector_blocks` builds one from an analyzer (or a store path or
  :class:`embstore.Store`) and a :class:`VectorSpec` (or the flat
  ``variable=, pool=, layer=`` keywords), together with the vectors' labels.

Examples
--------
>>> import numpy as np
>>> from embstore.analysis.blocks import VectorBlocks, block_bounds
>>> block_bounds([4, 4, 4, 2], 8)
[(0, 8), (8, 14)]
>>> vb = VectorBlocks.from_array(np.ones((5, 3)), block_rows=2)
>>> [(start, block.shape) for start, block in vb]
[(0, (2, 3)), (2, (2, 3)), (4, (1, 3))]
>>> blocks, labels = vector_blocks(face_path, variable="embedding", block_rows=32)
>>> blocks.n, blocks.dim, len(blocks), len(labels)
(80, 32, 3, 80)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import SelectionError, ValidationError
from .spec import VectorSpec

__all__ = [
    "DEFAULT_BLOCK_ROWS",
    "VectorBlocks",
    "block_bounds",
    "check_block_rows",
    "iter_array_blocks",
    "vector_blocks",
]

#: Default number of vectors per block (64k rows of 512 float32 = 128 MiB).
DEFAULT_BLOCK_ROWS = 65536


def check_block_rows(block_rows: Any) -> int:
    """``block_rows`` as a positive int.

    Raises
    ------
    ValidationError
        If it is not a positive integer.

    Examples
    --------
    >>> check_block_rows(8)
    8
    """
    if (
        isinstance(block_rows, bool)
        or not isinstance(block_rows, (int, np.integer))
        or block_rows < 1
    ):
        raise ValidationError(f"block_rows must be a positive integer, got {block_rows!r}")
    return int(block_rows)


def block_bounds(chunks: Sequence[int], block_rows: int) -> list[tuple[int, int]]:
    """Group consecutive chunks into row ranges of at most ``block_rows`` rows.

    Parameters
    ----------
    chunks : sequence of int
        Row counts of the storage chunks, in order.
    block_rows : int
        Maximum rows per range; a larger chunk is split.

    Returns
    -------
    list of (int, int)
        ``(start, stop)`` of each block.

    Examples
    --------
    >>> block_bounds([10, 3], 4)
    [(0, 4), (4, 8), (8, 10), (10, 13)]
    """
    bounds: list[tuple[int, int]] = []
    start = stop = 0
    for size in chunks:
        if stop - start + size > block_rows and stop > start:
            bounds.append((start, stop))
            start = stop
        stop += size
        while stop - start > block_rows:
            bounds.append((start, start + block_rows))
            start += block_rows
    if stop > start:
        bounds.append((start, stop))
    return bounds


def _as_dask(data: Any, block_rows: int) -> Any:
    # dask.array is partly untyped: used through Any (no-untyped-call)
    da: Any = importlib.import_module("dask.array")

    if hasattr(data, "dims") and hasattr(data, "data"):  # xarray: its underlying array
        data = data.data
    if not isinstance(data, da.Array):
        arr = np.asarray(data)
        if arr.ndim == 1:
            arr = arr[None, :]
        data = da.from_array(arr, chunks=(int(block_rows), -1))
    return data


class VectorBlocks:
    """Re-iterable, picklable blocks of a lazy ``(n, dim)`` vector array.

    Dask does not look inside this object, so passing it to many tasks does
    not make its blocks shared graph keys: every task reads its own blocks
    (:meth:`load`) and frees them when it ends. Iterating yields
    ``(start, float32 block)`` pairs in row order (the block contract).

    Parameters
    ----------
    data : dask.array.Array
        ``(n, dim)`` vectors (lazy).
    bounds : sequence of (int, int)
        Row range of each block.

    Attributes
    ----------
    n : int
        Number of vectors.
    dim : int
        Vector size.
    """

    def __init__(self, data: Any, bounds: Sequence[tuple[int, int]]) -> None:
        self.data = data
        self.bounds = [(int(a), int(b)) for a, b in bounds]
        self.n = int(data.shape[0])
        self.dim = int(data.shape[1])

    @classmethod
    def from_array(cls, data: Any, block_rows: int = DEFAULT_BLOCK_ROWS) -> VectorBlocks:
        """Blocks of a NumPy, dask or xarray ``(n, dim)`` array, following its chunks.

        Parameters
        ----------
        data : array_like
            2-D vectors (float32 on reading).
        block_rows : int
            Maximum rows per block.

        Returns
        -------
        VectorBlocks
        """
        block_rows = check_block_rows(block_rows)
        arr = _as_dask(data, block_rows)
        if arr.ndim != 2:
            from ..errors import ShapeMismatchError

            raise ShapeMismatchError(
                f"vectors must be 2-D (n, dim); got shape {tuple(arr.shape)}. Pool or reshape first."
            )
        arr = arr.astype(np.float32)
        return cls(arr, block_bounds(arr.chunks[0], block_rows))

    def __len__(self) -> int:
        return len(self.bounds)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        return self.iter_blocks()

    def load(self, b: int) -> np.ndarray:
        """Read block ``b`` synchronously (in the calling task or thread).

        Parameters
        ----------
        b : int
            Block number.

        Returns
        -------
        numpy.ndarray
            C-contiguous float32 ``(rows, dim)``.
        """
        a, e = self.bounds[b]
        return np.ascontiguousarray(self.data[a:e].compute(scheduler="sync"), dtype=np.float32)

    def iter_blocks(self, progress: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, float32 block)`` for every block, in row order.

        Parameters
        ----------
        progress : bool
            Show a tqdm bar (only on a terminal).

        Yields
        ------
        start : int
            Position of the block's first vector.
        block : numpy.ndarray
            C-contiguous float32 ``(rows, dim)``.
        """
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.n, unit="vec", disable=not sys.stderr.isatty())
        try:
            for start, stop in self.bounds:
                block = np.ascontiguousarray(self.data[start:stop].compute(), dtype=np.float32)
                if bar is not None:
                    bar.update(stop - start)
                yield start, block
        finally:
            if bar is not None:
                bar.close()

    @property
    def starts(self) -> list[int]:
        """Position of each block's first vector."""
        return [a for a, _ in self.bounds]

    def to_delayed(self) -> list[Any]:
        """One dask delayed float32 array per block (for keeping blocks in cluster memory)."""
        sizes = tuple(b - a for a, b in self.bounds)
        return list(self.data.rechunk({0: sizes, 1: -1}).to_delayed().ravel().tolist())


def iter_array_blocks(
    data: Any, block_rows: int = DEFAULT_BLOCK_ROWS, progress: bool = False
) -> Iterator[tuple[int, np.ndarray]]:
    """Stream a lazy or in-memory ``(n, dim)`` array as ``(start, float32 block)`` pairs.

    This is what :meth:`embstore.EmbeddingAnalyzer.iter_vectors` yields:
    ``AnalyzerCore._iter_dataarray(arr, block_rows, progress)`` is
    ``iter_array_blocks(arr, block_rows, progress)``.

    Parameters
    ----------
    data : xarray.DataArray, dask or NumPy array
        The vectors.
    block_rows : int
        Maximum rows per block; storage chunks are grouped up to it.
    progress : bool
        Show a tqdm bar (only on a terminal).

    Yields
    ------
    (int, numpy.ndarray)

    Examples
    --------
    >>> [s for s, _ in iter_array_blocks(np.zeros((5, 2)), 2)]
    [0, 2, 4]
    """
    return VectorBlocks.from_array(data, block_rows).iter_blocks(progress)


def _analyzer(source: Any) -> Any:
    """An analyzer over ``source``: itself if it already is one."""
    if hasattr(source, "vectors") and hasattr(source, "labels"):
        return source
    from . import EmbeddingAnalyzer

    return EmbeddingAnalyzer(source)


def vector_blocks(
    source: Any,
    spec: VectorSpec | None = None,
    block_rows: int | None = None,
    *,
    variable: str | None = None,
    pool: str | None = None,
    layer: int | None = None,
    k: int | None = None,
    over: str | Sequence[str] | None = None,
    **pool_kwargs: Any,
) -> tuple[VectorBlocks, pd.DataFrame]:
    """The vectors named by ``spec`` as :class:`VectorBlocks`, plus their labels.

    Parameters
    ----------
    source : EmbeddingAnalyzer, Store or str
        An analyzer (a selection works too), a store or a store path.
    spec : VectorSpec, optional
        Which vectors; the flat ``variable``, ``pool``, ``layer``, ``k``,
        ``over`` keywords override its fields (or make one).
    block_rows : int, optional
        Vectors per block (default 65536): storage chunks are grouped up to
        this size (a larger chunk is split).
    **pool_kwargs
        More pooling keywords (``logits``, ``score``).

    Returns
    -------
    blocks : VectorBlocks
    labels : pandas.DataFrame
        One row per vector (:meth:`embstore.EmbeddingAnalyzer.labels`).

    Raises
    ------
    ValidationError
        ``block_rows`` is not a positive int, or a bad spec.
    SelectionError
        No vectors.
    """
    from .defaults import resolve_variable

    spec = VectorSpec.coerce(spec, variable=variable, pool=pool, layer=layer, k=k, over=over)
    rows = check_block_rows(DEFAULT_BLOCK_ROWS if block_rows is None else block_rows)
    an = _analyzer(source)
    name = resolve_variable(an, spec.variable)
    kwargs = {**spec.pool_kwargs(), **pool_kwargs}
    arr = an.vectors(name, pool=spec.pool, layer=spec.layer, **kwargs)
    if arr.shape[0] == 0:
        raise SelectionError(f"no vectors of {name!r} to analyse (the selection is empty)")
    labels = an.labels(name, pool=spec.pool, layer=spec.layer, **kwargs)
    return VectorBlocks.from_array(arr, rows), labels
