"""Lazy arrays of stored rows: xarray views (:class:`StoreBackendArray`) and dask (:class:`RowArray`).

A Store hands out its dense variables as xarray objects backed by
:class:`StoreBackendArray`, an xarray lazily indexed backend array (as
xarray's own backends use): selections compose without reading, and
``.values`` reads exactly the selected rows with one call of the backend's
point reader; stored float16 is decoded to float32 (:func:`decoded_dtype`).
``.chunk()`` turns such a view into dask.

:class:`RowArray` below is the earlier dask-array view with an eager short
cut; it is kept for :meth:`Backend.lazy_rows
<embstore.store.backends.base.Backend.lazy_rows>` (plain dask graphs whose
tasks read rows with the point reader). Most *eager* reads, however, are one
call: ``st.query_embeddings.values``, ``st.sel(skin=1).query_embeddings.values``
or ``st.query_embeddings.sel(skin=1).values``. Computing those through the
dask graph costs a scheduler round trip per block (threads, queues: several
milliseconds) and one more copy of the result (the blocks are concatenated).

:class:`RowArray` is a :class:`dask.array.Array` that remembers which stored
rows it shows. Two operations take a short cut around the graph:

* ``numpy.asarray(x)`` (what ``DataArray.values`` calls) reads the rows
  straight into one preallocated array (for raw local Zarr arrays with
  ``preadv`` into that buffer, see :mod:`embstore.store.rawread`);
* indexing the row axis only (``x[idx]``, ``x[a:b]``, ``x[mask]``, with full
  slices on the trailing axes; what xarray's ``isel``/``sel`` along the row
  dimension produce) returns another :class:`RowArray` of the selected rows,
  so a later read touches only their bytes, not whole blocks.

Every other operation is plain dask (the graph is the usual one block per
``block_rows`` rows), and pickling gives a plain :class:`dask.array.Array`.

This module imports dask at import time; :mod:`embstore.store` imports it
only inside functions.

Examples
--------
>>> import numpy as np
>>> data = np.arange(20.0).reshape(10, 2)
>>> x = row_array(lambda p: data[p], np.arange(10), (2,), data.dtype, block_rows=4, token="demo")
>>> y = x[np.array([1, 7])]
>>> type(y).__name__, np.asarray(y)[:, 0].tolist()
('RowArray', [2.0, 14.0])
>>> float(x.sum().compute())
190.0
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np
from dask.highlevelgraph import HighLevelGraph
from xarray.backends import BackendArray

try:  # dask >= 2024.12: tasks as objects (tuples still work, but are converted)
    from dask._task_spec import Task as _Task

    def _task(key: Any, func: Any, *args: Any) -> Any:
        return _Task(key, func, *args)

except ImportError:  # pragma: no cover - older dask

    def _task(key: Any, func: Any, *args: Any) -> Any:
        return (func,) + args


def _read_block(
    read: Callable[[np.ndarray], np.ndarray],
    pos: np.ndarray,
    rest: tuple[int, ...],
    dtype: np.dtype,
) -> np.ndarray:
    """One dask block: the rows at ``pos`` (a task of :func:`row_array`)."""
    if len(pos) == 0:
        return np.zeros((0,) + rest, dtype=dtype)
    return read(pos)


__all__ = ["RowArray", "StoreBackendArray", "decoded_dtype", "lazy_variable", "row_array"]


def _is_full(k: Any) -> bool:
    return isinstance(k, slice) and k == slice(None)


def _row_key(key: Any, ndim: int, n: int) -> Any:
    """The row-axis part of ``key`` when ``key`` indexes rows only (else None).

    Accepted: a slice, a 1-D integer or boolean NumPy array or list, followed
    only by full slices (or one trailing ``Ellipsis``).
    """
    if not isinstance(key, tuple):
        key = (key,)
    if not key:
        return None
    if key[-1] is Ellipsis:
        key = key[:-1]
    if not key or len(key) > ndim or not all(_is_full(k) for k in key[1:]):
        return None
    k0 = key[0]
    if isinstance(k0, slice):
        return k0
    if isinstance(k0, list):
        k0 = np.asarray(k0)
    if isinstance(k0, np.ndarray) and k0.ndim == 1:
        if k0.dtype == bool:
            return np.nonzero(k0)[0] if len(k0) == n else None
        if k0.dtype.kind in "iu":
            return k0
    return None


class RowArray(da.Array):
    """A dask array of stored rows that reads eagerly without the graph.

    Build one with :func:`row_array`. ``numpy.asarray`` reads the rows into
    one buffer, and row-only indexing keeps a :class:`RowArray` (see the
    module docstring); everything else is ordinary dask.
    """

    _es_read: Callable[[np.ndarray], np.ndarray]
    _es_positions: np.ndarray
    _es_block: int
    _es_token: str

    def __array__(self, dtype: Any = None, copy: Any = None, **kwargs: Any) -> np.ndarray:
        pos = self._es_positions
        if len(pos):
            out = self._es_read(pos)
        else:
            out = np.zeros(self.shape, dtype=self.dtype)
        if dtype is not None and np.dtype(dtype) != out.dtype:
            out = out.astype(dtype)
        return out

    def __getitem__(self, key: Any) -> Any:
        try:
            k0 = _row_key(key, self.ndim, len(self._es_positions))
        except (AttributeError, TypeError, ValueError):  # pragma: no cover - odd keys
            k0 = None
        if k0 is None:
            base: Any = super()  # dask.array.Array.__getitem__ is not annotated
            return base.__getitem__(key)
        pos = self._es_positions[k0]  # raises IndexError for out-of-range positions
        return row_array(
            self._es_read, pos, self.shape[1:], self.dtype, self._es_block, self._es_token
        )


def row_array(
    read: Callable[[np.ndarray], np.ndarray],
    positions: np.ndarray,
    rest: tuple[int, ...],
    dtype: Any,
    block_rows: int,
    token: str,
) -> RowArray:
    """Lazy :class:`RowArray` of the stored rows at ``positions``.

    Parameters
    ----------
    read : callable
        ``read(positions) -> numpy.ndarray`` of the rows at those storage
        positions (any order, repeats allowed), shape ``(len(positions), *rest)``.
    positions : numpy.ndarray
        Storage row positions in view order.
    rest : tuple of int
        Trailing shape of one row.
    dtype : numpy.dtype or str
        Element dtype.
    block_rows : int
        Rows per dask block.
    token : str
        Identifies the stored array (path, name, shape); combined with a hash of
        ``positions`` into the dask name, so equal views share a name.

    Returns
    -------
    RowArray

    Examples
    --------
    >>> import numpy as np
    >>> x = row_array(lambda p: p.astype(float), np.array([4, 2]), (), "float64", 8, "t")
    >>> np.asarray(x).tolist(), x.chunks
    ([4.0, 2.0], ((2,),))
    """
    positions = np.ascontiguousarray(positions, dtype=np.int64)
    dtype = np.dtype(dtype)
    rest = tuple(int(r) for r in rest)
    h = hashlib.sha1(token.encode())
    h.update(positions.tobytes())
    name = f"embstore-{h.hexdigest()[:32]}"
    block = max(1, int(block_rows))
    n = len(positions)
    bounds = list(range(0, n, block)) + [n] if n else [0, 0]
    tail = (0,) * len(rest)
    dsk: dict[Any, Any] = {}
    for i in range(len(bounds) - 1):
        key = (name, i) + tail
        dsk[key] = _task(key, _read_block, read, positions[bounds[i] : bounds[i + 1]], rest, dtype)
    chunks = (tuple(np.diff(bounds).tolist()),) + tuple((r,) for r in rest)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=())
    make: Any = RowArray  # dask.array.Array.__new__ is not annotated
    out: RowArray = make(graph, name, chunks, meta=np.empty((0,) * (1 + len(rest)), dtype=dtype))
    out._es_read = read
    out._es_positions = positions
    out._es_block = block
    out._es_token = token
    return out


# --------------------------------------------------------------------------- #
# xarray lazily indexed views (what Store.__getitem__ / Store.dataset hand out)
# --------------------------------------------------------------------------- #
def decoded_dtype(dtype: Any) -> np.dtype:
    """The dtype a view shows for a stored dtype: float16 is decoded to float32.

    Reductions over many float16 values overflow (the largest float16 is
    65504) and lose precision, so views decode float16 storage to float32,
    as xarray's CF decoding unpacks packed integers to floats. Other dtypes
    are shown as stored.

    Examples
    --------
    >>> decoded_dtype("float16"), decoded_dtype("float32"), decoded_dtype("int64")
    (dtype('float32'), dtype('float32'), dtype('int64'))
    """
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype == np.float16 else dtype


def _closed(backend: Any) -> bool:
    """Whether an HDF5 backend's file was closed (Zarr backends read files directly)."""
    h5 = getattr(backend, "h5", None)
    if h5 is None:
        return False
    try:
        return not bool(h5.id.valid)
    except Exception:
        return True


class _BackendRef:
    """A picklable handle of a store's backend: reopens read-only after unpickling."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.path = str(backend.path)
        self.storage_options = getattr(backend, "storage_options", None)

    def get(self) -> Any:
        if self.backend is not None and _closed(self.backend):  # the store was closed: reopen
            self.backend = None
        if self.backend is None:
            from .backends import backend_class

            self.backend = backend_class(self.path).open(self.path, "r", self.storage_options)
        return self.backend

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.backend = None
        self.path = state["path"]
        self.storage_options = state["storage_options"]


class StoreBackendArray(BackendArray):
    """The stored rows of one dense variable as an xarray lazily indexed array.

    Wrapped in :class:`xarray.core.indexing.LazilyIndexedArray` (as xarray's
    own backends do), indexing a view only composes indexers: ``.sel``,
    ``.isel`` and slicing stay lazy, and ``.values`` of the result makes ONE
    call of the backend's point reader (the fast reader of
    :meth:`embstore.Store.read`) with exactly the selected rows. Stored
    float16 is decoded to float32 (:func:`decoded_dtype`). ``.chunk()`` turns a
    view into dask; each dask block then reads its own rows the same way.

    The array pickles (the store is reopened read-only on the other side),
    so views go to ``multiprocessing`` workers and dask's process scheduler.

    Parameters
    ----------
    backend : embstore.store.backends.Backend
        The open backend.
    name : str
        Stored array name.
    positions : numpy.ndarray
        Storage row positions of the view's rows, in view order.
    rest : tuple of int
        Trailing shape of one row.
    dtype : numpy.dtype
        Stored element dtype.
    """

    def __init__(
        self, backend: Any, name: str, positions: np.ndarray, rest: tuple[int, ...], dtype: Any
    ) -> None:
        self._ref = backend if isinstance(backend, _BackendRef) else _BackendRef(backend)
        self.name = name
        self.positions = np.ascontiguousarray(positions, dtype=np.int64)
        self.storage_dtype = np.dtype(dtype)
        self.dtype = decoded_dtype(self.storage_dtype)
        self.shape = (len(self.positions),) + tuple(int(r) for r in rest)

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64))

    def __len__(self) -> int:
        return self.shape[0]

    def __dask_tokenize__(self) -> Any:
        h = hashlib.sha1(self.positions.tobytes()).hexdigest()
        return ("embstore-rows", self._ref.path, self.name, self.shape, str(self.storage_dtype), h)

    def read(self, positions: np.ndarray) -> np.ndarray:
        """Rows at storage ``positions`` (any order), decoded."""
        positions = np.asarray(positions, dtype=np.int64)
        if len(positions) == 0:
            return np.zeros((0,) + self.shape[1:], dtype=self.dtype)
        backend = self._ref.get()
        if self.storage_dtype == np.float16:  # read and decode block by block (fast, exact)
            from .decode import read_decoded

            return read_decoded(
                lambda p: backend.read_points(self.name, p), positions, self.shape[1:]
            )
        out = backend.read_points(self.name, positions)
        return out.astype(self.dtype, copy=False)

    def _getitem(self, key: tuple[Any, ...]) -> np.ndarray:
        """Outer (orthogonal) indexing: the row key picks storage positions (any
        order, repeats allowed), read in one call; trailing keys apply per axis."""
        k0, rest = key[0], tuple(key[1:])
        pos = self.positions[k0]
        scalar = np.ndim(pos) == 0
        out = self.read(np.atleast_1d(pos))
        ax = 1
        for k in rest:
            if isinstance(k, (int, np.integer)):
                out = np.take(out, int(k), axis=ax)  # drops the axis
            elif isinstance(k, slice):
                if k != slice(None):
                    out = out[(slice(None),) * ax + (k,)]
                ax += 1
            else:
                out = np.take(out, np.asarray(k), axis=ax)
                ax += 1
        return out[0] if scalar else out

    def __getitem__(self, key: Any) -> np.ndarray:
        from xarray.core import indexing

        if isinstance(key, (indexing.BasicIndexer, indexing.OuterIndexer)):
            return self._getitem(tuple(key.tuple))
        return indexing.explicit_indexing_adapter(  # vectorized (point-wise) indexing
            key, self.shape, indexing.IndexingSupport.OUTER_1VECTOR, self._getitem
        )

    def __repr__(self) -> str:
        return f"StoreBackendArray({self._ref.path!r}, {self.name!r}, shape={self.shape}, dtype={self.dtype})"


def lazy_variable(
    backend: Any, name: str, positions: np.ndarray, rest: tuple[int, ...], dtype: Any
) -> Any:
    """A lazily indexed array (for an xarray Variable) of the rows at ``positions``.

    Parameters
    ----------
    backend, name, positions, rest, dtype
        As in :class:`StoreBackendArray`.

    Returns
    -------
    xarray.core.indexing.LazilyIndexedArray
    """
    from xarray.core import indexing

    return indexing.LazilyIndexedArray(StoreBackendArray(backend, name, positions, rest, dtype))
