"""Zarr v3 group mechanics shared by the local and fsspec backends (:class:`ZarrBackend`).

Layout (``run.zarr/``)::

    zarr.json                  group; attrs: schema ("embstore") + provenance
    <variable>/                dense arrays (row_dim, ...), dimension_names set
    <id_name>/, <coord>/       1-D coordinate arrays along row_dim
    <ragged>/                  flat token rows (<ragged>_token, F...)
    <ragged>_offset/_n/_h/_w   per-row offset, token count and grid size
    _embstore/commits/<region>/<seq>.json   immutable commit records
    _embstore/locks/<region>.lock           append locks (region claims)
    _embstore/stage/<coord>@<pid>-<tok>     staged coordinate versions
    _tables/<name>/c<i>        tables;  _blobs/<name>  uint8 blobs
                               (encoded by :mod:`embstore.store.tablecodec`)

Data variables carry a ``coordinates`` attribute naming the id and metadata
coordinates, so ``xarray.open_zarr(path)`` shows dims and coordinates without
embstore (rows beyond the last commit of a killed writer may hold fill values
there; :class:`embstore.Store` hides them).

:class:`ZarrBackend` holds what goes through the zarr API and is the same
wherever the group lives: arrays, tables, blobs, staged arrays. How records,
locks, deletions and fast paths reach storage differs, and lives in
:class:`~embstore.store.backends.zarr_local.LocalZarrBackend` (a directory)
and :class:`~embstore.store.backends.zarr_fsspec.FsspecZarrBackend`
(``memory://``, ``s3://`` ... URLs). ``ZarrBackend.open``/``create``/
``exists`` pick the right one from the path.
"""

from __future__ import annotations

import abc
from typing import Any, Literal

import numpy as np

from ...errors import StoreExistsError
from .. import tablecodec
from .base import Backend, fill_value_for

__all__ = ["ZarrBackend", "as_numpy", "is_local", "zarr_class"]

#: Modes of ``zarr.open_group``.
ZarrMode = Literal["r", "r+", "a", "w", "w-"]


def is_local(path: str) -> bool:
    """Whether ``path`` is a local directory (no URL protocol, or ``file://``)."""
    return "://" not in path or path.startswith("file://")


def local_path(path: str) -> str:
    """``path`` without a ``file://`` prefix."""
    return path[len("file://") :] if path.startswith("file://") else path


def zarr_class(path: str) -> type[ZarrBackend]:
    """The Zarr backend class for ``path``: local directory or fsspec URL.

    Examples
    --------
    >>> zarr_class("run.zarr").__name__, zarr_class("memory://run.zarr").__name__
    ('LocalZarrBackend', 'FsspecZarrBackend')
    """
    if is_local(path):
        from .zarr_local import LocalZarrBackend

        return LocalZarrBackend
    from .zarr_fsspec import FsspecZarrBackend

    return FsspecZarrBackend


def as_numpy(out: Any) -> np.ndarray:
    """numpy array with strings as fixed-width unicode (``<U``)."""
    out = np.asarray(out)
    if out.dtype.kind in "OT":
        out = np.array(out.astype(object).tolist() if out.ndim else str(out), dtype=str)
        if out.size == 0:
            out = out.astype("<U1")
    return out


class ZarrBackend(Backend):
    """Zarr v3 group backend: the storage-independent part (see the module docstring).

    Subclasses say where the group lives: :meth:`_store_path`,
    :meth:`_remove_tree`, the commit-record and lock methods.
    """

    kind = "zarr"
    supports_regions = True
    atomic_records = True
    staged_arrays = True
    exclusive_create = True
    #: new numeric arrays get zarr's ``crc32c`` codec (not sharded ones: their index has one)
    chunk_checksums = True
    #: ``None`` for local stores; the fsspec filesystem otherwise.
    fs: Any = None
    #: Path of the group root (local path, or the URL's path on ``fs``).
    root: str = ""

    def __init__(
        self, path: str, group: Any, storage_options: dict[str, Any] | None, mode: str = "a"
    ) -> None:
        self.path = path
        self._group = group
        self._mode = mode
        self.storage_options = storage_options or {}
        self._arrays: dict[str, Any] = {}
        self.strict_arrays: frozenset[str] = frozenset()

    # -- lifecycle ---------------------------------------------------------
    @classmethod
    def exists(cls, path: str, storage_options: dict[str, Any] | None) -> bool:
        if cls is ZarrBackend:
            return zarr_class(path).exists(path, storage_options)
        raise NotImplementedError  # pragma: no cover - every subclass overrides

    @classmethod
    def open(cls, path: str, mode: str, storage_options: dict[str, Any] | None) -> ZarrBackend:
        if cls is ZarrBackend:
            return zarr_class(path).open(path, mode, storage_options)
        raise NotImplementedError  # pragma: no cover - every subclass overrides

    @classmethod
    def _store_path(cls, path: str) -> str:
        """What ``zarr.open_group`` gets for ``path``."""
        return path

    @classmethod
    def _open_group(
        cls, path: str, mode: ZarrMode, storage_options: dict[str, Any] | None, **kw: Any
    ) -> Any:
        import zarr

        if (
            mode != "w"
        ):  # consolidated metadata is for plain readers (consolidate.py), never for embstore
            kw.setdefault("use_consolidated", False)
        if not is_local(path):
            kw["storage_options"] = storage_options or {}
        return zarr.open_group(cls._store_path(path), mode=mode, zarr_format=3, **kw)

    @classmethod
    def _remove_existing(cls, path: str, storage_options: dict[str, Any] | None) -> None:
        """Delete whatever is at ``path`` (``create(overwrite=True)``)."""
        raise NotImplementedError  # pragma: no cover - every subclass overrides

    @classmethod
    def create(
        cls,
        path: str,
        overwrite: bool,
        storage_options: dict[str, Any] | None,
        attrs: dict[str, Any],
    ) -> ZarrBackend:
        if cls is ZarrBackend:
            return zarr_class(path).create(path, overwrite, storage_options, attrs)
        if cls.exists(path, storage_options):
            if not overwrite:
                raise StoreExistsError(
                    f"{path!r} already exists; pass overwrite=True to replace it, or use "
                    "Store.open(path, mode='a') to add rows"
                )
            cls._remove_existing(path, storage_options)
        group = cls._open_group(path, "w", storage_options, attributes=attrs)
        group.create_group("_embstore")
        return cls(path, group, storage_options)

    def invalidate(self) -> None:
        self._arrays.clear()

    def _forget(self, name: str) -> None:
        """Drop cached state of array ``name`` (resized, rewritten or deleted)."""
        self._arrays.pop(name, None)

    @property
    def group(self) -> Any:
        """The zarr group (opened on first use)."""
        if self._group is None:
            self._group = self._open_group(
                self.path, "r" if self._mode == "r" else "r+", self.storage_options
            )
        return self._group

    # -- attributes --------------------------------------------------------
    def read_attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs.asdict())

    def write_attrs(self, attrs: dict[str, Any]) -> None:
        self.group.attrs.put(attrs)

    # -- arrays ------------------------------------------------------------
    def _arr(self, name: str) -> Any:
        arr = self._arrays.get(name)
        if arr is None:
            arr = self.group[name]
            self._arrays[name] = arr
        return arr

    def reset_cache(self) -> None:
        """Forget opened arrays, so their metadata (shape) is re-read."""
        self._arrays.clear()

    def has_array(self, name: str) -> bool:
        if name in self._arrays:
            return True
        try:
            self._arr(name)
        except KeyError:
            return False
        return True

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
        from zarr.codecs import Crc32cCodec, ZstdCodec

        npdt = np.dtype(dtype) if dtype != "str" else None
        zdtype: Any = str if npdt is None or npdt.kind in "UOT" else npdt
        fill = fill_value_for(npdt if npdt is not None else "<U1")
        rest = tuple(shape[1:])
        shards: tuple[int, ...] | None
        if inner_chunk_rows and inner_chunk_rows < chunk_rows and len(shape) > 1:
            chunks: tuple[int, ...] = (inner_chunk_rows,) + rest
            shards = (chunk_rows,) + rest
        else:
            chunks, shards = (chunk_rows,) + rest, None
        compressors: Any = None
        if compressor == "zstd":
            compressors = ZstdCodec(level=3)
        if (
            self.chunk_checksums and shards is None
        ):  # crc32c of every chunk (verified by zarr and rawread)
            compressors = (
                [compressors, Crc32cCodec()] if compressors is not None else [Crc32cCodec()]
            )
        kw: dict[str, Any] = {}
        if zdtype is not str:
            kw["compressors"] = compressors
        try:
            arr = self.group.create_array(
                name,
                shape=shape,
                chunks=chunks,
                shards=shards,
                dtype=zdtype,
                fill_value=fill,
                dimension_names=list(dims),
                attributes=attrs or {},
                config={"write_empty_chunks": True},
                # flat chunk files (c.0.0.0): no directory per chunk (see rawread)
                chunk_key_encoding={"name": "default", "separator": "."},
                **kw,
            )
        except Exception as exc:  # created concurrently by another region writer
            if "exist" not in str(exc).lower() and "contains" not in type(exc).__name__.lower():
                raise
            arr = self.group[name]
        self._arrays[name] = arr

    def set_array_attrs(self, name: str, attrs: dict[str, Any]) -> None:
        """Merge ``attrs`` into the attributes of array ``name``."""
        self._arr(name).attrs.update(attrs)

    def array_info(self, name: str) -> tuple[tuple[int, ...], np.dtype, int]:
        arr = self._arr(name)
        rows = arr.shards[0] if getattr(arr, "shards", None) else arr.chunks[0]
        dt = arr.dtype
        if not isinstance(dt, np.dtype) or dt.kind in "OT":
            dt = np.dtype("<U1")
        return tuple(arr.shape), dt, int(rows)

    def resize(self, name: str, n: int) -> None:
        arr = self._arr(name)
        if arr.shape[0] != n:
            arr.resize((n,) + tuple(arr.shape[1:]))
            self._forget(name)
            self._arrays[name] = arr

    def write(self, name: str, start: int, values: np.ndarray) -> None:
        arr = self._arr(name)
        arr[start : start + len(values)] = values

    def read(self, name: str, sel: slice | np.ndarray = slice(None)) -> np.ndarray:
        arr = self._arr(name)
        if isinstance(sel, slice):
            out = arr[sel]
        else:
            sel = np.asarray(sel, dtype=np.int64)
            if len(sel) == 0:
                out = arr[0:0]
            elif len(sel) > 1 and np.all(np.diff(sel) == 1):
                out = arr[int(sel[0]) : int(sel[-1]) + 1]
            else:
                out = arr.oindex[sel] if arr.ndim > 1 else arr.get_orthogonal_selection(sel)
        return as_numpy(out)

    # -- commit records ----------------------------------------------------
    def _rec_dir(self, region: str) -> str:
        return f"{self.root}/_embstore/commits/{region}"

    def _rec_path(self, region: str, seq: int) -> str:
        return f"{self._rec_dir(region)}/{seq:012d}.json"

    @abc.abstractmethod
    def _list_dir(self, path: str) -> list[str]:
        """Names in directory ``path`` under the store (empty when absent)."""

    def list_regions(self) -> list[str]:
        return sorted(self._list_dir(f"{self.root}/_embstore/commits"))

    def list_records(self, region: str) -> list[int]:
        names = self._list_dir(self._rec_dir(region))
        return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())

    # -- tables and blobs (one codec for every backend: tablecodec) ----------
    def write_table(self, name: str, columns: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        tables = self.group.require_group(tablecodec.TABLES)
        if name in tables:
            del tables[name]
        g = tables.create_group(name, attributes={tablecodec.TABLE_ATTR: meta})
        for i, (col, values) in enumerate(columns.items()):
            arr, extra = tablecodec.storable_column(values)
            kw: dict[str, Any] = {}
            if arr.dtype.kind == "U":
                dtype: Any = str
            else:
                dtype = arr.dtype
                kw["compressors"] = None
            a = g.create_array(
                tablecodec.column_key(i),
                shape=arr.shape,
                dtype=dtype,
                chunks=(max(1, min(len(arr), 1 << 16)),),
                dimension_names=[f"{name}_row"],
                attributes={"column": col, **extra},
                **kw,
            )
            if len(arr):
                a[:] = arr

    def read_table(self, name: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        try:
            g = self.group[tablecodec.TABLES][name]
        except KeyError:
            return None
        meta = dict(g.attrs[tablecodec.TABLE_ATTR])
        cols: dict[str, np.ndarray] = {}
        for i in range(len(meta["columns"])):
            a = g[tablecodec.column_key(i)]
            attrs = dict(a.attrs)
            cols[attrs["column"]] = tablecodec.column_from_storage(a[:], attrs)
        return cols, meta

    def list_tables(self) -> list[str]:
        try:
            return sorted(self.group[tablecodec.TABLES].group_keys())
        except KeyError:
            return []

    def write_blob(self, name: str, data: bytes) -> None:
        blobs = self.group.require_group(tablecodec.BLOBS)
        if name in blobs:
            del blobs[name]
        arr = tablecodec.blob_array(data)
        a = blobs.create_array(
            name,
            shape=arr.shape,
            dtype="uint8",
            chunks=(max(1, min(len(arr), 1 << 24)),),
            compressors=None,
            dimension_names=[f"{name}_byte"],
        )
        if len(arr):
            a[:] = arr

    def read_blob(self, name: str) -> bytes | None:
        try:
            a = self.group[tablecodec.BLOBS][name]
        except KeyError:
            return None
        return tablecodec.blob_bytes(a[:])

    def list_blobs(self) -> list[str]:
        try:
            return sorted(self.group[tablecodec.BLOBS].array_keys())
        except KeyError:
            return []

    @abc.abstractmethod
    def _remove_tree(self, key: str) -> None:
        """Delete node ``key`` (a table, blob or staged array) with everything under it."""

    def _delete_node(self, key: str) -> None:
        self._remove_tree(key)
        self._forget(key)

    def delete_table(self, name: str) -> bool:
        self._delete_node(f"{tablecodec.TABLES}/{name}")
        return True

    def delete_blob(self, name: str) -> bool:
        self._delete_node(f"{tablecodec.BLOBS}/{name}")
        return True

    def delete_array(self, name: str) -> None:
        self._delete_node(name)

    def list_staged(self) -> list[str]:
        try:
            return sorted(
                f"_embstore/stage/{k}" for k in self.group["_embstore/stage"].array_keys()
            )
        except KeyError:
            return []

    # -- locking -----------------------------------------------------------
    def list_locks(self) -> list[str]:
        """Regions whose append lock (claim) exists."""
        names = self._list_dir(f"{self.root}/_embstore/locks")
        return sorted(n[: -len(".lock")] for n in names if n.endswith(".lock"))

    def _lock_path(self, region: str) -> str:
        return f"{self.root}/_embstore/locks/{region}.lock"
