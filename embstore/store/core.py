"""The :class:`Store`: one labeled, chunked, crash-safe store per extraction run.

See :doc:`/store` for the user guide. In short::

    st = Store.create("run.zarr", row_dim="image", id_name="image_id",
                      variables={"query_embeddings": ("query", "hidden")})
    st.append([1, 2], {"query_embeddings": x}, coords={"skin": [3, 7]})
    st.close()
    Store.open("run.zarr").query_embeddings.sel(skin=3)

:class:`Store` is a facade. It owns the open/close life cycle and the
public API, and delegates each concern to one object:

- :class:`~embstore.store.reader.StoreReader` (always): commit records,
  ids and the id lookup, coordinates, :meth:`Store.read`, lazy views, ``sel``;
- :class:`~embstore.store.writer.StoreWriter` (only when open for writing):
  the append lock, buffers, commits and every mutation (see that module for
  how rows become visible);
- :class:`~embstore.store.ragged.RaggedAccess`: ragged rows;
- :mod:`~embstore.store.tablecodec`: tables and blobs, for every backend.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from ..errors import ReadOnlyStoreError, StoreError, ValidationError
from . import transaction
from .backends import Backend
from .commit import MAIN_REGION
from .ragged import RaggedAccess
from .reader import StoreReader
from .schema import Schema
from .writer import StoreWriter

__all__ = ["Store"]

log = logging.getLogger(__name__)


F = TypeVar("F", bound=Callable[..., Any])


def _doc_from(source: Callable[..., Any]) -> Callable[[F], F]:
    """Give a facade method the docstring of the method it delegates to.

    The public documentation (parameters, examples) lives once, next to the
    code that does the work, as xarray's accessors share theirs; the facade
    keeps its own signature (no ``__wrapped__``).
    """

    def deco(method: F) -> F:
        method.__doc__ = source.__doc__
        return method

    return deco


def _synchronized(method: Any) -> Any:
    """Run a method under the store's re-entrant lock (appends from a writer thread)."""

    @functools.wraps(method)
    def wrapper(self: Store, *args: Any, **kwargs: Any) -> Any:
        with self._mutex:
            return method(self, *args, **kwargs)

    return wrapper


class Store:
    """A labeled, chunked store of embeddings (Zarr v3 directory or HDF5 file).

    Do not call the constructor: use :meth:`create` or :meth:`open`.

    Attributes
    ----------
    path : str
        Location of the store.
    mode : str
        ``"r"`` (read-only) or ``"a"`` (append).
    row_dim : str
        Name of the row dimension.
    id_name : str
        Name of the unique id coordinate.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "run.zarr")
    >>> with Store.create(path, variables={"emb": ("hidden",)}) as st:
    ...     st.append([10, 11], {"emb": np.ones((2, 4))}, coords={"skin": [1, 2]})
    >>> st = Store.open(path)
    >>> st.ids.tolist(), st.emb.sel(skin=2).shape
    ([10, 11], (1, 4))
    """

    # ------------------------------------------------------------------ setup
    def __init__(
        self,
        backend: Backend,
        schema: Schema,
        mode: str,
        region: tuple[int, int] | None = None,
        force: bool = False,
        write_chunks: int = 4,
    ) -> None:
        self.mode = mode
        self.path = backend.path
        self._closed = False
        self._mutex = threading.RLock()
        backend.strict_arrays = frozenset({*schema.variables, *schema.ragged, schema.id_name})
        self._reader = StoreReader(backend, schema)
        self._ragged = RaggedAccess(self._reader)
        self._writer: StoreWriter | None = None
        if mode == "a":
            self._writer = StoreWriter(self._reader, region, force, write_chunks)

    @property
    def _backend(self) -> Backend:
        return self._reader.backend

    @_backend.setter
    def _backend(self, backend: Backend) -> None:  # tests wrap the backend to count reads
        self._reader.backend = backend

    @property
    def _schema(self) -> Schema:
        return self._reader.schema

    @property
    def _lock(self) -> Any:
        return self._writer.lock if self._writer is not None else None

    @property
    def _region(self) -> str:
        return self._writer.region if self._writer is not None else MAIN_REGION

    @classmethod
    def create(
        cls,
        path: str | Path,
        row_dim: str = "image",
        id_name: str = "image_id",
        variables: Mapping[str, Sequence[str]] | None = None,
        dtypes: Mapping[str, Any] | None = None,
        ragged: Mapping[str, Sequence[str]] | None = None,
        chunk_rows: int | None = None,
        overwrite: bool = False,
        attrs: Mapping[str, Any] | None = None,
        storage_options: dict[str, Any] | None = None,
        *,
        n_rows: int = 0,
        shapes: Mapping[str, Sequence[int]] | None = None,
        inner_chunk_rows: int | None = None,
        compressor: str | None = None,
        write_chunks: int = 4,
    ) -> Store:
        """Create a new, empty store and open it for appending.

        Parameters
        ----------
        path : str or pathlib.Path
            ``"run.zarr"`` (Zarr v3 directory, default), ``"run.h5"`` /
            ``"run.hdf5"`` (HDF5 file) or an fsspec URL (``"s3://b/run.zarr"``).
        row_dim : str
            Name of the row dimension (``"image"``, ``"instance"``...).
        id_name : str
            Name of the unique id coordinate (ints or strings).
        variables : dict, optional
            Dense variables: name -> trailing dims, e.g.
            ``{"query_embeddings": ("query", "hidden")}``.
        dtypes : dict, optional
            Storage dtype per variable. Default: ``float16`` for hidden states,
            ``float32`` for names containing ``logits`` or ``boxes``.
        ragged : dict, optional
            Ragged variables: ``{"encoder_output": ("token", "hidden")}`` (rows
            ``[n_i, F]``) or ``{"backbone_features": ("channel", "y", "x")}``
            (rows ``[F, h_i, w_i]``).
        chunk_rows : int, optional
            Rows per chunk of the dense variables (default: about 8 MiB of
            the largest variable, chosen at the first append). Ids,
            coordinates and ragged offsets use a multiple of it, about 16384
            rows, so that they do not make one tiny file per chunk
            (preallocated ``n_rows`` stores use ``chunk_rows`` for all).
        overwrite : bool
            Replace an existing store at ``path``.
        attrs : dict, optional
            Free-form JSON-serialisable run information (model, checkpoint
            SHA-256, command line...), saved with the provenance attributes.
        storage_options : dict, optional
            fsspec options for URLs.
        n_rows : int, optional
            Preallocate this many rows for parallel region writers
            (:meth:`open` with ``region=``). Must be a multiple of
            ``chunk_rows``.
        shapes : dict, optional
            Trailing shapes of dense variables, e.g.
            ``{"query_embeddings": (100, 256)}``; lets preallocated arrays be
            created up front.
        inner_chunk_rows : int, optional
            Rows per inner chunk inside each ``chunk_rows`` shard (Zarr
            sharding): makes reading scattered row subsets cheap.
        compressor : {None, "zstd"}
            ``None`` stores raw bytes (fastest; embeddings barely compress).
        write_chunks : int
            Whole chunks gathered before one write call.

        Returns
        -------
        Store
            Opened with ``mode="a"``.

        Raises
        ------
        StoreExistsError
            ``path`` exists and ``overwrite`` is False.
        ValidationError
            Invalid names, dtypes or chunking.

        Examples
        --------
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "r.zarr")
        >>> st = Store.create(p, variables={"query_embeddings": ("query", "hidden")},
        ...                   dtypes={"query_embeddings": "float32"})
        >>> st.variables
        {'query_embeddings': ('query', 'hidden')}
        >>> st.close()
        """
        from .opening import create_backend

        backend, schema, shps = create_backend(
            str(path),
            row_dim,
            id_name,
            variables,
            dtypes,
            ragged,
            chunk_rows,
            overwrite,
            attrs,
            storage_options,
            n_rows,
            shapes,
            inner_chunk_rows,
            compressor,
        )
        st = cls(backend, schema, "a", write_chunks=write_chunks)
        for name, shp in shps.items():
            st._write().ensure_array(name, shp, schema.n_prealloc)
        backend.flush()
        return st

    @classmethod
    def open(
        cls,
        path: str | Path,
        mode: str = "r",
        storage_options: dict[str, Any] | None = None,
        *,
        region: tuple[int, int] | None = None,
        force: bool = False,
        write_chunks: int = 4,
        **create_kw: Any,
    ) -> Store:
        """Open a store (or create one, with ``mode="a"``, ``"w"`` or ``"w-"``).

        Parameters
        ----------
        path : str or pathlib.Path
            Store location (``.h5``/``.hdf5`` -> HDF5, else Zarr).
        mode : {"r", "r+", "a", "w", "w-"}
            ``"r"`` read-only; ``"r+"`` write to an existing store (takes
            the append lock of the region); ``"a"`` the same, but an absent
            store is created from the create arguments, and an existing one
            is checked against them; ``"w"`` create, replacing; ``"w-"``
            create, failing if it exists. See :mod:`embstore.store.modes`.
        storage_options : dict, optional
            fsspec options for URLs.
        region : (int, int), optional
            ``(start, stop)`` rows of a store created with ``n_rows``; this
            writer fills only that region. Both ends must be multiples of
            ``chunk_rows`` (``stop`` may be ``n_rows``).
        force : bool
            Take over an append lock left by a writer that is gone (the lock of
            a dead process on the same host is taken over automatically).
        write_chunks : int
            Whole chunks gathered before one write call.
        **create_kw
            Arguments of :meth:`create` (``variables=``, ``ragged=``,
            ``dtypes=``, ``row_dim=``, ``id_name=``, ``chunk_rows=``...) for
            the creating modes, and the schema that ``"a"`` checks.

        Returns
        -------
        Store

        Raises
        ------
        StoreNotFoundError
            Nothing at ``path``.
        NotAStoreError
            ``path`` is not an embstore store.
        FormatVersionError
            Written by a newer embstore.
        StoreLockedError
            ``mode="a"`` and another live writer holds the lock.

        Examples
        --------
        >>> Store.open("does-not-exist.zarr")
        Traceback (most recent call last):
        ...
        embstore.errors.StoreNotFoundError: no store at 'does-not-exist.zarr'; check the path or create one with Store.create
        """
        from .modes import CREATE_ARGS, check_mode
        from .opening import open_backend, should_create

        mode = check_mode(mode)
        unknown = sorted(set(create_kw) - set(CREATE_ARGS))
        if unknown:
            raise ValidationError(
                f"Store.open got unexpected arguments {unknown}; create arguments are {list(CREATE_ARGS)}"
            )
        path = str(path)
        if should_create(path, mode, storage_options, create_kw):
            if region is not None:
                raise ValidationError(
                    f"region= needs an existing preallocated store; mode={mode!r} creates one"
                )
            return cls.create(
                path,
                overwrite=mode == "w",
                storage_options=storage_options,
                write_chunks=write_chunks,
                **create_kw,
            )
        backend, schema, mode, region = open_backend(path, mode, storage_options, region, create_kw)
        try:
            return cls(backend, schema, mode, region=region, force=force, write_chunks=write_chunks)
        except BaseException:
            backend.close()
            raise

    @_synchronized
    def refresh(self) -> None:
        """Re-read commit records (see rows committed by other writers since open)."""
        self._check_open()
        if self._writer is not None:
            self._writer.flush()
        reset = getattr(self._backend, "reset_cache", None)
        if reset is not None:  # other writers may have grown the arrays
            reset()
        self._reader.load()

    # ------------------------------------------------------------- basics
    @property
    def row_dim(self) -> str:
        """Name of the row dimension."""
        return self._schema.row_dim

    @property
    def id_name(self) -> str:
        """Name of the unique id coordinate along the row dimension."""
        return self._schema.id_name

    @property
    def variables(self) -> dict[str, tuple[str, ...]]:
        """Dense variables: name -> dims without the row dim."""
        return dict(self._schema.variables)

    @property
    def ragged_variables(self) -> dict[str, tuple[str, ...]]:
        """Ragged variables: name -> declared per-row dims."""
        return dict(self._schema.ragged)

    @property
    def dtypes(self) -> dict[str, str]:
        """Storage dtype of every variable."""
        return dict(self._schema.dtypes)

    @property
    def chunk_rows(self) -> int | None:
        """Rows per chunk (None until the first append decides it)."""
        return self._schema.chunk_rows

    @property
    def backend(self) -> str:
        """``"zarr"`` or ``"hdf5"``."""
        return self._backend.kind

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"store {self.path!r} is closed; open it again with Store.open")

    def _write(self) -> StoreWriter:
        """The writer, after checking that the store is open for writing."""
        self._check_open()
        if self._writer is None:
            raise ReadOnlyStoreError(
                f"store {self.path!r} is open read-only; use Store.open({self.path!r}, mode='a') to write"
            )
        return self._writer

    @_synchronized
    def _sync_reader(self) -> StoreReader:
        """The reader, after a writer has committed its pending rows."""
        self._check_open()
        w = self._writer
        if w is not None and w.row_bufs and w.pending_rows():
            w.flush()
        return self._reader

    @property
    def ids(self) -> np.ndarray:
        """Committed ids in commit order (ints or strings)."""
        return self._sync_reader().ids

    def __len__(self) -> int:
        return self._sync_reader().n_rows()

    def __contains__(self, item: Any) -> bool:
        return bool(len(self.missing([item])) == 0)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.ids.tolist())

    @_doc_from(StoreReader.missing)
    def missing(self, candidate_ids: Iterable[Any]) -> list[Any]:
        return self._sync_reader().missing(candidate_ids)

    # ---------------------------------------------------------------- write
    @_synchronized
    @_doc_from(StoreWriter.append)
    def append(
        self,
        ids: Sequence[Any] | np.ndarray,
        data: Mapping[str, Any],
        coords: Mapping[str, Any] | None = None,
        ragged_hw: Mapping[str, Sequence[tuple[int, int]]] | None = None,
        allow_nonfinite: bool = False,
    ) -> None:
        self._write().append(ids, data, coords, ragged_hw, allow_nonfinite)

    @_synchronized
    def flush(self) -> None:
        """Write every buffered row and commit it.

        Examples
        --------
        >>> import numpy as np, tempfile, os
        >>> st = Store.create(os.path.join(tempfile.mkdtemp(), "r.zarr"), variables={"e": ("d",)})
        >>> st.append([1], {"e": np.zeros((1, 3))}); st.flush(); len(st)
        1
        """
        self._check_open()
        if self._writer is not None:
            self._writer.flush()

    @_synchronized
    def close(self) -> None:
        """Flush (in append mode), release the lock and close. Idempotent."""
        if self._closed:
            return
        try:
            if self._writer is not None:
                self._writer.close()
        finally:
            self._backend.close()
            self._closed = True

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            w = self.__dict__.get("_writer")
            if not self.__dict__.get("_closed", True) and w is not None:
                if w.pending_rows():
                    log.warning(
                        "store %s was not closed: its last buffered rows were not committed "
                        "(call close() or use a with-block)",
                        self.path,
                    )
                w.lock.release()
        except Exception:
            pass

    # --------------------------------------------------------------- coords
    @property
    def coord_names(self) -> list[str]:
        """Names of the metadata coordinates (without the id)."""
        self._check_open()
        return self._reader.coord_names()

    @property
    @_doc_from(StoreReader.coords_frame)
    def coords(self) -> pd.DataFrame:
        return self._sync_reader().coords_frame()

    @_synchronized
    @_doc_from(StoreWriter.set_coords)
    def set_coords(self, values: Mapping[str, Any], ids: Sequence[Any] | None = None) -> None:
        self._write().set_coords(values, ids)

    # ---------------------------------------------------------------- views
    @property
    def version_token(self) -> str:
        """A string that changes whenever committed rows or coordinates change."""
        return self._sync_reader().version_token()

    def __getitem__(self, name: str) -> Any:
        """Lazy :class:`xarray.DataArray` of a dense variable (committed rows).

        The data is lazily indexed, like ``xarray.open_dataset`` without
        ``chunks``: selecting (``.sel(skin=1)``, ``.isel(image=...)``, slicing)
        stays lazy and ``.values`` reads only the selected rows, through the
        same fast reader as :meth:`read`. Reductions and other computations
        load the (selected) data into memory; call ``.chunk()`` first for
        dask (block-wise, bounded memory). Stored float16 is shown (and
        computed on) as float32: ``.dtype`` says float32.
        """
        return self._sync_reader().data_array(name)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        reader = self.__dict__.get("_reader")
        if reader is not None and name in reader.schema.variables:
            return self[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._schema.variables))

    @property
    def dataset(self) -> Any:
        """Lazy :class:`xarray.Dataset` of every dense variable (committed rows)."""
        return self._sync_reader().dataset()

    @_doc_from(StoreReader.sel)
    def sel(self, **labels: Any) -> Any:
        return self._sync_reader().sel(**labels)

    @_doc_from(StoreReader.read)
    def read(
        self, var: str, ids: Sequence[Any] | None = None, mask: Any = None, **labels: Any
    ) -> np.ndarray:
        return self._sync_reader().read(var, ids, mask, **labels)

    # --------------------------------------------------------------- ragged
    @_doc_from(RaggedAccess.get)
    def get_ragged(self, var: str, id: Any) -> np.ndarray:
        self._ragged.layout(var)
        self._sync_reader()
        return self._ragged.get(var, id)

    def ragged_hw(self, var: str) -> pd.DataFrame:
        """Per-row grid size and token count of a ragged variable.

        Returns
        -------
        pandas.DataFrame
            Columns ``h``, ``w`` (``-1`` when unknown) and ``n``, indexed by id.
        """
        self._ragged.layout(var)
        self._sync_reader()
        return self._ragged.hw(var)

    def iter_ragged(
        self, var: str, ids: Sequence[Any] | None = None
    ) -> Iterator[tuple[Any, np.ndarray]]:
        """Yield ``(id, row)`` for ragged rows (all committed rows by default)."""
        self._ragged.layout(var)
        self._sync_reader()
        return self._ragged.iter(var, ids)

    @_doc_from(RaggedAccess.padded)
    def get_ragged_padded(
        self, var: str, ids: Sequence[Any] | None = None, fill: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray]:
        self._ragged.layout(var)
        self._sync_reader()
        return self._ragged.padded(var, ids, fill)

    def to_parquet(
        self, path: Any, variables: Any = None, pool: str | None = "mean", **kwargs: Any
    ) -> Any:
        """Write ids, coordinates and vectors to a Parquet file (streamed in row groups).

        See :meth:`embstore.discovery.exporter.ExportAccessor.to_parquet` (``normalize``,
        ``block_rows``); ``pool`` reduces multi-vector variables, ``None`` keeps them nested.
        """
        from ..analysis import EmbeddingAnalyzer

        return EmbeddingAnalyzer(self).to_parquet(path, variables, pool, **kwargs)

    # ---------------------------------------------------- attrs and extras
    @property
    def attrs(self) -> dict[str, Any]:
        """Provenance and run information (embstore_version, format_version, created, updated, ...)."""
        self._check_open()
        return self._reader.attrs()

    @_doc_from(StoreWriter.update_attrs)
    def update_attrs(self, **kv: Any) -> None:
        self._write().update_attrs(**kv)

    @_doc_from(StoreWriter.write_table)
    def write_table(self, name: str, df: pd.DataFrame) -> None:
        self._write().write_table(name, df)

    def read_table(self, name: str) -> pd.DataFrame:
        """Read a table written by :meth:`write_table`.

        Raises
        ------
        UnknownVariableError
            No table of that name (the message lists the tables).
        """
        self._check_open()
        return self._reader.read_table(name)

    @property
    def tables(self) -> list[str]:
        """Names of stored tables."""
        self._check_open()
        return self._reader.tables()

    def write_blob(self, name: str, data: bytes) -> None:
        """Store bytes under a name (e.g. a serialised FAISS index)."""
        self._write().write_blob(name, data)

    def read_blob(self, name: str) -> bytes | None:
        """Bytes stored by :meth:`write_blob`, or None.

        Raises
        ------
        DamagedStoreError
            The stored bytes fail their SHA-256 check (changed on disk).
        """
        self._check_open()
        return transaction.read_blob(self._backend, name)

    @_doc_from(StoreWriter.record_skipped)
    def record_skipped(self, ids: Sequence[Any], reasons: str | Sequence[str]) -> None:
        self._write().record_skipped(ids, reasons)

    @property
    def skipped(self) -> pd.DataFrame:
        """Rows recorded by :meth:`record_skipped`: columns ``id`` and ``reason``."""
        self._check_open()
        return self._reader.skipped()

    # ----------------------------------------------------------------- repr
    def __repr__(self) -> str:
        if self._closed:
            return f"<embstore.Store {self.path!r} (closed)>"
        lines = [f"<embstore.Store {self.path!r} ({self._backend.kind}, mode={self.mode!r})>"]
        lines.append(f"  rows: {self._reader.n_rows()} along {self.row_dim!r}, id {self.id_name!r}")
        trailing = self._writer.trailing if self._writer is not None else {}
        for name, dims in self._schema.variables.items():
            t = trailing.get(name)
            lines.append(f"  {name}: {dims} {self._schema.dtypes[name]}" + (f" {t}" if t else ""))
        for name, dims in self._schema.ragged.items():
            lines.append(f"  {name} (ragged): {dims} {self._schema.dtypes[name]}")
        return "\n".join(lines)
