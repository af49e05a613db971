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
import re
import shutil
from typing import Any

import numpy as np

from ...errors import NotAStoreError, StoreExistsError, StoreNotFoundError
from .. import atomic, faults
from ..fsspec_utils import ObjectLock, fresh_exists, list_names, put_new
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


class ZarrBackend(Backend):
    """Zarr v3 group backend (see module docstring for the layout)."""

    kind = "zarr"
    supports_regions = True
    atomic_records = True
    staged_arrays = True
    #: new numeric arrays get zarr's ``crc32c`` codec (not sharded ones: their index has one)
    chunk_checksums = True

    def __init__(
        self, path: str, group: Any, storage_options: dict[str, Any] | None, mode: str = "a"
    ) -> None:
        self.path = path
        self._group = group
        self._mode = mode
        self._meta_cache: dict[str, dict[str, Any] | None] = {}
        self.storage_options = storage_options or {}
        self._arrays: dict[str, Any] = {}
        self._raw_cache: dict[str, Any] = {}
        self.strict_arrays: frozenset[str] = frozenset()
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
        return fresh_exists(fs, root)

    @classmethod
    def _open_group(
        cls, path: str, mode: str, storage_options: dict[str, Any] | None, **kw: Any
    ) -> Any:
        import zarr

        if (
            mode != "w"
        ):  # consolidated metadata is for plain readers (consolidate.py), never for embstore
            kw.setdefault("use_consolidated", False)
        if _is_local(path):
            return zarr.open_group(_local_path(path), mode=mode, zarr_format=3, **kw)
        return zarr.open_group(
            path, mode=mode, zarr_format=3, storage_options=storage_options or {}, **kw
        )

    @classmethod
    def create(
        cls,
        path: str,
        overwrite: bool,
        storage_options: dict[str, Any] | None,
        attrs: dict[str, Any],
    ) -> ZarrBackend:
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

    def invalidate(self) -> None:
        self._meta_cache.clear()
        self._raw_cache.clear()
        self._arrays.clear()

    @property
    def group(self) -> Any:
        """The zarr group (opened on first use)."""
        if self._group is None:
            self._group = self._open_group(
                self.path, "r" if self._mode == "r" else "r+", self.storage_options
            )
        return self._group

    def _json(self, name: str | None) -> dict[str, Any] | None:
        """Parsed ``zarr.json`` of a node of a local store (None if absent)."""
        p = (
            os.path.join(self.root, name, "zarr.json")
            if name
            else os.path.join(self.root, "zarr.json")
        )
        try:
            with open(p) as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return None

    def _meta(self, name: str) -> dict[str, Any] | None:
        if name not in self._meta_cache or self._meta_cache[name] is None:
            m = self._json(name)
            self._meta_cache[name] = m if m is not None and m.get("node_type") == "array" else None
        return self._meta_cache[name]

    @classmethod
    def open(cls, path: str, mode: str, storage_options: dict[str, Any] | None) -> ZarrBackend:
        if not cls.exists(path, storage_options):
            raise StoreNotFoundError(
                f"no store at {path!r}; check the path or create one with Store.create"
            )
        if _is_local(path):
            root = _local_path(path)
            try:
                with open(os.path.join(root, "zarr.json")) as fh:
                    meta = json.load(fh)
                ok = meta.get("zarr_format") == 3 and meta.get("node_type") == "group"
            except (OSError, ValueError):
                ok = False
            if not ok:
                raise NotAStoreError(
                    f"{path!r} exists but is not a Zarr v3 group (no valid zarr.json); "
                    "pass the path of a store made by Store.create"
                )
            return cls(path, None, storage_options, mode)
        try:
            group = cls._open_group(path, "r" if mode == "r" else "r+", storage_options)
        except Exception as exc:  # zarr raises several types for "not a group"
            raise NotAStoreError(
                f"{path!r} exists but is not a Zarr v3 embstore store ({type(exc).__name__}: {exc}); "
                "pass the path of a store made by Store.create"
            ) from exc
        return cls(path, group, storage_options, mode)

    # -- attributes --------------------------------------------------------
    def read_attrs(self) -> dict[str, Any]:
        if self.fs is None:
            meta = self._json(None)
            if meta is not None:
                return dict(meta.get("attributes", {}))
        return dict(self.group.attrs.asdict())

    def write_attrs(self, attrs: dict[str, Any]) -> None:
        if self.fs is None and self._write_node_json(None, {"attributes": attrs}):
            self._group = None  # its cached attributes are stale
            return
        self.group.attrs.put(attrs)

    def _write_node_json(
        self, name: str | None, update: dict[str, Any], merge_attrs: bool = False
    ) -> bool:
        """Rewrite a local node's ``zarr.json`` atomically (temp file + rename).

        zarr rewrites metadata in place, so a kill in the middle would leave a
        torn ``zarr.json`` and an unopenable store or array. Returns False
        when the file cannot be read (then zarr's own writer is used).
        """
        p = (
            os.path.join(self.root, name, "zarr.json")
            if name
            else os.path.join(self.root, "zarr.json")
        )
        try:
            with open(p) as fh:
                meta = json.load(fh)
        except (OSError, ValueError):
            return False
        for k, v in update.items():
            if merge_attrs and k == "attributes":
                meta.setdefault("attributes", {}).update(v)
            else:
                meta[k] = v
        atomic.write_replace(p, json.dumps(meta, indent=2).encode())
        if name:
            self._arrays.pop(name, None)
            self._meta_cache.pop(name, None)
        return True

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
        if self.fs is None:
            return self._meta(name) is not None
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
        if (
            self.chunk_checksums and shards is None
        ):  # crc32c of every chunk (verified by zarr and rawread)
            compressors = (
                [compressors, zarr.codecs.Crc32cCodec()]
                if compressors is not None
                else [zarr.codecs.Crc32cCodec()]
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
        if self.fs is None and self._write_node_json(name, {"attributes": attrs}, merge_attrs=True):
            return
        self._arr(name).attrs.update(attrs)

    def array_info(self, name: str) -> tuple[tuple[int, ...], np.dtype, int]:
        meta = self._meta(name) if self.fs is None and name not in self._arrays else None
        if meta is not None:
            try:
                conf = meta["chunk_grid"]["configuration"]["chunk_shape"]
                dt = (
                    np.dtype(meta["data_type"])
                    if meta["data_type"] not in ("string", "variable_length_utf8")
                    else np.dtype("<U1")
                )
                return tuple(meta["shape"]), dt, int(conf[0])
            except (KeyError, TypeError):
                pass
        arr = self._arr(name)
        rows = arr.shards[0] if getattr(arr, "shards", None) else arr.chunks[0]
        dt = arr.dtype
        if not isinstance(dt, np.dtype) or dt.kind in "OT":
            dt = np.dtype("<U1")
        return tuple(arr.shape), dt, int(rows)

    def _resize_local(self, name: str, n: int) -> bool:
        """Resize a local array by rewriting its ``zarr.json`` (True when done).

        zarr's ``Array.resize`` does the same through its event loop, which
        costs ~5-7 ms a call here (an import or extraction resizes every
        array a few times). The file is replaced atomically (temp + rename),
        and chunks wholly outside a smaller shape are deleted, as zarr does.
        """
        if self.fs is not None:
            return False
        p = os.path.join(self.root, name, "zarr.json")
        try:
            with open(p) as fh:
                meta = json.load(fh)
            shape = [int(s) for s in meta["shape"]]
            grid = meta["chunk_grid"]
            cr = int(grid["configuration"]["chunk_shape"][0])
            cke = meta["chunk_key_encoding"]
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return False
        if (
            meta.get("node_type") != "array"
            or not shape
            or grid.get("name") != "regular"
            or cke.get("name") != "default"
            or (cke.get("configuration") or {}).get("separator", "/") not in ("/", ".")
        ):
            return False
        old = shape[0]
        if old == n:
            return True
        meta["shape"] = [int(n)] + shape[1:]
        atomic.write_replace(p, json.dumps(meta, indent=2).encode())
        if n < old:  # drop chunks wholly beyond the new shape
            flat = (cke.get("configuration") or {}).get("separator", "/") == "."
            cdir = os.path.join(self.root, name) if flat else os.path.join(self.root, name, "c")
            first_gone = -(-int(n) // cr)
            try:
                entries = os.listdir(cdir)
            except OSError:
                entries = []
            for e in entries:
                if flat:  # "c.<i>.0.0" -> "<i>"; temp files and zarr.json are left alone
                    parts = e.split(".")
                    if parts[0] != "c" or len(parts) < 2 or not all(p.isdigit() for p in parts[1:]):
                        continue
                    e_idx = parts[1]
                else:
                    e_idx = e
                if e_idx.isdigit() and int(e_idx) >= first_gone:
                    q = os.path.join(cdir, e)
                    if os.path.isdir(q):
                        shutil.rmtree(q, ignore_errors=True)
                    else:
                        try:
                            atomic.remove(q)
                        except OSError:
                            pass
        self._arrays.pop(name, None)
        self._raw_cache.pop(name, None)
        self._meta_cache.pop(name, None)
        return True

    def resize(self, name: str, n: int) -> None:
        if self._resize_local(name, n):
            return
        arr = self._arr(name)
        if arr.shape[0] != n:
            arr.resize((n,) + tuple(arr.shape[1:]))
            self._raw_cache.pop(name, None)
            self._meta_cache.pop(name, None)

    def write(self, name: str, start: int, values: np.ndarray) -> None:
        raw = self._raw(name)
        if (
            raw is not None
            and raw.can_write
            and start % raw.chunk_rows == 0
            and values.dtype == raw.dtype
            and tuple(values.shape[1:]) == raw.shape[1:]
        ):
            raw.write_chunks(start, values)
            return
        arr = self._arr(name)
        arr[start : start + len(values)] = values

    def _raw(self, name: str) -> Any:
        """Direct reader of a raw local array (None when not applicable)."""
        if self.fs is not None:
            return None
        if name not in self._raw_cache:
            from ..rawread import RawZarrArray

            raw = RawZarrArray.open(os.path.join(self.root, name))
            if raw is not None:
                raw.strict = name in self.strict_arrays
            self._raw_cache[name] = raw
        return self._raw_cache[name]

    def read(self, name: str, sel: slice | np.ndarray = slice(None)) -> np.ndarray:
        raw = self._raw(name)
        if raw is not None:
            n = self.array_info(name)[0][0]
            if isinstance(sel, slice):
                a, b, step = sel.indices(n)
                if step == 1:
                    return raw.read_range(a, max(a, b))
            else:
                return raw.read_positions(np.asarray(sel, dtype=np.int64))
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

    # -- commit records ----------------------------------------------------
    def _rec_dir(self, region: str) -> str:
        return f"{self.root}/_embstore/commits/{region}"

    def list_regions(self) -> list[str]:
        base = f"{self.root}/_embstore/commits"
        if self.fs is None:
            return sorted(os.listdir(base)) if os.path.isdir(base) else []
        return list_names(self.fs, base)

    def list_records(self, region: str) -> list[int]:
        d = self._rec_dir(region)
        if self.fs is None:
            names = os.listdir(d) if os.path.isdir(d) else []
        else:
            names = list_names(self.fs, d)
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
            atomic.write_new(p, payload)  # whole or absent; never overwrites an existing record
        else:
            put_new(self.fs, p, payload)  # never overwrite an existing record

    def delete_record(self, region: str, seq: int) -> None:
        p = f"{self._rec_dir(region)}/{seq:012d}.json"
        try:
            if self.fs is None:
                atomic.remove(p)
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
                f"c{i}",
                shape=values.shape,
                dtype=dtype,
                chunks=(max(1, min(len(values), 1 << 16)),),
                dimension_names=[f"{name}_row"],
                attributes={"column": col},
                **kw,
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
            a = self.group["_blobs"][name]
        except KeyError:
            return None
        return np.asarray(a[:], dtype=np.uint8).tobytes()

    def list_blobs(self) -> list[str]:
        try:
            return sorted(self.group["_blobs"].array_keys())
        except KeyError:
            return []

    def _delete_node(self, key: str) -> None:
        if self.fs is None:
            p = os.path.join(self.root, key)
            if os.path.isdir(p):
                faults.step("delete")
                shutil.rmtree(p, ignore_errors=True)
        else:
            try:
                self.fs.rm(f"{self.root}/{key}", recursive=True)
            except FileNotFoundError:
                pass
        self._arrays.pop(key, None)
        self._raw_cache.pop(key, None)
        self._meta_cache.pop(key, None)
        self._group = None if self.fs is None else self._group

    def delete_table(self, name: str) -> bool:
        self._delete_node(f"_tables/{name}")
        return True

    def delete_blob(self, name: str) -> bool:
        self._delete_node(f"_blobs/{name}")
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
    def remove_temp_files(self, pid: int) -> int:
        """Delete the ``*.<pid>.tmp`` / ``*.<pid>.<thread>.tmp`` files of a killed writer (local stores).

        Chunk and record files are written to such a temporary name and
        renamed into place, so a writer killed in between leaves one behind.
        Called when a stale append lock of the dead process ``pid`` is taken
        over; temporary files of other (live) writers are left alone.
        """
        if self.fs is not None or pid <= 0:
            return 0
        own = re.compile(rf"\.{int(pid)}(\.\d+)?\.tmp$")
        removed = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for f in files:
                if own.search(f):
                    try:
                        os.remove(os.path.join(dirpath, f))
                        removed += 1
                    except FileNotFoundError:  # pragma: no cover - raced with another cleaner
                        pass
        return removed

    def list_locks(self) -> list[str]:
        """Regions whose append lock (claim) exists."""
        base = f"{self.root}/_embstore/locks"
        names = (
            (os.listdir(base) if os.path.isdir(base) else [])
            if self.fs is None
            else list_names(self.fs, base)
        )
        return sorted(n[: -len(".lock")] for n in names if n.endswith(".lock"))

    def make_lock(self, region: str) -> Any:
        what = f"store {self.path!r} (region {region})"
        p = f"{self.root}/_embstore/locks/{region}.lock"
        if self.fs is None:
            return FileLock(p, what)
        return ObjectLock(self.fs, p, what)
