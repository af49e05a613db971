"""The :class:`Store`: one labeled, chunked, crash-safe store per extraction run.

See :doc:`/store` for the user guide. In short::

    st = Store.create("run.zarr", row_dim="image", id_name="image_id",
                      variables={"query_embeddings": ("query", "hidden")})
    st.append([1, 2], {"query_embeddings": x}, coords={"skin": [3, 7]})
    st.close()
    Store.open("run.zarr").query_embeddings.sel(skin=3)

How rows become visible
-----------------------
``append`` validates a batch (writing nothing when anything is wrong) and
buffers it. Whenever the buffer holds ``write_chunks`` whole chunks, they are
written in one call, then a commit record (see :mod:`embstore.store.commit`)
makes them visible. ``flush`` and ``close`` write the rest. A reader only
sees rows of the latest valid commit record, so a killed writer leaves every
committed row intact and nothing half-written visible.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import functools
import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import (
    DamagedStoreError,
    DiskFullError,
    DTypeMismatchError,
    DuplicateIdError,
    EmbstoreError,
    ReadOnlyStoreError,
    SelectionError,
    ShapeMismatchError,
    StoreError,
    UnknownVariableError,
    ValidationError,
)
from . import transaction
from .backends import Backend, backend_class
from .backends.base import fill_value_for
from .buffer import ChunkBuffer
from .catalog import CATALOG
from .commit import MAIN_REGION, CommitRecord, region_name
from .ragged import flat_dims, from_tokens, pad_rows, to_tokens
from .schema import FORMAT_VERSION, Schema, check_numeric, coerce_coord, ragged_layout
from .validation import check_attrs, check_chunk_rows, check_ids, check_name, check_table_frame

__all__ = ["Store"]

log = logging.getLogger(__name__)

_RAGGED_SUFFIXES = ("_offset", "_n", "_h", "_w")
_KEEP_RECORDS = 3


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _embstore_version() -> str:
    from .. import __version__

    return __version__


def _synchronized(method: Any) -> Any:
    """Run a method under the store's re-entrant lock (appends from a writer thread)."""

    @functools.wraps(method)
    def wrapper(self: Store, *args: Any, **kwargs: Any) -> Any:
        with self._mutex:
            return method(self, *args, **kwargs)

    return wrapper


def _kind_compatible(stored: np.dtype, new: np.dtype) -> bool:
    if stored.kind == new.kind:
        return True
    return stored.kind == "f" and new.kind in "iu"


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
        self._backend = backend
        self._schema = schema
        self.mode = mode
        self.path = backend.path
        self._write_chunks = max(1, int(write_chunks))
        self._closed = False
        self._mutex = threading.RLock()
        self._lock: Any = None
        if region is None:
            self._region = MAIN_REGION
            self._rstart, self._rstop = schema.n_prealloc, None
        else:
            self._region = region_name(*region)
            self._rstart, self._rstop = region
        backend.strict_arrays = frozenset({*schema.variables, *schema.ragged, schema.id_name})
        self._load()
        self._row_bufs: dict[str, ChunkBuffer] = {}
        self._flat_bufs: dict[str, ChunkBuffer] = {}
        if mode == "a":
            self._lock = backend.make_lock(self._region)
            self._lock.acquire(force=force)
            try:
                if region is not None or schema.n_prealloc:
                    from .regions import check_claims

                    check_claims(backend, self._region, schema.n_prealloc, force)
                stale = getattr(self._lock, "stale_pid", None)
                if (
                    stale is not None
                ):  # its writer was killed: drop its half-written temporary files
                    backend.remove_temp_files(stale)
                    transaction.remove_orphans(self, stale)
                self._prepare_writer()
                transaction.roll_forward(self)
            except BaseException:
                self._lock.release()
                raise

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
        path = str(path)
        schema = Schema.build(
            row_dim,
            id_name,
            variables,
            ragged,
            dtypes,
            chunk_rows,
            inner_chunk_rows,
            n_rows,
            compressor,
        )
        bcls = backend_class(path)
        if n_rows and not bcls.supports_regions:
            raise ValidationError(
                f"n_rows={n_rows}: the {bcls.kind} backend does not support parallel region writers; "
                "use a Zarr store (a path ending in .zarr)"
            )
        shapes = {k: tuple(int(s) for s in v) for k, v in (shapes or {}).items()}
        for name, shp in shapes.items():
            if name not in schema.variables:
                raise UnknownVariableError(
                    f"shapes names {name!r}, which is not a dense variable; declared: {sorted(schema.variables)}"
                )
            if len(shp) != len(schema.variables[name]):
                raise ShapeMismatchError(
                    f"shapes[{name!r}] = {shp} has {len(shp)} dims but {name!r} declares dims "
                    f"{schema.variables[name]}"
                )
        if schema.chunk_rows is None and shapes:
            schema.chunk_rows = schema.pick_chunk_rows(
                max(
                    int(np.prod(s)) * np.dtype(schema.dtypes[k]).itemsize for k, s in shapes.items()
                )
            )
        if n_rows:
            if schema.chunk_rows is None:
                raise ValidationError(
                    f"n_rows={n_rows} needs chunk_rows=... (regions must align to chunks) or shapes=..."
                )
            if n_rows % schema.chunk_rows:
                raise ValidationError(
                    f"n_rows={n_rows} must be a multiple of chunk_rows={schema.chunk_rows}"
                )
        check_attrs(attrs or {})
        now = _now()
        all_attrs: dict[str, Any] = dict(attrs or {})
        all_attrs.update(
            {
                "embstore": schema.to_json(),
                "embstore_version": _embstore_version(),
                "format_version": FORMAT_VERSION,
                "store_uuid": uuid.uuid4().hex,
                "created": now,
                "updated": now,
            }
        )
        backend = bcls.create(path, overwrite, storage_options, all_attrs)
        rec = CommitRecord(MAIN_REGION, 0, schema.n_prealloc, 0, {}, [], CommitRecord.now())
        backend.write_record(MAIN_REGION, 0, rec.encode())
        st = cls(backend, schema, "a", write_chunks=write_chunks)
        for name, shp in shapes.items():
            st._ensure_array(name, shp, schema.n_prealloc)
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
        from .modes import CREATE_ARGS, check_mode, schema_mismatch

        mode = check_mode(mode)
        unknown = sorted(set(create_kw) - set(CREATE_ARGS))
        if unknown:
            raise ValidationError(
                f"Store.open got unexpected arguments {unknown}; create arguments are {list(CREATE_ARGS)}"
            )
        path = str(path)
        bcls = backend_class(path)
        if mode in ("w", "w-") or (
            mode == "a" and create_kw and not bcls.exists(path, storage_options)
        ):
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
        if create_kw and mode != "a":
            raise ValidationError(
                f"create arguments {sorted(create_kw)} are for mode 'a', 'w' or 'w-'; got mode={mode!r}"
            )
        mode = "a" if mode == "r+" else mode
        backend = bcls.open(path, mode, storage_options)
        try:
            attrs = backend.read_attrs()
            if "embstore" not in attrs:
                from ..errors import NotAStoreError

                raise NotAStoreError(
                    f"{path!r} has no embstore schema in its attributes; it was not made by Store.create"
                )
            schema = Schema.from_json(attrs["embstore"], repr(path))
            diff = schema_mismatch(schema, create_kw) if create_kw else []
            if diff:
                raise ValidationError(
                    f"{path!r} exists with another schema ({'; '.join(diff)}); resume with the same arguments, "
                    "or pass mode='w' to replace it"
                )
            if region is not None:
                region = cls._check_region(schema, backend, region, mode)
            return cls(backend, schema, mode, region=region, force=force, write_chunks=write_chunks)
        except BaseException:
            backend.close()
            raise

    @staticmethod
    def _check_region(
        schema: Schema, backend: Backend, region: tuple[int, int], mode: str
    ) -> tuple[int, int]:
        if not backend.supports_regions:
            raise ValidationError(
                f"region={region}: the {backend.kind} backend has no region writers; use Zarr"
            )
        if mode != "a":
            raise ValidationError("region= is only for writers: pass mode='a'")
        try:
            start, stop = (int(region[0]), int(region[1]))
        except (TypeError, ValueError, IndexError) as exc:
            raise ValidationError(
                f"region={region!r} must be a (start, stop) pair of ints"
            ) from exc
        cr = schema.chunk_rows or 1
        n = schema.n_prealloc
        if not (0 <= start < stop <= n):
            raise ValidationError(
                f"region={region} must satisfy 0 <= start < stop <= n_rows={n} (preallocate with Store.create(n_rows=...))"
            )
        if start % cr or (stop % cr and stop != n):
            raise ValidationError(
                f"region={region} is not aligned to chunk_rows={cr}: use multiples of {cr}, "
                f"e.g. ({start - start % cr}, {min(n, stop + (-stop) % cr)})"
            )
        for other in backend.list_regions():
            if other in (MAIN_REGION, CATALOG) or other == region_name(start, stop):
                continue
            a, b = (int(x) for x in other[1:].split("-"))
            if a < stop and start < b:
                raise ValidationError(
                    f"region={region} overlaps region ({a}, {b}) already written; use disjoint regions"
                )
        return start, stop

    # -------------------------------------------------------------- state
    def _latest_record(self, region: str) -> CommitRecord | None:
        seqs = self._backend.list_records(region)
        for seq in reversed(seqs):
            rec = CommitRecord.decode(self._backend.read_record(region, seq))
            if rec is not None:
                return rec
            if self._backend.atomic_records or seq == seqs[0]:
                # records are published whole, so this is damage, not a write cut short by a kill
                raise DamagedStoreError(
                    f"commit record {region}/{seq} of {self.path!r} is unreadable (damaged or changed on "
                    "disk); nothing was deleted. Run `embstore check` to see the damage and `embstore repair` "
                    "to roll back to the last valid commit"
                )
            log.warning("ignoring invalid commit record %s/%d of %s", region, seq, self.path)
        return None

    def _load(self) -> None:
        """(Re)read commit records and reset cached views."""
        self._backend.invalidate()
        records: dict[str, CommitRecord] = {}
        for r in self._backend.list_regions():
            if r == CATALOG:
                continue
            rec = self._latest_record(r)
            if rec is not None:
                records[r] = rec
        if MAIN_REGION not in records:
            if (
                self._backend.has_array(self._schema.id_name)
                and self._backend.array_info(self._schema.id_name)[0][0]
            ):
                raise DamagedStoreError(
                    f"{self.path!r} holds rows but its commit records (_embstore/commits/main) are missing; "
                    "nothing was deleted. Run `embstore repair` to rebuild them from the stored ids"
                )
            records[MAIN_REGION] = CommitRecord(MAIN_REGION, -1, self._schema.n_prealloc, 0)
        self._records = records
        self._committed_parts: list[np.ndarray] | None = None
        self._ids_cache: np.ndarray | None = None
        self._coord_cache: dict[str, np.ndarray] = {}
        self._index_cache: pd.Index | None = None

    @_synchronized
    def refresh(self) -> None:
        """Re-read commit records (see rows committed by other writers since open)."""
        self._check_open()
        self.flush() if self.mode == "a" else None
        reset = getattr(self._backend, "reset_cache", None)
        if reset is not None:  # other writers may have grown the arrays
            reset()
        self._load()

    def _ranges(self) -> list[tuple[int, int]]:
        """Committed ``(start, stop)`` row ranges in order (regions by start, main last)."""
        out = []
        for rec in sorted(self._records.values(), key=lambda r: (r.region == MAIN_REGION, r.start)):
            if rec.n > 0:
                out.append((rec.start, rec.start + rec.n))
        return out

    def _positions(self) -> np.ndarray:
        rs = self._ranges()
        if not rs:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in rs])

    def _read_rows(self, name: str) -> np.ndarray:
        rs = self._ranges()
        staged = [r.staged[name] for r in self._records.values() if name in r.staged]
        if staged:  # a set_coords committed but not yet copied in (its writer was killed)
            return transaction.read_with_staged(self._backend, name, rs, staged)
        if not rs or not self._backend.has_array(name):
            return np.zeros(0, dtype=self._array_dtype(name))
        parts = [self._backend.read(name, slice(a, b)) for a, b in rs]
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _array_dtype(self, name: str) -> np.dtype:
        if self._backend.has_array(name):
            return self._backend.array_info(name)[1]
        return np.dtype("int64")

    @property
    def _own(self) -> CommitRecord:
        return self._records.get(self._region) or CommitRecord(self._region, -1, self._rstart, 0)

    def _prepare_writer(self) -> None:
        """Drop uncommitted leftovers and reload a partial last chunk into buffers."""
        rec = self._own
        self._records[self._region] = rec
        end = rec.start + rec.n
        self._disk_end = end
        self._coords_known: list[str] = list(self._all_coord_names())
        self._trailing: dict[str, tuple[int, ...]] = {}
        for name in self._row_array_names() + list(self._schema.ragged):
            if self._backend.has_array(name):
                self._trailing[name] = tuple(self._backend.array_info(name)[0][1:])
        if self._schema.chunk_rows is None:
            return
        if self._region == MAIN_REGION:
            for name in self._row_array_names():
                if self._backend.has_array(name) and self._backend.array_info(name)[0][0] > end:
                    self._backend.resize(name, end)
            for var in self._schema.ragged:
                if self._backend.has_array(var):
                    tot = int(rec.ragged.get(var, 0))
                    if self._backend.array_info(var)[0][0] > tot:
                        self._backend.resize(var, tot)
        self._init_buffers(end)

    def _init_buffers(self, end: int) -> None:
        assert self._schema.chunk_rows is not None
        for name in self._row_array_names():
            if not self._backend.has_array(name):
                continue
            ch = self._row_chunk(name)
            b0 = end - end % ch
            buf = ChunkBuffer(b0, ch)
            if b0 < end:
                buf.append(self._backend.read(name, slice(b0, end)))
            self._row_bufs[name] = buf
        for var in self._schema.ragged:
            if not self._backend.has_array(var):
                continue
            tot = int(self._own.ragged.get(var, 0))
            tc = self._backend.array_info(var)[2]
            t0 = tot - tot % tc
            buf = ChunkBuffer(t0, tc)
            if t0 < tot:
                buf.append(self._backend.read(var, slice(t0, tot)))
            self._flat_bufs[var] = buf

    def _row_chunk(self, name: str) -> int:
        """Rows per chunk of the row array ``name`` (as stored, or as it will be created)."""
        if self._backend.has_array(name):
            return self._backend.array_info(name)[2]
        return self._schema.row_array_chunk(name)

    def _all_coord_names(self) -> list[str]:
        names: list[str] = []
        for rec in self._records.values():
            for c in rec.coords:
                if c not in names:
                    names.append(c)
        return names

    def _row_array_names(self) -> list[str]:
        """Every array along the row dim: dense vars, id, coords, ragged bookkeeping."""
        names = list(self._schema.variables) + [self._schema.id_name]
        names += list(getattr(self, "_coords_known", self._all_coord_names()))
        for var in self._schema.ragged:
            names += [var + s for s in _RAGGED_SUFFIXES]
        return names

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

    def _check_writable(self) -> None:
        self._check_open()
        if self.mode != "a":
            raise ReadOnlyStoreError(
                f"store {self.path!r} is open read-only; use Store.open({self.path!r}, mode='a') to write"
            )

    @_synchronized
    def _sync_reader(self) -> None:
        """Writers flush pending rows before answering questions about rows."""
        self._check_open()
        if self.mode == "a" and self._row_bufs and self._pending_rows():
            self.flush()

    def _pending_rows(self) -> bool:
        idb = self._row_bufs.get(self.id_name)
        return idb is not None and idb.end > self._disk_end

    @property
    def ids(self) -> np.ndarray:
        """Committed ids in commit order (ints or strings)."""
        self._sync_reader()
        if self._ids_cache is None:
            self._ids_cache = self._read_rows(self.id_name)
            self._ids_cache.flags.writeable = False
        return self._ids_cache

    def _id_index(self) -> pd.Index:
        if self._index_cache is None:
            self._index_cache = pd.Index(self.ids)
        return self._index_cache

    def __len__(self) -> int:
        self._sync_reader()
        return sum(b - a for a, b in self._ranges())

    def __contains__(self, item: Any) -> bool:
        return bool(len(self.missing([item])) == 0)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.ids.tolist())

    def missing(self, candidate_ids: Iterable[Any]) -> list[Any]:
        """Candidates that are not committed, in the order given.

        Parameters
        ----------
        candidate_ids : iterable
            Ids to check (e.g. every image of a dataset).

        Returns
        -------
        list
            The candidates absent from the store: what a resumed run must
            still extract.

        Examples
        --------
        >>> import numpy as np, tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "r.zarr")
        >>> with Store.create(p, variables={"e": ("d",)}) as st:
        ...     st.append([1, 3], {"e": np.zeros((2, 2))})
        ...     st.missing([1, 2, 3, 4])
        [2, 4]
        """
        cand = list(candidate_ids)
        if not cand:
            return []
        idx = self._id_index()
        if len(idx) == 0:
            return cand
        arr = np.asarray(cand)
        if (idx.dtype.kind in "iu" and arr.dtype.kind not in "iu") or (
            idx.dtype.kind not in "iu" and arr.dtype.kind in "iu"
        ):
            return cand
        found = idx.isin(arr)
        present = set(np.asarray(idx[found]).tolist())
        return [c for c in cand if (c.item() if isinstance(c, np.generic) else c) not in present]

    # ---------------------------------------------------------- validation
    def _known_trailing(self, name: str) -> tuple[int, ...] | None:
        return self._trailing.get(name)

    def _dim_sizes(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for name, dims in self._schema.variables.items():
            t = self._trailing.get(name)
            if t is not None:
                sizes.update(zip(dims, t))
        for var, dims in self._schema.ragged.items():
            t = self._trailing.get(var)
            if t is not None:
                sizes.update(zip(flat_dims(var, dims, ragged_layout(dims))[1:], t))
        return sizes

    def _validate(
        self,
        ids: Any,
        data: Mapping[str, Any],
        coords: Mapping[str, Any] | None,
        ragged_hw: Mapping[str, Sequence[tuple[int, int]]] | None,
        allow_nonfinite: bool,
    ) -> tuple[
        np.ndarray, dict[str, np.ndarray], dict[str, list[np.ndarray]], dict[str, tuple[int, ...]]
    ]:
        """Check a batch; nothing is cast or copied yet.

        Dense variables and ragged token rows come back validated but in
        their input dtype: :meth:`append` casts them straight into the
        append buffers (one pass over the data). Ragged variables come back
        as the list of per-row token arrays.
        """
        sch = self._schema
        id_arr = check_ids(ids)  # a new int64 or str array: no reference to the caller's
        n = len(id_arr)
        stored_id = self._trailing_dtype(sch.id_name)
        if stored_id is not None and (stored_id.kind in "iu") != (id_arr.dtype.kind in "iu"):
            raise DTypeMismatchError(
                f"ids of this store are {'ints' if stored_id.kind in 'iu' else 'strings'}; got {id_arr.dtype} "
                f"(e.g. {id_arr[:2].tolist()!r}); convert them"
            )
        uniq, counts = np.unique(id_arr, return_counts=True)
        if (counts > 1).any():
            raise DuplicateIdError(
                f"ids repeat within the batch: {uniq[counts > 1][:5].tolist()}; each row needs a unique {sch.id_name}"
            )
        present = [i for i in id_arr.tolist() if i in self._id_set()]
        if present:
            raise DuplicateIdError(
                f"{len(present)} ids are already in the store (e.g. {present[:5]}); skip them "
                f"(use store.missing(ids)) or create a new store"
            )
        if not isinstance(data, Mapping):
            raise ValidationError(
                f"data must be a dict {{variable: array}}; got {type(data).__name__}"
            )
        declared = set(sch.variables) | set(sch.ragged)
        unknown = sorted(set(data) - declared)
        if unknown:
            raise UnknownVariableError(
                f"unknown variables {unknown}; this store declares {sorted(declared)} "
                "(declare new variables in a new store)"
            )
        absent = sorted(declared - set(data))
        if absent:
            raise ValidationError(
                f"append is missing variables {absent}; every row needs every variable of {sorted(declared)}"
            )
        rows: dict[str, np.ndarray] = {}
        flats: dict[str, list[np.ndarray]] = {}
        new_trailing: dict[str, tuple[int, ...]] = {}
        sizes = self._dim_sizes()

        def check_dims(name: str, dims: Sequence[str], trailing: tuple[int, ...]) -> None:
            for d, s in zip(dims, trailing):
                if sizes.get(d, s) != s:
                    raise ShapeMismatchError(
                        f"variable {name!r} has {d}={s} but dimension {d!r} has size {sizes[d]} in another "
                        "variable; use distinct dimension names for different sizes"
                    )
                sizes[d] = s

        for name, dims in sch.variables.items():
            arr = np.asarray(data[name])
            if arr.ndim != 1 + len(dims) or arr.shape[0] != n:
                raise ShapeMismatchError(
                    f"variable {name!r} has shape {arr.shape}; expected ({n}, ...) with {len(dims)} trailing "
                    f"dims {dims} ({n} = number of ids)"
                )
            known = self._known_trailing(name)
            if known is not None and tuple(arr.shape[1:]) != known:
                raise ShapeMismatchError(
                    f"variable {name!r} has shape {arr.shape}; this store holds rows of shape {known}, "
                    f"so expected {(n,) + known}"
                )
            if known is None:
                check_dims(name, dims, tuple(arr.shape[1:]))
                new_trailing[name] = tuple(arr.shape[1:])
            rows[name] = check_numeric(name, arr, sch.dtypes[name], allow_nonfinite, cast=False)
        for var, dims in sch.ragged.items():
            layout = ragged_layout(dims)
            items = data[var]
            if isinstance(items, np.ndarray) and items.dtype != object:
                items = list(items)
            items = list(items)
            if len(items) != n:
                raise ShapeMismatchError(
                    f"ragged variable {var!r} has {len(items)} rows; expected {n} (one array per id)"
                )
            hw = None if ragged_hw is None else ragged_hw.get(var)
            if hw is not None and (layout == "map" or len(hw) != n):
                raise ShapeMismatchError(
                    f"ragged_hw[{var!r}] must give one (h, w) per row ({n}) for a ('token', ...) variable"
                )
            toks, offs, ns, hs, ws = [], [], [], [], []
            known = self._known_trailing(var)
            start = (
                self._flat_bufs[var].end
                if var in self._flat_bufs
                else int(self._own.ragged.get(var, 0))
            )
            for i, item in enumerate(items):
                a = np.asarray(item)
                if a.ndim != len(dims) or (layout == "map" and a.ndim != 3):
                    raise ShapeMismatchError(
                        f"row {i} of ragged variable {var!r} has shape {a.shape}; expected {len(dims)} dims {dims}"
                    )
                t, h, w = to_tokens(a, layout)
                if hw is not None:
                    h, w = (int(hw[i][0]), int(hw[i][1]))
                    if h * w != t.shape[0]:
                        raise ShapeMismatchError(
                            f"ragged_hw[{var!r}][{i}] = ({h}, {w}) but the row has {t.shape[0]} tokens != h*w"
                        )
                if known is None:
                    known = tuple(t.shape[1:])
                    check_dims(var, flat_dims(var, dims, layout)[1:], known)
                    new_trailing[var] = known
                elif tuple(t.shape[1:]) != known:
                    raise ShapeMismatchError(
                        f"row {i} of ragged variable {var!r} has feature shape {t.shape[1:]}; expected {known}"
                    )
                toks.append(check_numeric(var, t, sch.dtypes[var], allow_nonfinite, cast=False))
                offs.append(start)
                start += t.shape[0]
                ns.append(t.shape[0])
                hs.append(h)
                ws.append(w)
            flats[var] = toks
            rows[var + "_offset"] = np.asarray(offs, dtype=np.int64)
            rows[var + "_n"] = np.asarray(ns, dtype=np.int64)
            rows[var + "_h"] = np.asarray(hs, dtype=np.int64)
            rows[var + "_w"] = np.asarray(ws, dtype=np.int64)
        reserved = set(self._row_array_names()) | declared | {sch.row_dim}
        if coords is not None and not isinstance(coords, Mapping):
            raise ValidationError(
                f"coords must be a dict {{name: values}}; got {type(coords).__name__}"
            )
        for cname, values in (coords or {}).items():
            check_name("coordinate", cname, reserved - set(self._coords_known))
            arr = coerce_coord(cname, values, n)
            stored = self._trailing_dtype(cname)
            if stored is not None and not _kind_compatible(stored, arr.dtype):
                raise DTypeMismatchError(
                    f"coordinate {cname!r} holds {stored} values; got {arr.dtype} (e.g. {arr[:2].tolist()!r})"
                )
            if stored is not None and stored.kind == "f":
                arr = arr.astype(np.float64)
            rows[cname] = arr
        rows[sch.id_name] = id_arr
        return id_arr, rows, flats, new_trailing

    def _trailing_dtype(self, name: str) -> np.dtype | None:
        buf = self._row_bufs.get(name)
        if buf is not None and len(buf):
            return buf.block(buf.start + 1).dtype
        if self._backend.has_array(name):
            return self._backend.array_info(name)[1]
        return None

    def _id_set(self) -> set[Any]:
        if not hasattr(self, "_ids_seen"):
            self._ids_seen: set[Any] = set(self._read_rows(self.id_name).tolist())
        return self._ids_seen

    # ---------------------------------------------------------------- write
    @_synchronized
    def append(
        self,
        ids: Sequence[Any] | np.ndarray,
        data: Mapping[str, Any],
        coords: Mapping[str, Any] | None = None,
        ragged_hw: Mapping[str, Sequence[tuple[int, int]]] | None = None,
        allow_nonfinite: bool = False,
    ) -> None:
        """Validate and buffer a batch of rows.

        Parameters
        ----------
        ids : sequence of int or str
            One unique id per row, not yet in the store.
        data : dict
            Every variable: dense ones as arrays with a leading row axis,
            ragged ones as a list of per-row arrays.
        coords : dict, optional
            Metadata coordinates, one value per row (ints, floats, bools or
            strings). Coordinates omitted here but known to the store get fill
            values (-1, NaN, False or "").
        ragged_hw : dict, optional
            ``{var: [(h, w), ...]}`` for ``("token", F)`` variables whose tokens
            form an ``h x w`` grid.
        allow_nonfinite : bool
            Accept NaN/Inf values.

        Raises
        ------
        ReadOnlyStoreError, ShapeMismatchError, DTypeMismatchError,
        DuplicateIdError, NonFiniteError, UnknownVariableError, ValidationError
            Nothing is written when any check fails.

        Notes
        -----
        Rows are buffered and written in whole chunks; they become visible
        (committed) when their chunks are written or on :meth:`flush` /
        :meth:`close`.
        """
        self._check_writable()
        if len(ids) == 0:
            return
        id_arr, rows, flats, new_trailing = self._validate(
            ids, data, coords, ragged_hw, allow_nonfinite
        )
        n = len(id_arr)
        if n == 0:
            return
        if self._schema.chunk_rows is not None:  # a chunk of any new array must stay <= 512 MiB
            for name, trailing in new_trailing.items():
                if name in self._schema.variables:
                    row_bytes = (
                        int(np.prod(trailing)) * np.dtype(self._schema.dtypes[name]).itemsize
                    )
                    check_chunk_rows("chunk_rows", self._schema.chunk_rows, row_bytes)
        if self._rstop is not None:
            end = self._row_end() + n
            if end > self._rstop:
                raise ShapeMismatchError(
                    f"region {self._rstart}-{self._rstop} has room for {self._rstop - self._row_end()} more rows; "
                    f"got {n}. Give this writer a larger region"
                )
        # ---- nothing below raises on user input
        if self._schema.chunk_rows is None:
            row_bytes = 1
            for name in self._schema.variables:
                row_bytes = max(row_bytes, int(np.prod(rows[name].shape[1:])) * rows[name].itemsize)
            self._schema.chunk_rows = self._schema.pick_chunk_rows(row_bytes)
            attrs = self._backend.read_attrs()
            attrs["embstore"] = self._schema.to_json()
            self._backend.write_attrs(attrs)
        self._trailing.update(new_trailing)
        cr = self._schema.chunk_rows
        row_end = self._row_end()
        for name, arr in rows.items():
            buf = self._row_bufs.get(name)
            if buf is None:
                ch = self._row_chunk(name)
                buf = ChunkBuffer(self._disk_end - self._disk_end % ch, ch)
                self._row_bufs[name] = buf
                missing_rows = row_end - buf.start
                if missing_rows > 0:  # new coordinate: fill earlier buffered rows
                    if self._backend.has_array(name):
                        buf.append(self._backend.read(name, slice(buf.start, self._disk_end)))
                        missing_rows = row_end - self._disk_end
                    buf.append(np.full(missing_rows, fill_value_for(arr.dtype), dtype=arr.dtype))
                if name not in self._coords_known and name in (coords or {}):
                    self._coords_known.append(name)
            if name in self._schema.variables:
                buf.append_cast(
                    arr, self._schema.dtypes[name]
                )  # validated, not yet cast: cast into the buffer
            else:
                buf.append(arr)
        for name, buf in self._row_bufs.items():
            if name not in rows:  # known coordinate not given in this batch
                dt = self._trailing_dtype(name) or np.dtype("int64")
                buf.append(np.full(n, fill_value_for(dt), dtype=dt))
        for var, parts in flats.items():
            if not parts:
                continue
            buf = self._flat_bufs.get(var)
            if buf is None:
                tc = self._token_chunk(var, parts[0])
                tot = int(self._own.ragged.get(var, 0))
                buf = ChunkBuffer(tot - tot % tc, tc)
                self._flat_bufs[var] = buf
            dt = self._schema.dtypes[var]
            for part in parts:  # each row's tokens cast straight into the buffer (no concatenation)
                buf.append_cast(part, dt)
        self._ids_seen.update(id_arr.tolist())
        if self._row_end() - (self._disk_end - self._disk_end % cr) >= self._write_chunks * cr:
            self._write(final=False)

    def _row_end(self) -> int:
        b = self._row_bufs.get(self.id_name)
        return b.end if b is not None else self._disk_end

    def _token_chunk(self, var: str, flat: np.ndarray) -> int:
        """Tokens per chunk of a ragged variable's flat array: about 16 MiB, a power of two.

        Larger than the dense chunks (~8 MiB): token rows are read per row
        range (never one dask block per chunk), and every chunk file costs an
        inode creation when written (4 MiB chunks made DETR encoder maps the
        largest group of chunk files in ``bench/store_io.py``).
        """
        if self._backend.has_array(var):
            return self._backend.array_info(var)[2]
        per_token = max(
            1, int(np.prod(flat.shape[1:])) * np.dtype(self._schema.dtypes[var]).itemsize
        )
        t = max(1, (16 * 2**20) // per_token)
        return int(min(1 << 16, max(256, 2 ** int(np.floor(np.log2(t))))))

    def _ensure_array(
        self,
        name: str,
        trailing: tuple[int, ...],
        length: int,
        dtype: Any = None,
        chunk: int | None = None,
    ) -> None:
        if self._backend.has_array(name):
            return
        sch = self._schema
        cr = sch.chunk_rows or 1
        inner = sch.inner_chunk_rows
        if name in sch.variables:
            dims = (sch.row_dim,) + sch.variables[name]
            dt = sch.dtypes[name]
            attrs = {"coordinates": " ".join([sch.id_name] + self._coords_known)}
        elif name in sch.ragged:
            dims = flat_dims(name, sch.ragged[name], ragged_layout(sch.ragged[name]))
            dt = sch.dtypes[name]
            attrs = {"embstore_ragged": True}
            cr = int(chunk or 4096)
            inner = None
        else:
            dims = (sch.row_dim,)
            dt = "str" if np.dtype(dtype).kind in "UOT" else np.dtype(dtype).name
            attrs = {}
            cr = sch.row_array_chunk(name)
            inner = None
        self._backend.create_array(
            name,
            (length,) + tuple(trailing),
            cr,
            dt,
            dims,
            attrs=attrs,
            inner_chunk_rows=inner,
            compressor=sch.compressor,
        )
        self._trailing[name] = tuple(trailing)

    def _write(self, final: bool) -> None:
        """Write buffered whole chunks (all rows when ``final``), then commit.

        A full disk (``ENOSPC``/``EDQUOT``) raises :class:`DiskFullError`;
        nothing of this write is committed, so the committed rows stay as
        they were, and the rows stay buffered (a later flush retries).
        """
        with self._disk_full_guard():
            self._write_rows(final)

    @contextlib.contextmanager
    def _disk_full_guard(self) -> Iterator[None]:
        """Turn ``ENOSPC``/``EDQUOT`` raised inside into :class:`DiskFullError`."""
        try:
            yield
        except (OSError, RuntimeError) as exc:  # h5py raises RuntimeError, errno only in the text
            text = str(exc)
            code = getattr(exc, "errno", None)
            full = code in (errno.ENOSPC, errno.EDQUOT) or (
                code is None
                and ("No space left" in text or "errno = 28," in text or "errno = 122," in text)
            )
            if isinstance(exc, EmbstoreError) or not full:
                raise
            raise DiskFullError(
                f"the disk holding {self.path!r} is full ({exc}); rows buffered since the last commit were not "
                f"written and committed rows are intact ({self._disk_end} rows). Free space, then flush() or "
                "close() again, or resume the run"
            ) from exc

    def _write_rows(self, final: bool) -> None:
        idb = self._row_bufs.get(self.id_name)
        if idb is None:
            return
        cr = self._schema.chunk_rows or 1
        end = idb.end if final else idb.end - idb.end % cr  # whole chunks of the dense variables
        if end <= self._disk_end:
            return
        rec = self._own
        ragged_tot = dict(rec.ragged)
        # 1. ragged token rows
        for var, fb in self._flat_bufs.items():
            offb = self._row_bufs[var + "_offset"]
            if end < offb.end:
                tok_end = int(offb.block(end + 1)[-1])
            else:
                tok_end = fb.end
            self._ensure_array(var, self._trailing[var], 0, chunk=fb.chunk)
            if tok_end > fb.start:
                self._grow(var, tok_end, fb.chunk)
                self._backend.write(var, fb.start, fb.block(tok_end))
            fb.advance(tok_end)
            ragged_tot[var] = tok_end
        # 2. row arrays (ids last among data so a half-written chunk never shows ids)
        names = [k for k in self._row_bufs if k != self.id_name] + [self.id_name]
        new_ids = idb.block(end)[self._disk_end - idb.start :].copy()
        for name in names:
            buf = self._row_bufs[name]
            if buf.start >= end:  # written by an earlier try that failed further on (disk full)
                continue
            block = buf.block(end)
            self._ensure_array(
                name, tuple(block.shape[1:]), self._schema.n_prealloc, dtype=block.dtype
            )
            if self._region == MAIN_REGION:
                self._grow(name, end, cr)  # every row array grows alike (one row count)
            self._backend.write(name, buf.start, block)
            buf.advance(end)
        self._backend.flush()
        # 3. commit record
        self._commit(n=end - rec.start, ragged=ragged_tot)
        self._disk_end = end
        if self._ids_cache is not None:
            self._ids_cache = (
                np.concatenate([self._ids_cache, new_ids]) if len(self._ranges()) <= 1 else None
            )
            if self._ids_cache is not None:
                self._ids_cache.flags.writeable = False
        self._index_cache = None
        self._coord_cache = {}

    def _grow(self, name: str, end: int, chunk: int) -> None:
        """Make room for ``end`` rows, growing geometrically (trimmed on close)."""
        size = self._backend.array_info(name)[0][0]
        if size < end:
            target = max(end + 64 * chunk, 2 * size)  # few metadata rewrites
            self._backend.resize(name, target + (-target) % chunk)

    def _trim(self) -> None:
        """Cut arrays of the main region to the committed length (clean close)."""
        if self._region != MAIN_REGION or self.mode != "a":
            return
        rec = self._own
        for name in self._row_array_names():
            if (
                self._backend.has_array(name)
                and self._backend.array_info(name)[0][0] != rec.start + rec.n
            ):
                if self._schema.n_prealloc and rec.start + rec.n < self._schema.n_prealloc:
                    continue
                self._backend.resize(name, max(rec.start + rec.n, self._schema.n_prealloc))
        for var in self._schema.ragged:
            if self._backend.has_array(var):
                self._backend.resize(var, int(rec.ragged.get(var, 0)))

    def _commit(
        self,
        n: int | None = None,
        ragged: dict[str, int] | None = None,
        staged: dict[str, Any] | None = None,
        visible: bool = True,
    ) -> None:
        old = self._own
        # a killed writer may have left a newer, invalid (cut short) record: never reuse its number
        listed = self._backend.list_records(self._region)
        rec = CommitRecord(
            region=self._region,
            seq=max([old.seq] + listed) + 1,
            start=old.start,
            n=old.n if n is None else n,
            ragged=dict(old.ragged if ragged is None else ragged),
            coords=list(self._coords_known),
            time=CommitRecord.now(),
            staged=dict(old.staged if staged is None else staged),
            vis=-1 if visible else old.visible_seq,
        )
        if rec.coords != old.coords:
            coord_attr = " ".join([self.id_name] + rec.coords)
            set_attrs = getattr(self._backend, "set_array_attrs", None)
            for var in self._schema.variables:
                if set_attrs is not None and self._backend.has_array(var):
                    set_attrs(var, {"coordinates": coord_attr})
        self._backend.write_record(self._region, rec.seq, rec.encode())
        self._backend.flush()
        self._records[self._region] = rec
        self._consolidate()  # at once: plain readers lag the commit by as few I/O steps as possible
        for seq in listed:
            if seq <= rec.seq - _KEEP_RECORDS:
                self._backend.delete_record(self._region, seq)

    def _consolidate(self) -> None:
        """Zarr consolidated metadata of the committed rows, for plain readers (xarray.open_zarr).

        Only the main writer writes it: region writers of a preallocated store
        run concurrently and would race on the root ``zarr.json``.
        """
        if self._region != MAIN_REGION:
            return
        from .backends.consolidate import write_consolidated

        ends = [r.start + r.n for r in self._records.values()]
        tokens = dict(self._own.ragged) if len(self._records) <= 1 else {}
        write_consolidated(self._backend, max(ends, default=0), self.row_dim, tokens)

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
        if self.mode != "a":
            return
        self._write(final=True)
        with self._disk_full_guard():
            attrs = self._backend.read_attrs()
            attrs["updated"] = _now()
            self._backend.write_attrs(attrs)
            self._backend.flush()
            self._consolidate()  # writing the attrs dropped it

    @_synchronized
    def close(self) -> None:
        """Flush (in append mode), release the lock and close. Idempotent."""
        if self._closed:
            return
        try:
            if self.mode == "a":
                self.flush()
                with self._disk_full_guard():
                    self._trim()
                    self._backend.flush()
        finally:
            if self._lock is not None:
                self._lock.release()
            self._backend.close()
            self._closed = True

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            if not self._closed and self._lock is not None:
                if self._pending_rows():
                    log.warning(
                        "store %s was not closed: its last buffered rows were not committed "
                        "(call close() or use a with-block)",
                        self.path,
                    )
                self._lock.release()
        except Exception:
            pass

    # --------------------------------------------------------------- coords
    def _coord_values(self, name: str) -> np.ndarray:
        if name not in self._coord_cache:
            self._coord_cache[name] = self._read_rows(name)
        return self._coord_cache[name]

    def _has_coord(self, name: str) -> bool:
        """Whether coordinate ``name`` has stored values (its array, or a committed staged version)."""
        return self._backend.has_array(name) or any(
            name in r.staged for r in self._records.values()
        )

    @property
    def coord_names(self) -> list[str]:
        """Names of the metadata coordinates (without the id)."""
        self._check_open()
        return self._all_coord_names() if self.mode == "r" else list(self._coords_known)

    @property
    def coords(self) -> pd.DataFrame:
        """Row coordinates as a DataFrame indexed by id (committed rows).

        Examples
        --------
        >>> import numpy as np, tempfile, os
        >>> st = Store.create(os.path.join(tempfile.mkdtemp(), "r.zarr"), variables={"e": ("d",)})
        >>> st.append([5, 6], {"e": np.zeros((2, 1))}, coords={"skin": [1, 2]})
        >>> st.coords
                  skin
        image_id
        5            1
        6            2
        """
        ids = self.ids
        names = [c for c in self.coord_names if self._has_coord(c)]
        df = pd.DataFrame(
            {c: self._coord_values(c) for c in names}, index=pd.Index(ids, name=self.id_name)
        )
        return df

    @_synchronized
    def set_coords(self, values: Mapping[str, Any], ids: Sequence[Any] | None = None) -> None:
        """Add or overwrite coordinates of committed rows.

        Parameters
        ----------
        values : dict
            Coordinate name -> one value per selected row.
        ids : sequence, optional
            Rows to set (default: every committed row, in :attr:`ids` order;
            for a region writer, the rows of its region). Rows not listed keep
            their value (fill value for a new coordinate). A region writer may
            only set rows of its own region.

        Notes
        -----
        Copy-on-write: the new values are written to a hidden array and made
        visible by one commit record, so a writer killed at any point leaves
        every coordinate entirely old or entirely new (see
        :mod:`embstore.store.transaction`).

        Raises
        ------
        ReadOnlyStoreError, ShapeMismatchError, DTypeMismatchError, ValidationError

        Examples
        --------
        >>> import numpy as np, tempfile, os
        >>> st = Store.create(os.path.join(tempfile.mkdtemp(), "r.zarr"), variables={"e": ("d",)})
        >>> st.append([1, 2, 3], {"e": np.zeros((3, 1))})
        >>> st.set_coords({"cluster": [0, 0, 1]})
        >>> st.set_coords({"cluster": [7]}, ids=[2])
        >>> st.coords["cluster"].tolist()
        [0, 7, 1]
        """
        self._check_writable()
        self.flush()
        all_pos = self._positions()
        total = (
            self._disk_end
            if self._region == MAIN_REGION
            else max(self._schema.n_prealloc, self._disk_end)
        )
        # a region writer touches only its own rows (and so only its own chunks)
        lo, hi = (
            (0, total)
            if self._region == MAIN_REGION
            else (self._rstart, min(int(self._rstop or total), total))
        )
        if ids is None:
            pos = (
                all_pos
                if self._region == MAIN_REGION
                else np.arange(self._own.start, self._own.start + self._own.n)
            )
        else:
            id_list = np.asarray(list(ids))
            loc = (
                self._id_index().get_indexer(id_list)
                if len(id_list)
                else np.zeros(0, dtype=np.int64)
            )
            if (loc < 0).any():
                raise ValidationError(
                    f"set_coords: ids {id_list[loc < 0][:5].tolist()} are not in the store; pass committed ids"
                )
            pos = all_pos[loc]
            outside = (pos < lo) | (pos >= hi)
            if outside.any():
                raise ValidationError(
                    f"set_coords: ids {id_list[outside][:5].tolist()} are rows of another region; a region "
                    f"writer ({lo}, {hi}) sets coordinates of its own rows only (open that region, or set them "
                    "with a plain writer after the region writers have closed)"
                )
        reserved = (
            set(self._schema.variables) | set(self._schema.ragged) | {self.row_dim, self.id_name}
        )
        for var in self._schema.ragged:
            reserved |= {var + s for s in _RAGGED_SUFFIXES}
        prepared = {}
        for cname, vals in values.items():
            check_name("coordinate", cname, reserved)
            arr = coerce_coord(cname, vals, len(pos))
            stored = self._trailing_dtype(cname)
            if stored is not None and not _kind_compatible(stored, arr.dtype):
                raise DTypeMismatchError(
                    f"coordinate {cname!r} holds {stored} values; got {arr.dtype}. Use a new name for a new type"
                )
            prepared[cname] = arr
        if self._schema.chunk_rows is None and prepared:
            raise ValidationError("set_coords needs at least one appended row")
        fulls: dict[str, np.ndarray] = {}
        for cname, arr in prepared.items():
            if self._backend.has_array(cname):
                full = self._backend.read(cname, slice(0, total))
                if len(full) < total:
                    full = np.concatenate(
                        [full, np.full(total - len(full), fill_value_for(full.dtype), full.dtype)]
                    )
                if full.dtype.kind == "f":
                    arr = arr.astype(np.float64)
            else:
                full = np.full(total, fill_value_for(arr.dtype), dtype=arr.dtype)
            full = (
                full.astype(arr.dtype)
                if full.dtype.kind in "UT" and arr.dtype.kind in "UT"
                else full
            )
            full[pos] = arr
            fulls[cname] = full
            if cname not in self._coords_known:
                self._coords_known.append(cname)
        if self._backend.staged_arrays:  # copy-on-write: stage, commit, copy in, commit, clean up
            entries: dict[str, Any] = {}
            for cname, full in fulls.items():
                sname = transaction.stage_name(cname)
                dt = "str" if full.dtype.kind in "UOT" else full.dtype.name
                self._backend.create_array(
                    sname, (total,), self._row_chunk(cname), dt, (self.row_dim,)
                )
                self._backend.write(sname, 0, full)
                entries[cname] = {"array": sname, "ranges": [[lo, hi]]}
            self._backend.flush()
            self._commit(staged=entries)  # the new values are visible from here on
            transaction.apply_staged(self, entries)
            self._commit(staged={}, visible=False)
            for ent in entries.values():
                self._backend.delete_array(ent["array"])
        else:  # backends without hidden arrays write in place (see Backend.staged_arrays)
            for cname, full in fulls.items():
                self._ensure_array(cname, (), max(total, self._schema.n_prealloc), dtype=full.dtype)
                if self._backend.array_info(cname)[0][0] < hi:
                    self._backend.resize(cname, hi)
                self._backend.write(cname, lo, full[lo:hi])
            self._backend.flush()
            self._commit()
        for cname, full in fulls.items():
            # keep the write buffer consistent with what is now on disk
            buf = self._row_bufs.get(cname)
            ch = self._row_chunk(cname)
            if buf is None and self._row_bufs:
                buf = ChunkBuffer(self._disk_end - self._disk_end % ch, ch)
                self._row_bufs[cname] = buf
            if buf is not None:
                nb = ChunkBuffer(buf.start, ch)
                if buf.start < self._disk_end:
                    nb.append(full[buf.start : self._disk_end])
                self._row_bufs[cname] = nb
        self._coord_cache = {}

    # ---------------------------------------------------------------- views
    @property
    def version_token(self) -> str:
        """A string that changes whenever committed rows or coordinates change."""
        self._sync_reader()
        attrs_uuid = self._backend.read_attrs().get("store_uuid", self.path)
        state = sorted((r.region, r.visible_seq, r.n) for r in self._records.values())
        return hashlib.sha1(json.dumps([attrs_uuid, state]).encode()).hexdigest()[:16]

    def _xr_coords(self, sub: np.ndarray | None = None) -> dict[str, tuple[str, np.ndarray]]:
        """Row coordinates (optionally only the rows at indices ``sub`` of the committed rows)."""
        out = {self.id_name: (self.row_dim, self.ids)}
        for c in self.coord_names:
            if self._has_coord(c):
                out[c] = (self.row_dim, self._coord_values(c))
        if sub is not None:
            out = {k: (d, v[sub]) for k, (d, v) in out.items()}
        return out

    def _lazy(self, name: str, sub: np.ndarray | None = None) -> Any:
        """Lazily indexed array of a dense variable over committed rows (or a subset of them).

        Indexing it only composes indexers; reading the result is one call of
        the backend's point reader with the selected rows (see
        :class:`~embstore.store.lazyrows.StoreBackendArray`). float16 storage is
        decoded to float32.
        """
        from .lazyrows import decoded_dtype, lazy_variable

        dims = self._schema.variables[name]
        if not self._backend.has_array(name):
            return np.zeros((0,) * (1 + len(dims)), dtype=decoded_dtype(self._schema.dtypes[name]))
        pos = self._positions()
        if sub is not None:
            pos = pos[sub]
        shape, dtype, _rows = self._backend.array_info(name)
        return lazy_variable(self._backend, name, pos, tuple(shape[1:]), dtype)

    @staticmethod
    def _attach(obj: Any, row_dim: str) -> Any:
        try:
            from ..selection import attach_row_index
        except ImportError:  # pragma: no cover - selection module absent
            return obj
        return attach_row_index(obj, row_dim)

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
        import xarray as xr

        self._sync_reader()
        if name not in self._schema.variables:
            hint = (
                " It is ragged: use get_ragged / get_ragged_padded."
                if name in self._schema.ragged
                else ""
            )
            raise UnknownVariableError(
                f"no dense variable {name!r} in {self.path!r}; variables: {sorted(self._schema.variables)}.{hint}"
            )
        da_ = xr.DataArray(
            self._lazy(name),
            dims=(self.row_dim,) + self._schema.variables[name],
            coords=self._xr_coords(),
            name=name,
        )
        return self._attach(da_, self.row_dim)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        schema = self.__dict__.get("_schema")
        if schema is not None and name in schema.variables:
            return self[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._schema.variables))

    def _dataset(self, sub: np.ndarray | None = None) -> Any:
        import xarray as xr

        ds = xr.Dataset(
            {
                n: ((self.row_dim,) + dims, self._lazy(n, sub))
                for n, dims in self._schema.variables.items()
            },
            coords=self._xr_coords(sub),
            attrs=self._view_attrs(),
        )
        return self._attach(ds, self.row_dim)

    def _view_attrs(self) -> dict[str, Any]:
        """Store attributes for an xarray view: nested values as JSON strings (netCDF-safe)."""
        from .xrio import ROW_DIM_KEY, encode_attrs

        return encode_attrs({**self.attrs, ROW_DIM_KEY: self.row_dim})

    @property
    def dataset(self) -> Any:
        """Lazy :class:`xarray.Dataset` of every dense variable (committed rows)."""
        self._sync_reader()
        return self._dataset()

    def sel(self, **labels: Any) -> Any:
        """Select rows by coordinate labels; returns a lazy :class:`xarray.Dataset`.

        ``sel(skin=1)``, ``sel(skin=[1, 2])`` and ``sel(skin=1, lighting="well_lit")``
        work on non-unique labels (AND across coordinates, OR within a list)
        and always keep the row dimension. The result reads only the selected
        rows when computed (not whole chunks); ``.values`` of one of its
        variables reads them without dask (see :meth:`__getitem__`), and
        :meth:`read` does the same returning NumPy.

        Raises
        ------
        SelectionError
            Unknown coordinate, or nothing matched (the message lists the
            values present).

        Examples
        --------
        >>> import numpy as np, tempfile, os
        >>> st = Store.create(os.path.join(tempfile.mkdtemp(), "r.zarr"), variables={"e": ("d",)})
        >>> st.append([1, 2, 3], {"e": np.zeros((3, 2))}, coords={"skin": [1, 2, 1]})
        >>> st.sel(skin=1).image_id.values.tolist()
        [1, 3]
        """
        self._sync_reader()
        dims = {d for v in self._schema.variables.values() for d in v}
        row_labels = {k: v for k, v in labels.items() if k not in dims}
        other = {k: v for k, v in labels.items() if k in dims}
        if not row_labels:
            ds = self._dataset()
            return ds.sel(**other) if other else ds
        columns = {k: v for k, (_d, v) in self._xr_coords().items()}
        try:
            from ..selection import row_positions
        except ImportError:  # pragma: no cover
            return self._mask_select(self._dataset(), labels)
        ds = self._dataset(row_positions(columns, row_labels))
        return ds.sel(**other) if other else ds

    def read(
        self, var: str, ids: Sequence[Any] | None = None, mask: Any = None, **labels: Any
    ) -> np.ndarray:
        """Eagerly read a dense variable into one NumPy array (no xarray, no dask).

        The fastest way to get values out: only the selected rows' bytes are
        read, straight into one preallocated array. Equivalent to
        ``st.sel(**labels)[var].values`` (or ``st[var].values``).

        Parameters
        ----------
        var : str
            Dense variable name.
        ids : sequence, optional
            Ids to read, in the order given (every committed row when None).
        mask : array of bool, optional
            One flag per committed row (commit order, as :attr:`ids`); rows
            where it is True are read. Combines with ``ids``/``labels`` by AND
            (``ids`` keeps its order).
        **labels
            Coordinate selection with :meth:`sel` semantics, e.g. ``skin=1``
            or ``skin=[1, 2], lighting="well_lit"``.

        Returns
        -------
        numpy.ndarray
            ``(rows, *trailing)`` in the storage dtype.

        Raises
        ------
        UnknownVariableError
            ``var`` is not a dense variable.
        SelectionError
            An id is not committed, or the labels match nothing.
        ValidationError
            ``mask`` is not one bool per committed row.

        Examples
        --------
        >>> import numpy as np, tempfile, os
        >>> st = Store.create(os.path.join(tempfile.mkdtemp(), "r.zarr"), variables={"e": ("d",)},
        ...                   dtypes={"e": "float32"})
        >>> st.append([1, 2, 3], {"e": np.arange(6.0).reshape(3, 2)}, coords={"skin": [1, 2, 1]})
        >>> st.read("e", skin=1).tolist()
        [[0.0, 1.0], [4.0, 5.0]]
        >>> st.read("e", ids=[3, 2])[:, 0].tolist()
        [4.0, 2.0]
        """
        self._sync_reader()
        if var not in self._schema.variables:
            raise UnknownVariableError(
                f"no dense variable {var!r} in {self.path!r}; variables: {sorted(self._schema.variables)}"
            )
        n = len(self)
        keep: np.ndarray | None = None
        if mask is not None:
            m = np.asarray(mask)
            if m.dtype != bool or m.shape != (n,):
                raise ValidationError(
                    f"mask must be {n} booleans (one per committed row), got dtype {m.dtype} shape {m.shape}; "
                    "build it from store.coords or store.ids"
                )
            keep = m
        if labels:
            from ..selection import row_mask

            columns = {k: v for k, (_d, v) in self._xr_coords().items()}
            lm = row_mask(columns, labels)
            keep = lm if keep is None else keep & lm
        all_pos = self._positions()
        if ids is not None:
            arr = np.asarray(list(ids))
            loc = self._id_index().get_indexer(arr) if len(arr) else np.zeros(0, dtype=np.int64)
            if (loc < 0).any():
                raise SelectionError(
                    f"ids {arr[loc < 0][:5].tolist()} are not committed in {self.path!r}; "
                    "see store.ids / store.missing"
                )
            if keep is not None:
                loc = loc[keep[loc]]
            pos = all_pos[loc]
        else:
            pos = all_pos if keep is None else all_pos[keep]
        dims = self._schema.variables[var]
        if not self._backend.has_array(var):
            return np.zeros((len(pos),) + (0,) * len(dims), dtype=self._schema.dtypes[var])
        shape, dtype, _ = self._backend.array_info(var)
        if len(pos) == 0:
            return np.zeros((0,) + tuple(shape[1:]), dtype=dtype)
        return self._backend.read_points(var, pos)

    def _mask_select(
        self, ds: Any, labels: Mapping[str, Any]
    ) -> Any:  # pragma: no cover - fallback
        mask = np.ones(ds.sizes[self.row_dim], dtype=bool)
        for k, v in labels.items():
            if k not in ds.coords:
                raise SelectionError(f"no coordinate {k!r}; coordinates: {sorted(ds.coords)}")
            vals = np.asarray(ds.coords[k])
            m = np.isin(vals, np.atleast_1d(v))
            if not m.any():
                raise SelectionError(
                    f"{k}={v!r} matches nothing; values present: {np.unique(vals)[:20].tolist()}"
                )
            mask &= m
        return ds.isel({self.row_dim: np.nonzero(mask)[0]})

    # --------------------------------------------------------------- ragged
    def _ragged_check(self, var: str) -> str:
        if var not in self._schema.ragged:
            raise UnknownVariableError(
                f"no ragged variable {var!r}; ragged variables: {sorted(self._schema.ragged)}"
            )
        return ragged_layout(self._schema.ragged[var])

    def _row_pos(self, ids: Sequence[Any]) -> np.ndarray:
        arr = np.asarray(list(ids))
        loc = self._id_index().get_indexer(arr) if len(arr) else np.zeros(0, dtype=np.int64)
        if (loc < 0).any():
            raise SelectionError(
                f"ids {arr[loc < 0][:5].tolist()} are not committed in {self.path!r}; see store.ids / store.missing"
            )
        return self._positions()[loc]

    def get_ragged(self, var: str, id: Any) -> np.ndarray:
        """One row of a ragged variable in its declared layout.

        Parameters
        ----------
        var : str
            Ragged variable name.
        id : int or str
            Row id.

        Returns
        -------
        numpy.ndarray
            ``[n_i, F...]`` for ``("token", ...)`` variables, ``[F, h_i, w_i]``
            for ``(F, "y", "x")`` variables.

        Examples
        --------
        >>> import numpy as np, tempfile, os
        >>> st = Store.create(os.path.join(tempfile.mkdtemp(), "r.zarr"),
        ...                   ragged={"fmap": ("channel", "y", "x")}, dtypes={"fmap": "float32"})
        >>> st.append([1], {"fmap": [np.ones((2, 3, 4))]})
        >>> st.get_ragged("fmap", 1).shape
        (2, 3, 4)
        """
        layout = self._ragged_check(var)
        self._sync_reader()
        p = int(self._row_pos([id])[0])
        off = int(self._backend.read(var + "_offset", slice(p, p + 1))[0])
        n = int(self._backend.read(var + "_n", slice(p, p + 1))[0])
        h = int(self._backend.read(var + "_h", slice(p, p + 1))[0])
        w = int(self._backend.read(var + "_w", slice(p, p + 1))[0])
        return from_tokens(self._backend.read(var, slice(off, off + n)), layout, h, w)

    def ragged_hw(self, var: str) -> pd.DataFrame:
        """Per-row grid size and token count of a ragged variable.

        Returns
        -------
        pandas.DataFrame
            Columns ``h``, ``w`` (``-1`` when unknown) and ``n``, indexed by id.
        """
        self._ragged_check(var)
        ids = self.ids
        return pd.DataFrame(
            {
                "h": self._read_rows(var + "_h"),
                "w": self._read_rows(var + "_w"),
                "n": self._read_rows(var + "_n"),
            },
            index=pd.Index(ids, name=self.id_name),
        )

    def iter_ragged(
        self, var: str, ids: Sequence[Any] | None = None
    ) -> Iterator[tuple[Any, np.ndarray]]:
        """Yield ``(id, row)`` for ragged rows (all committed rows by default)."""
        layout = self._ragged_check(var)
        self._sync_reader()
        ids = list(self.ids.tolist() if ids is None else ids)
        pos = self._row_pos(ids)
        offs = self._read_rows_at(var + "_offset", pos)
        ns = self._read_rows_at(var + "_n", pos)
        hs = self._read_rows_at(var + "_h", pos)
        ws = self._read_rows_at(var + "_w", pos)
        for i, id_ in enumerate(ids):
            t = self._backend.read(var, slice(int(offs[i]), int(offs[i] + ns[i])))
            yield id_, from_tokens(t, layout, int(hs[i]), int(ws[i]))

    def _read_rows_at(self, name: str, pos: np.ndarray) -> np.ndarray:
        order = np.argsort(pos, kind="stable")
        vals = self._backend.read(name, pos[order])
        out = np.empty_like(vals)
        out[order] = vals
        return out

    def get_ragged_padded(
        self, var: str, ids: Sequence[Any] | None = None, fill: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows of a ragged variable padded to a common size.

        Parameters
        ----------
        var : str
            Ragged variable name.
        ids : sequence, optional
            Rows (default: every committed row).
        fill : float
            Value of padded positions.

        Returns
        -------
        padded : numpy.ndarray
            ``[N, max_n, F...]`` or ``[N, F, max_h, max_w]``.
        mask : numpy.ndarray of bool
            True at real (not padded) positions.
        """
        layout = self._ragged_check(var)
        rows = [r for _i, r in self.iter_ragged(var, ids)]
        if not rows:
            raise SelectionError(f"no rows to pad for {var!r}; the store or the id list is empty")
        return pad_rows(rows, layout, fill)

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
        a = self._backend.read_attrs()
        a.pop("embstore", None)
        return a

    def update_attrs(self, **kv: Any) -> None:
        """Merge run information into the attributes (JSON-serialisable values).

        Examples
        --------
        >>> import tempfile, os
        >>> st = Store.create(os.path.join(tempfile.mkdtemp(), "r.zarr"), variables={"e": ("d",)})
        >>> st.update_attrs(model="detr_r50")
        >>> st.attrs["model"]
        'detr_r50'
        """
        self._check_writable()
        bad = {"embstore", "store_uuid", "format_version"} & set(kv)
        if bad:
            raise ValidationError(
                f"attributes {sorted(bad)} are managed by embstore; use other names"
            )
        check_attrs(kv)
        a = self._backend.read_attrs()
        a.update(kv)
        a["updated"] = _now()
        self._backend.write_attrs(a)
        self._backend.flush()
        self._consolidate()  # writing the attrs dropped it

    def _check_table_name(self, name: Any) -> str:
        return check_name("table/blob", name)

    def write_table(self, name: str, df: pd.DataFrame) -> None:
        """Store a DataFrame (replacing a table of the same name).

        Columns may hold numbers, bools, strings or datetimes; the index is kept.

        Examples
        --------
        >>> import pandas as pd, tempfile, os
        >>> st = Store.create(os.path.join(tempfile.mkdtemp(), "r.zarr"), variables={"e": ("d",)})
        >>> st.write_table("people", pd.DataFrame({"skin": [1, 5], "who": ["a", "b"]}))
        >>> st.read_table("people")["who"].tolist()
        ['a', 'b']
        """
        self._check_writable()
        self._check_table_name(name)
        check_table_frame(df)
        flat = df.reset_index()
        index_cols = [c for c in flat.columns if c not in df.columns]
        columns: dict[str, np.ndarray] = {}
        kinds: dict[str, str] = {}
        for c in flat.columns:
            s = flat[c]
            if pd.api.types.is_datetime64_any_dtype(s):
                columns[str(c)] = s.astype("datetime64[ns]").astype("int64").to_numpy()
                kinds[str(c)] = "datetime"
            elif s.dtype.kind in "biuf":
                columns[str(c)] = s.to_numpy()
                kinds[str(c)] = s.dtype.kind
            else:
                columns[str(c)] = s.astype(str).to_numpy().astype(str)
                kinds[str(c)] = "str"
        meta = {
            "columns": [str(c) for c in flat.columns],
            "index": [str(c) for c in index_cols],
            "kinds": kinds,
            "default_index": list(df.index.names) == [None] and isinstance(df.index, pd.RangeIndex),
        }
        transaction.write_table(self._backend, name, columns, meta)

    def read_table(self, name: str) -> pd.DataFrame:
        """Read a table written by :meth:`write_table`.

        Raises
        ------
        UnknownVariableError
            No table of that name (the message lists the tables).
        """
        self._check_open()
        got = transaction.read_table(self._backend, name)
        if got is None:
            raise UnknownVariableError(f"no table {name!r} in {self.path!r}; tables: {self.tables}")
        cols, meta = got
        data = {}
        for c in meta["columns"]:
            v = cols[c]
            if meta["kinds"].get(c) == "datetime":
                v = pd.to_datetime(v.astype("int64"))
            data[c] = v
        df = pd.DataFrame(data, columns=meta["columns"])
        if meta.get("default_index"):
            return df.drop(columns=meta["index"])
        return df.set_index(meta["index"]) if meta["index"] else df

    @property
    def tables(self) -> list[str]:
        """Names of stored tables."""
        self._check_open()
        return [t for t in transaction.list_tables(self._backend) if not t.startswith("_")]

    def write_blob(self, name: str, data: bytes) -> None:
        """Store bytes under a name (e.g. a serialised FAISS index)."""
        self._check_writable()
        self._check_table_name(name)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValidationError(f"write_blob needs bytes; got {type(data).__name__}")
        transaction.write_blob(self._backend, name, bytes(data))

    def read_blob(self, name: str) -> bytes | None:
        """Bytes stored by :meth:`write_blob`, or None.

        Raises
        ------
        DamagedStoreError
            The stored bytes fail their SHA-256 check (changed on disk).
        """
        self._check_open()
        return transaction.read_blob(self._backend, name)

    def record_skipped(self, ids: Sequence[Any], reasons: str | Sequence[str]) -> None:
        """Remember rows that could not be extracted (e.g. unreadable images).

        Parameters
        ----------
        ids : sequence
            Ids that were skipped.
        reasons : str or sequence of str
            One reason for all, or one per id.

        Notes
        -----
        Each writer region keeps its own table, replaced copy-on-write (see
        :mod:`embstore.store.catalog`); :attr:`skipped` joins them.
        """
        self._check_writable()
        ids = list(ids)
        if isinstance(reasons, str):
            reasons = [reasons] * len(ids)
        reasons = [str(r) for r in reasons]
        if len(reasons) != len(ids):
            raise ShapeMismatchError(
                f"record_skipped got {len(ids)} ids but {len(reasons)} reasons"
            )
        new = pd.DataFrame({"id": np.asarray(ids), "reason": reasons})
        # one table per writer region: region writers never rewrite each other's records
        own = "_skipped" if self._region == MAIN_REGION else f"_skipped.{self._region}"
        got = transaction.read_table(self._backend, own)
        old = (
            pd.DataFrame({"id": got[0]["id"], "reason": got[0]["reason"]})
            if got is not None
            else None
        )
        df = pd.concat([old, new], ignore_index=True) if old is not None and len(old) else new
        if df["id"].dtype == object:
            df["id"] = df["id"].astype(str)
        transaction.write_table(
            self._backend,
            own,
            {"id": df["id"].to_numpy(), "reason": df["reason"].to_numpy().astype(str)},
            {"columns": ["id", "reason"], "index": [], "kinds": {}, "default_index": True},
        )

    @property
    def skipped(self) -> pd.DataFrame:
        """Rows recorded by :meth:`record_skipped`: columns ``id`` and ``reason``."""
        self._check_open()
        parts = []
        for t in transaction.list_tables(self._backend):
            if t == "_skipped" or t.startswith("_skipped."):
                got = transaction.read_table(self._backend, t)
                if got is not None:
                    parts.append(pd.DataFrame({"id": got[0]["id"], "reason": got[0]["reason"]}))
        if not parts:
            return pd.DataFrame(
                {"id": pd.Series([], dtype=object), "reason": pd.Series([], dtype=object)}
            )
        df = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        if len(parts) > 1 and df["id"].dtype == object:
            df["id"] = df["id"].astype(str)
        return df

    # ----------------------------------------------------------------- repr
    def __repr__(self) -> str:
        if self._closed:
            return f"<embstore.Store {self.path!r} (closed)>"
        lines = [f"<embstore.Store {self.path!r} ({self._backend.kind}, mode={self.mode!r})>"]
        n = sum(b - a for a, b in self._ranges())
        lines.append(f"  rows: {n} along {self.row_dim!r}, id {self.id_name!r}")
        for name, dims in self._schema.variables.items():
            t = self._trailing.get(name) if hasattr(self, "_trailing") else None
            lines.append(f"  {name}: {dims} {self._schema.dtypes[name]}" + (f" {t}" if t else ""))
        for name, dims in self._schema.ragged.items():
            lines.append(f"  {name} (ragged): {dims} {self._schema.dtypes[name]}")
        return "\n".join(lines)
