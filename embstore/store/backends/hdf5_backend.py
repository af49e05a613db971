"""HDF5 backend: one ``.h5`` file laid out as netCDF-4 (readable without embstore).

The file is created through :mod:`h5netcdf`, so ``xarray.open_dataset(path,
engine="h5netcdf")`` and ``h5dump`` see named dimensions (netCDF dimension
scales) and the id and metadata coordinates (the ``coordinates`` attribute of
every data variable). Bulk data is written through :mod:`h5py` directly.

Layout::

    /<variable>, /<id_name>, /<coord>    along the unlimited row dimension
    /<ragged>                            flat token rows (<ragged>_token, F)
    /<ragged>_offset, _n, _h, _w         per-row bookkeeping
    /_embstore (group attrs)             commit records "<region>:<seq>", JSON attrs
    /_tables/<name>/c<i>, /_blobs/<name> tables and blobs

Booleans are stored as ``int8`` with the attribute ``dtype="bool"`` (the
convention xarray decodes). Unlike the Zarr backend, an HDF5 file supports one
writer process at a time (no region writers); a killed writer may leave the
file unreadable if it died inside an HDF5 metadata write, so prefer Zarr for
long extraction runs (see :doc:`/store`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ...errors import NotAStoreError, StoreExistsError, StoreLockedError, StoreNotFoundError
from ..lock import FileLock
from .base import Backend, fill_value_for

__all__ = ["HDF5Backend"]

_META = "_embstore"


class HDF5Backend(Backend):
    """HDF5 (netCDF-4 layout) backend; see the module docstring."""

    kind = "hdf5"
    supports_regions = False

    def __init__(self, path: str, nc: Any) -> None:
        self.path = path
        self.nc = nc
        self.h5 = nc._h5file

    @classmethod
    def exists(cls, path: str, storage_options: dict[str, Any] | None) -> bool:
        return os.path.exists(path)

    @classmethod
    def _open_nc(cls, path: str, mode: str) -> Any:
        from ..._optional import attempt_import

        h5netcdf = attempt_import("h5netcdf")
        try:
            return h5netcdf.File(path, mode)
        except (BlockingIOError, OSError) as exc:
            msg = str(exc).lower()
            if "lock" in msg or "resource temporarily unavailable" in msg:
                raise StoreLockedError(
                    f"HDF5 file {path!r} is open by another process ({exc}); close that writer first"
                ) from exc
            if mode != "w":
                raise NotAStoreError(f"{path!r} is not a readable HDF5 file ({exc}); pass an embstore .h5 store") from exc
            raise
        except (KeyError, RuntimeError, ValueError) as exc:
            raise NotAStoreError(
                f"HDF5 file {path!r} cannot be read ({exc}); it may have been damaged by a writer killed "
                "during a write. Re-extract into a Zarr store (crash-safe) or restore a copy"
            ) from exc

    @classmethod
    def create(cls, path: str, overwrite: bool, storage_options: dict[str, Any] | None, attrs: dict[str, Any]) -> HDF5Backend:
        if os.path.exists(path):
            if not overwrite:
                raise StoreExistsError(
                    f"{path!r} already exists; pass overwrite=True to replace it, or use "
                    "Store.open(path, mode='a') to add rows"
                )
            os.remove(path)
        nc = cls._open_nc(path, "w")
        nc._h5file.create_group(_META)
        b = cls(path, nc)
        b.write_attrs(attrs)
        nc.flush()
        return b

    @classmethod
    def open(cls, path: str, mode: str, storage_options: dict[str, Any] | None) -> HDF5Backend:
        if not os.path.exists(path):
            raise StoreNotFoundError(f"no store at {path!r}; check the path or create one with Store.create")
        nc = cls._open_nc(path, "r" if mode == "r" else "a")
        if _META not in nc._h5file:
            nc.close()
            raise NotAStoreError(f"{path!r} is an HDF5 file but not an embstore store (no /{_META} group)")
        return cls(path, nc)

    def flush(self) -> None:
        if self.h5.mode != "r":
            self.nc.flush()
            self.h5.flush()  # h5netcdf's flush does not flush the HDF5 file itself

    def close(self) -> None:
        try:
            self.nc.close()
        except Exception:  # pragma: no cover - already closed
            pass

    # -- attributes --------------------------------------------------------
    def read_attrs(self) -> dict[str, Any]:
        meta = self.h5[_META].attrs
        json_keys = set(json.loads(meta.get("json_keys", "[]")))
        out: dict[str, Any] = {}
        for k, v in self.h5.attrs.items():
            if k.startswith("_") or k in ("DIMENSION_LIST",):
                continue
            if isinstance(v, bytes):
                v = v.decode()
            if isinstance(v, np.generic):
                v = v.item()
            if k in json_keys:
                v = json.loads(v)
            out[k] = v
        return out

    def write_attrs(self, attrs: dict[str, Any]) -> None:
        json_keys = []
        for k in list(self.h5.attrs):
            if not k.startswith("_"):
                del self.h5.attrs[k]
        for k, v in attrs.items():
            if isinstance(v, (str, int, float, bool)) and not isinstance(v, bool):
                self.h5.attrs[k] = v
            else:
                self.h5.attrs[k] = json.dumps(v)
                json_keys.append(k)
        self.h5[_META].attrs["json_keys"] = json.dumps(json_keys)

    # -- arrays ------------------------------------------------------------
    def has_array(self, name: str) -> bool:
        return name in self.h5 and not name.startswith("_") and hasattr(self.h5[name], "shape")

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
        import h5py

        if self.has_array(name):
            return
        for i, d in enumerate(dims):
            if d not in self.nc.dimensions:
                self.nc.dimensions[d] = None if i == 0 else int(shape[i])
        is_str = dtype == "str" or np.dtype(dtype).kind in "UOT"
        is_bool = not is_str and np.dtype(dtype).kind == "b"
        h5dtype: Any = h5py.string_dtype() if is_str else ("i1" if is_bool else np.dtype(dtype))
        kw: dict[str, Any] = {}
        if compressor == "zstd":  # no zstd in stock HDF5: gzip level 1 instead
            kw["compression"] = "gzip"
            kw["compression_opts"] = 1
        var = self.nc.create_variable(
            name, dims, dtype=h5dtype, chunks=(max(1, chunk_rows),) + tuple(max(1, s) for s in shape[1:]), **kw
        )
        ds = self.h5[name]
        if not is_str and not is_bool:
            fv = fill_value_for(np.dtype(dtype))
            if np.dtype(dtype).kind == "f":
                var.attrs["_FillValue"] = np.dtype(dtype).type(fv)
        if is_bool:
            var.attrs["dtype"] = "bool"
        for k, v in (attrs or {}).items():
            var.attrs[k] = int(v) if isinstance(v, bool) else (v if isinstance(v, (str, int, float)) else json.dumps(v))
        if shape[0]:
            self.resize(name, shape[0])
        del ds

    def set_array_attrs(self, name: str, attrs: dict[str, Any]) -> None:
        for k, v in attrs.items():
            self.h5[name].attrs[k] = v

    def array_info(self, name: str) -> tuple[tuple[int, ...], np.dtype, int]:
        ds = self.h5[name]
        if ds.dtype.kind == "O":
            dt = np.dtype("<U1")
        elif ds.attrs.get("dtype") in ("bool", b"bool"):
            dt = np.dtype(bool)
        else:
            dt = ds.dtype
        return tuple(ds.shape), dt, int(ds.chunks[0]) if ds.chunks else max(1, ds.shape[0])

    def resize(self, name: str, n: int) -> None:
        ds = self.h5[name]
        if ds.shape[0] != n:
            ds.resize(n, axis=0)
        # keep the netCDF dimension scale as long as the arrays
        dim = self.nc.variables[name].dimensions[0] if name in self.nc.variables else None
        if dim is not None and dim in self.h5 and self.h5[dim].shape[0] != n:
            self.h5[dim].resize((n,))

    def write(self, name: str, start: int, values: np.ndarray) -> None:
        ds = self.h5[name]
        if ds.dtype.kind == "O":
            values = np.asarray(values).astype(object)
        elif values.dtype.kind == "b":
            values = values.astype(np.int8)
        ds[start : start + len(values)] = values

    def read(self, name: str, sel: slice | np.ndarray = slice(None)) -> np.ndarray:
        ds = self.h5[name]
        if not isinstance(sel, slice):
            sel = np.asarray(sel, dtype=np.int64)
            if len(sel) == 0:
                sel = slice(0, 0)
            elif np.all(np.diff(sel) == 1):
                sel = slice(int(sel[0]), int(sel[-1]) + 1)
        if ds.dtype.kind == "O":
            vals = ds.asstr()[sel]
            return np.array(list(vals), dtype=str) if len(vals) else np.zeros(0, dtype="<U1")
        out = ds[sel]
        if ds.attrs.get("dtype") in ("bool", b"bool"):
            out = out.astype(bool)
        return np.asarray(out)

    # -- commit records ----------------------------------------------------
    def _recs(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for k in self.h5[_META].attrs:
            if ":" in k:
                r, s = k.split(":", 1)
                out.setdefault(r, []).append(int(s))
        return out

    def list_regions(self) -> list[str]:
        return sorted(self._recs())

    def list_records(self, region: str) -> list[int]:
        return sorted(self._recs().get(region, []))

    def read_record(self, region: str, seq: int) -> bytes | None:
        v = self.h5[_META].attrs.get(f"{region}:{seq:012d}")
        if v is None:
            return None
        return v.encode() if isinstance(v, str) else bytes(v)

    def write_record(self, region: str, seq: int, payload: bytes) -> None:
        self.h5[_META].attrs[f"{region}:{seq:012d}"] = payload.decode()
        self.flush()

    def delete_record(self, region: str, seq: int) -> None:
        key = f"{region}:{seq:012d}"
        if key in self.h5[_META].attrs:
            del self.h5[_META].attrs[key]

    # -- tables and blobs --------------------------------------------------
    def write_table(self, name: str, columns: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        import h5py

        tables = self.h5.require_group("_tables")
        if name in tables:
            del tables[name]
        g = tables.create_group(name)
        g.attrs["embstore_table"] = json.dumps(meta)
        for i, (col, values) in enumerate(columns.items()):
            values = np.asarray(values)
            if values.dtype.kind in "UO":
                ds = g.create_dataset(f"c{i}", data=values.astype(object), dtype=h5py.string_dtype())
            elif values.dtype.kind == "b":
                ds = g.create_dataset(f"c{i}", data=values.astype(np.int8))
                ds.attrs["dtype"] = "bool"
            else:
                ds = g.create_dataset(f"c{i}", data=values)
            ds.attrs["column"] = col

    def read_table(self, name: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        g = self.h5.get("_tables")
        if g is None or name not in g:
            return None
        g = g[name]
        meta = json.loads(g.attrs["embstore_table"])
        cols: dict[str, np.ndarray] = {}
        for i in range(len(meta["columns"])):
            ds = g[f"c{i}"]
            if ds.dtype.kind == "O":
                v = np.array(list(ds.asstr()[:]), dtype=str) if ds.shape[0] else np.zeros(0, dtype="<U1")
            else:
                v = ds[:]
                if ds.attrs.get("dtype") in ("bool", b"bool"):
                    v = v.astype(bool)
            col = ds.attrs["column"]
            cols[col.decode() if isinstance(col, bytes) else col] = v
        return cols, meta

    def list_tables(self) -> list[str]:
        g = self.h5.get("_tables")
        return sorted(g.keys()) if g is not None else []

    def write_blob(self, name: str, data: bytes) -> None:
        blobs = self.h5.require_group("_blobs")
        if name in blobs:
            del blobs[name]
        blobs.create_dataset(name, data=np.frombuffer(data, dtype=np.uint8))

    def read_blob(self, name: str) -> bytes | None:
        g = self.h5.get("_blobs")
        if g is None or name not in g:
            return None
        return np.asarray(g[name][:], dtype=np.uint8).tobytes()

    # -- locking -----------------------------------------------------------
    def make_lock(self, region: str) -> Any:
        return FileLock(self.path + ".lock", f"store {self.path!r}")
