"""Zarr v3 backend (default): one Zarr group, a directory or an fsspec URL.

Layout (``run.zarr/``)::

    zarr.json                  group; attrs: schema ("embstore") + provenance
    <variable>/                dense arrays (row_dim, ...), dimension_names set
    <id_name>/, <coord>/       1-D coordinate arrays along row_dim
    <ragged>/                  flat token rows (<ragged>_token, F...)
    <ragged>_offset/_n/_h/_w   per-row offset, token count and grid size
    _embstore/commits/<region>/<seq>.json   immutable commit records
    _embstore/locks/<region>.lock           append locks (local stores)
    _tables/<name>/<column>    tables;  _blobs/<name>  uint8 blobs

Data variables carry a ``coordinates`` attribute naming the id and metadata
coordinates, so ``xarray.open_zarr(path)`` shows dims and coordinates without
embstore (rows beyond the last commit of a killed writer may hold fill values
there; :class:`embstore.Store` hides them).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ...errors import NotAStoreError, StoreExistsError, StoreLockedError, StoreNotFoundError
from ..lock import FileLock
from .base import Backend, fill_value_for

__all__ = ["ZarrBackend"]


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _local_path(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path


def _as_numpy(out: Any) -> np.ndarray:
    """numpy array with strings as fixed-width unicode (``<U``)."""
    out = np.asarray(out)
    if out.dtype.kind in "OT":
        out = np.array(out.astype(object).tolist() if out.ndim else str(out), dtype=str)
        if out.size == 0:
            out = out.astype("<U1")
    return out


class _FsLock:
    """Best-effort lock on object storage (no exclusive create available)."""

    def __init__(self, fs: Any, path: str, what: str) -> None:
        self.fs, self.path, self.what, self.held = fs, path, what, False

    def acquire(self, force: bool = False) -> None:
        if self.fs.exists(self.path) and not force:
            raise StoreLockedError(
                f"{self.what} is already open for appending (lock object {self.path}); close that "
                "writer, open with mode='r', or pass force=True if it is gone"
            )
        self.fs.pipe_file(self.path, json.dumps({"pid": os.getpid()}).encode())
        self.held = True

    def release(self) -> None:
        if self.held:
            self.fs.rm_file(self.path)
            self.held = False


class ZarrBackend(Backend):
    """Zarr v3 group backend (see module docstring for the layout)."""

    kind = "zarr"
    supports_regions = True

    def __init__(self, path: str, group: Any, storage_options: dict[str, Any] | None) -> None:
        self.path = path
        self.group = group
        self.storage_options = storage_options or {}
        self._arrays: dict[str, Any] = {}
        if _is_local(path):
            self.fs = None
            self.root = _local_path(path).rstrip("/")
        else:
            import fsspec

            self.fs, self.root = fsspec.core.url_to_fs(path, **self.storage_options)
            self.root = self.root.rstrip("/")

    # -- lifecycle ---------------------------------------------------------
    @classmethod
    def _fs(cls, path: str, storage_options: dict[str, Any] | None) -> tuple[Any, str]:
        import fsspec

        return fsspec.core.url_to_fs(path, **(storage_options or {}))

    @classmethod
    def exists(cls, path: str, storage_options: dict[str, Any] | None) -> bool:
        if _is_local(path):
            return os.path.exists(_local_path(path))
        fs, root = cls._fs(path, storage_options)
        return bool(fs.exists(root))

    @classmethod
    def _open_group(cls, path: str, mode: str, storage_options: dict[str, Any] | None, **kw: Any) -> Any:
        import zarr

        if _is_local(path):
            return zarr.open_group(_local_path(path), mode=mode, zarr_format=3, **kw)
        return zarr.open_group(path, mode=mode, zarr_format=3, storage_options=storage_options or {}, **kw)

    @classmethod
    def create(cls, path: str, overwrite: bool, storage_options: dict[str, Any] | None, attrs: dict[str, Any]) -> ZarrBackend:
        if cls.exists(path, storage_options):
            if not overwrite:
                raise StoreExistsError(
                    f"{path!r} already exists; pass overwrite=True to replace it, or use "
                    "Store.open(path, mode='a') to add rows"
                )
            if _is_local(path):
                import shutil

                p = _local_path(path)
                if os.path.isdir(p):
                    shutil.rmtree(p)
                else:
                    os.remove(p)
            else:
                fs, root = cls._fs(path, storage_options)
                fs.rm(root, recursive=True)
        group = cls._open_group(path, "w", storage_options, attributes=attrs)
        group.create_group("_embstore")
        return cls(path, group, storage_options)

    @classmethod
    def open(cls, path: str, mode: str, storage_options: dict[str, Any] | None) -> ZarrBackend:
        if not cls.exists(path, storage_options):
            raise StoreNotFoundError(f"no store at {path!r}; check the path or create one with Store.create")
        try:
            group = cls._open_group(path, "r" if mode == "r" else "r+", storage_options)
        except Exception as exc:  # zarr raises several types for "not a group"
            raise NotAStoreError(
                f"{path!r} exists but is not a Zarr v3 embstore store ({type(exc).__name__}: {exc}); "
                "pass the path of a store made by Store.create"
            ) from exc
        return cls(path, group, storage_options)

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
        import zarr

        npdt = np.dtype(dtype) if dtype != "str" else None
        zdtype: Any = str if npdt is None or npdt.kind in "UOT" else npdt
        fill = fill_value_for(npdt if npdt is not None else "<U1")
        rest = tuple(shape[1:])
        if inner_chunk_rows and inner_chunk_rows < chunk_rows and len(shape) > 1:
            chunks: tuple[int, ...] = (inner_chunk_rows,) + rest
            shards: tuple[int, ...] | None = (chunk_rows,) + rest
        else:
            chunks, shards = (chunk_rows,) + rest, None
        compressors: Any = None
        if compressor == "zstd":
            compressors = zarr.codecs.ZstdCodec(level=3)
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
                **kw,
            )
        except Exception as exc:  # created concurrently by another region writer
            if "exist" not in str(exc).lower() and "contains" not in type(exc).__name__.lower():
                raise
            arr = self.group[name]
        self._arrays[name] = arr

    def set_array_attrs(self, name: str, attrs: dict[str, Any]) -> None:
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
        return _as_numpy(out)

    def dask(self, name: str, token: str) -> Any:
        import dask.array as da

        arr = self._arr(name)
        _shape, _dt, rows = self.array_info(name)
        return da.from_array(
            arr,
            chunks=(rows,) + tuple(arr.shape[1:]),
            lock=False,
            name=f"embstore-{name}-{token}",
            inline_array=True,
        )

    # -- commit records ----------------------------------------------------
    def _rec_dir(self, region: str) -> str:
        return f"{self.root}/_embstore/commits/{region}"

    def list_regions(self) -> list[str]:
        base = f"{self.root}/_embstore/commits"
        if self.fs is None:
            return sorted(os.listdir(base)) if os.path.isdir(base) else []
        if not self.fs.exists(base):
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(base, detail=False))

    def list_records(self, region: str) -> list[int]:
        d = self._rec_dir(region)
        if self.fs is None:
            names = os.listdir(d) if os.path.isdir(d) else []
        else:
            names = [p.rsplit("/", 1)[-1] for p in self.fs.ls(d, detail=False)] if self.fs.exists(d) else []
        return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())

    def read_record(self, region: str, seq: int) -> bytes | None:
        p = f"{self._rec_dir(region)}/{seq:012d}.json"
        try:
            if self.fs is None:
                with open(p, "rb") as fh:
                    return fh.read()
            return bytes(self.fs.cat_file(p))
        except (FileNotFoundError, OSError):
            return None

    def write_record(self, region: str, seq: int, payload: bytes) -> None:
        p = f"{self._rec_dir(region)}/{seq:012d}.json"
        if self.fs is None:
            os.makedirs(self._rec_dir(region), exist_ok=True)
            with open(p, "xb") as fh:  # never overwrite an existing record
                fh.write(payload)
        else:
            self.fs.pipe_file(p, payload)

    def delete_record(self, region: str, seq: int) -> None:
        p = f"{self._rec_dir(region)}/{seq:012d}.json"
        try:
            if self.fs is None:
                os.remove(p)
            else:
                self.fs.rm_file(p)
        except (FileNotFoundError, OSError):
            pass

    # -- tables and blobs --------------------------------------------------
    def write_table(self, name: str, columns: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        tables = self.group.require_group("_tables")
        if name in tables:
            del tables[name]
        g = tables.create_group(name, attributes={"embstore_table": meta})
        for i, (col, values) in enumerate(columns.items()):
            values = np.asarray(values)
            kw: dict[str, Any] = {}
            if values.dtype.kind in "UO":
                dtype: Any = str
            else:
                dtype = values.dtype
                kw["compressors"] = None
            a = g.create_array(
                f"c{i}", shape=values.shape, dtype=dtype, chunks=(max(1, min(len(values), 1 << 16)),),
                dimension_names=[f"{name}_row"], attributes={"column": col}, **kw,
            )
            if len(values):
                a[:] = values

    def read_table(self, name: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        try:
            g = self.group["_tables"][name]
        except KeyError:
            return None
        meta = dict(g.attrs["embstore_table"])
        cols: dict[str, np.ndarray] = {}
        for i in range(len(meta["columns"])):
            a = g[f"c{i}"]
            v = _as_numpy(a[:])
            cols[a.attrs["column"]] = v
        return cols, meta

    def list_tables(self) -> list[str]:
        try:
            return sorted(self.group["_tables"].group_keys())
        except KeyError:
            return []

    def write_blob(self, name: str, data: bytes) -> None:
        blobs = self.group.require_group("_blobs")
        if name in blobs:
            del blobs[name]
        arr = np.frombuffer(bytes(data), dtype=np.uint8)
        a = blobs.create_array(name, shape=arr.shape, dtype="uint8", chunks=(max(1, min(len(arr), 1 << 24)),),
                               compressors=None, dimension_names=[f"{name}_byte"])
        if len(arr):
            a[:] = arr

    def read_blob(self, name: str) -> bytes | None:
        try:
            a = self.group["_blobs"][name]
        except KeyError:
            return None
        return np.asarray(a[:], dtype=np.uint8).tobytes()

    # -- locking -----------------------------------------------------------
    def make_lock(self, region: str) -> Any:
        what = f"store {self.path!r} (region {region})"
        p = f"{self.root}/_embstore/locks/{region}.lock"
        if self.fs is None:
            return FileLock(p, what)
        return _FsLock(self.fs, p, what)
