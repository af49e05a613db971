"""The backend ABC: what :class:`embstore.Store` needs from storage, and the guarantees its commit protocol relies on.

A backend stores named N-d arrays whose first axis is the row (or token)
axis, group attributes, commit records, tables, blobs and an append lock.
Implementations: :class:`~embstore.store.backends.zarr_local.LocalZarrBackend`
(default), :class:`~embstore.store.backends.zarr_fsspec.FsspecZarrBackend`
(``memory://``, ``s3://`` ... URLs; both share
:class:`~embstore.store.backends.zarr_backend.ZarrBackend`) and
:class:`~embstore.store.backends.hdf5_backend.HDF5Backend`.

Guarantees the commit protocol needs
------------------------------------
Every write publishes its new state with ONE record (see
:mod:`embstore.store.commit` and :mod:`embstore.store.transaction`), so a
backend must provide:

1. **Atomic create-if-absent** of commit records, catalog records and lock
   objects (:meth:`Backend.write_record`, ``make_lock``): the object appears
   whole or not at all, and an existing one is never overwritten
   (``FileExistsError``). Two writers racing for the same sequence number:
   exactly one wins, the other retries with the next number.
2. **Rename, or its replacement**: metadata that is rewritten (attributes,
   array shapes, consolidated metadata, a partial last chunk) must never be
   seen torn. Locally that is temp file + ``os.replace``; on object stores a
   single PUT is atomic, which replaces rename (nothing is renamed there).
3. **Data before record**: bytes written before a record is published are
   durable and visible to any reader that sees the record
   (:meth:`Backend.flush` is called in between).

What each backend provides
--------------------------
========================  ================  ================  ==============
flag                      LocalZarr         FsspecZarr        HDF5
========================  ================  ================  ==============
``exclusive_create``      yes (``link``)    yes (conditional  no (one writer
                                            PUT; best effort  per file, its
                                            without it)       lock)
``atomic_rename``         yes               no (whole PUTs)   yes (file)
``atomic_records``        yes               yes               yes (journal)
``staged_arrays``         yes               yes               no
``supports_regions``      yes               yes               no
========================  ================  ================  ==============

HDF5 gets crash safety differently: its committed file is never written in
place; a redo journal and a working copy renamed over it at close (see
:mod:`~embstore.store.backends.hdf5_backend`).
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

__all__ = ["Backend", "fill_value_for"]


def fill_value_for(dtype: np.dtype | str) -> Any:
    """Fill value of rows that were never written.

    Examples
    --------
    >>> fill_value_for("int64"), fill_value_for("bool"), fill_value_for("<U3")
    (-1, False, '')
    """
    dt = np.dtype(dtype) if not isinstance(dtype, np.dtype) else dtype
    if dt.kind == "f":
        return float("nan")
    if dt.kind in "i":
        return -1
    if dt.kind == "u":
        return 0
    if dt.kind == "b":
        return False
    return ""


class RowTake:
    """Array-like view of selected rows of a stored array, for :func:`dask.array.from_array`.

    Each dask block reads only its own rows through ``read(positions)``, so a
    lazy subset costs its own bytes (not whole chunks).

    Parameters
    ----------
    read : callable
        ``read(positions) -> numpy.ndarray`` of those rows (positions sorted).
    positions : numpy.ndarray
        Row positions in storage, in view order.
    rest : tuple of int
        Trailing shape.
    dtype : numpy.dtype
        Element dtype.

    Examples
    --------
    >>> import numpy as np
    >>> data = np.arange(10) * 10
    >>> t = RowTake(lambda p: data[p], np.array([2, 5, 7]), (), data.dtype)
    >>> t[1:3].tolist(), t.shape
    ([50, 70], (3,))
    """

    def __init__(
        self, read: Any, positions: np.ndarray, rest: tuple[int, ...], dtype: np.dtype
    ) -> None:
        self._read = read
        self.positions = np.asarray(positions, dtype=np.int64)
        self.shape = (len(self.positions),) + tuple(rest)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        k0, rest = key[0], key[1:]
        pos = self.positions[k0]
        if np.ndim(pos) == 0:
            out = self._read(np.array([int(pos)], dtype=np.int64))[0]
            return out[rest] if rest else out
        out = (
            self._read(np.asarray(pos, dtype=np.int64))
            if len(pos)
            else np.zeros((0,) + self.shape[1:], dtype=self.dtype)
        )
        return out[(slice(None),) + rest] if rest else out


class Backend(abc.ABC):
    """Abstract storage backend.

    Attributes
    ----------
    kind : str
        ``"zarr"`` or ``"hdf5"``.
    supports_regions : bool
        Whether several processes may write disjoint regions at once.
    path : str
        The store location.
    """

    kind: str = ""
    supports_regions: bool = False
    path: str

    # -- guarantees the commit protocol relies on (module docstring) -------
    #: Records and lock objects are created exclusively (create-if-absent is
    #: atomic: two racing writers cannot both create one).
    exclusive_create: bool = False
    #: Files can be replaced atomically by rename (temp file + ``os.replace``).
    #: Without it, every rewritten object must be written whole by one request.
    atomic_rename: bool = False
    #: ``write_record`` publishes a record whole or not at all and never
    #: overwrites one (``FileExistsError``): an unreadable record is damage,
    #: not a write cut short by a kill.
    atomic_records: bool = False
    #: Arrays can be created under ``_embstore/stage/`` (hidden from plain
    #: readers) and deleted with :meth:`delete_array`: coordinate updates are
    #: staged there and made visible by one commit record. Without it,
    #: ``set_coords`` writes in place (old/new mix possible on a kill).
    staged_arrays: bool = False
    #: Names of arrays whose every committed row has a chunk written (dense
    #: variables, ids): a missing chunk raises instead of reading fill values.
    strict_arrays: frozenset[str] = frozenset()

    # -- lifecycle ---------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def exists(cls, path: str, storage_options: dict[str, Any] | None) -> bool:
        """Whether anything exists at ``path``."""

    @classmethod
    @abc.abstractmethod
    def create(
        cls,
        path: str,
        overwrite: bool,
        storage_options: dict[str, Any] | None,
        attrs: dict[str, Any],
    ) -> Backend:
        """Create an empty store with group attributes ``attrs``."""

    @classmethod
    @abc.abstractmethod
    def open(cls, path: str, mode: str, storage_options: dict[str, Any] | None) -> Backend:
        """Open an existing store (``mode`` is ``"r"`` or ``"a"``)."""

    def flush(self) -> None:  # noqa: B027 (optional hook)
        """Push buffered bytes to storage (no-op where writes are direct)."""

    def invalidate(self) -> None:  # noqa: B027 (optional hook)
        """Forget cached metadata (other processes may have changed the store)."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release resources."""

    # -- attributes --------------------------------------------------------
    @abc.abstractmethod
    def read_attrs(self) -> dict[str, Any]:
        """Group attributes."""

    @abc.abstractmethod
    def write_attrs(self, attrs: dict[str, Any]) -> None:
        """Replace the group attributes."""

    # -- arrays ------------------------------------------------------------
    @abc.abstractmethod
    def has_array(self, name: str) -> bool:
        """Whether array ``name`` exists."""

    @abc.abstractmethod
    def create_array(
        self,
        name: str,
        shape: tuple[int, ...],
        chunk_rows: int,
        dtype: str,
        dims: tuple[str, ...],
        attrs: dict[str, Any] | None = None,
        inner_chunk_rows: int | None = None,
        compressor: str | None = None,
    ) -> None:
        """Create an array chunked along its first axis (existing: opened)."""

    @abc.abstractmethod
    def array_info(self, name: str) -> tuple[tuple[int, ...], np.dtype, int]:
        """Return ``(shape, dtype, chunk_rows)`` of an array."""

    @abc.abstractmethod
    def resize(self, name: str, n: int) -> None:
        """Set the length of the first axis."""

    @abc.abstractmethod
    def write(self, name: str, start: int, values: np.ndarray) -> None:
        """Write ``values`` at rows ``start .. start + len(values) - 1``."""

    @abc.abstractmethod
    def read(self, name: str, sel: slice | np.ndarray = slice(None)) -> np.ndarray:
        """Read rows (a slice or sorted integer positions)."""

    def lazy_rows(self, name: str, positions: np.ndarray, block_rows: int) -> Any:
        """Lazy dask array of the rows at ``positions`` (blocks of ``block_rows``).

        Parameters
        ----------
        name : str
            Array name.
        positions : numpy.ndarray
            Storage row positions, in view order.
        block_rows : int
            Rows per dask block (use the chunk size for aligned full views).

        Returns
        -------
        dask.array.Array
            A plain dask array whose tasks read rows with the backend's fast
            point reader. It is deliberately *not* the
            :class:`~embstore.store.lazyrows.RowArray` subclass: xarray refuses
            to mix two chunked-array types in one operation (``apply_ufunc``,
            ``where``, ``concat`` with a user's own dask arrays), so views
            must be ordinary dask. Eager reads that skip dask entirely go
            through :meth:`embstore.Store.read`.
        """
        import dask.array as da

        from ..lazyrows import row_array

        shape, dtype, _rows = self.array_info(name)
        rows = row_array(
            lambda p: self.read_points(name, p),
            positions,
            tuple(shape[1:]),
            dtype,
            block_rows,
            f"{self.path}\0{name}\0{tuple(shape)}",
        )
        array_cls: Any = da.Array  # dask has no type hints: an untyped call otherwise
        return array_cls(rows.dask, rows.name, rows.chunks, dtype=rows.dtype, meta=rows._meta)

    def read_points(self, name: str, positions: np.ndarray) -> np.ndarray:
        """Rows at ``positions`` (any order, repeats allowed).

        Increasing positions are read straight into the result. Other orders
        are read sorted, in blocks of at most an eighth of the result (and at
        most 64 MiB), each scattered into the preallocated result: peak memory
        stays below 1.25x the result (reading all sorted rows first and then
        reordering took 3x).
        """
        positions = np.asarray(positions, dtype=np.int64)
        if len(positions) and np.all(np.diff(positions) > 0):
            return self.read(name, positions)
        shape, dtype, _chunk = self.array_info(name)
        n = len(positions)
        out = np.empty((n,) + tuple(shape[1:]), dtype=dtype)
        if n == 0:
            return out
        order = np.argsort(positions, kind="stable")
        sorted_pos = positions[order]
        row_bytes = max(1, int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize)
        step = max(1, min(-(-n // 8), (64 << 20) // row_bytes))
        for a in range(0, n, step):
            blk = sorted_pos[a : a + step]
            uniq, inv = np.unique(blk, return_inverse=True)
            vals = self.read(name, uniq)
            out[order[a : a + step]] = vals if len(uniq) == len(blk) else vals[inv]
            del vals  # before the next block is read
        return out

    # -- commit records ----------------------------------------------------
    @abc.abstractmethod
    def list_regions(self) -> list[str]:
        """Regions that have commit records."""

    @abc.abstractmethod
    def list_records(self, region: str) -> list[int]:
        """Sequence numbers of the records of ``region`` (ascending)."""

    @abc.abstractmethod
    def read_record(self, region: str, seq: int) -> bytes | None:
        """Raw bytes of a record (None if missing)."""

    @abc.abstractmethod
    def write_record(self, region: str, seq: int, payload: bytes) -> None:
        """Write a new, immutable record."""

    @abc.abstractmethod
    def delete_record(self, region: str, seq: int) -> None:
        """Delete an old record."""

    # -- tables and blobs --------------------------------------------------
    @abc.abstractmethod
    def write_table(self, name: str, columns: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Replace table ``name`` (columns of equal length)."""

    @abc.abstractmethod
    def read_table(self, name: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """Columns and meta of table ``name`` (None if absent)."""

    @abc.abstractmethod
    def list_tables(self) -> list[str]:
        """Names of stored tables."""

    @abc.abstractmethod
    def write_blob(self, name: str, data: bytes) -> None:
        """Replace blob ``name``."""

    @abc.abstractmethod
    def read_blob(self, name: str) -> bytes | None:
        """Bytes of blob ``name`` (None if absent)."""

    def list_blobs(self) -> list[str]:
        """Names of stored blobs (physical names; default: unknown, empty)."""
        return []

    def delete_table(self, name: str) -> bool:
        """Delete a superseded table version; False where it is kept (default: the space is not reclaimed)."""
        return False

    def delete_blob(self, name: str) -> bool:
        """Delete a superseded blob version; False where it is kept (default: the space is not reclaimed)."""
        return False

    def delete_array(self, name: str) -> None:
        """Delete an array (staged coordinate versions; needed when :attr:`staged_arrays`)."""
        raise NotImplementedError(f"{type(self).__name__} cannot delete arrays")

    def list_staged(self) -> list[str]:
        """Physical names of the arrays under ``_embstore/stage/``."""
        return []

    # -- locking -----------------------------------------------------------
    @abc.abstractmethod
    def make_lock(self, region: str) -> Any:
        """A lock object with ``acquire(force)`` and ``release()``."""

    def remove_temp_files(self, pid: int) -> int:
        """Delete temporary files a killed writer process ``pid`` left behind.

        Returns the number of files removed (0 where writes leave none).
        """
        return 0
