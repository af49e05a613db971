"""Zarr v3 store in a local directory (:class:`LocalZarrBackend`): atomic files, raw chunk I/O, file locks.

What the commit protocol gets from a local filesystem (POSIX):

- **exclusive create**: commit records are written to a temporary file and
  published with ``os.link`` (:func:`embstore.store.atomic.write_new`): the
  record appears whole or not at all, and never replaces an existing one;
  append locks are ``O_EXCL`` files (:class:`embstore.store.lock.FileLock`);
- **atomic rename**: ``zarr.json`` metadata (attributes, resizes,
  consolidated metadata) and rewritten chunk files are replaced by temp file
  + ``os.replace``, so a kill never leaves a torn file;
- **temporary files of a killed writer** (``*.<pid>.tmp``) are found and
  removed when its stale lock is taken over.

Fast paths bypass zarr's event loop where the format is simple: array
metadata read from ``zarr.json``, resizes by rewriting it, and raw chunk
reads/writes through :class:`embstore.store.rawread.RawZarrArray`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from typing import Any

import numpy as np

from ...errors import NotAStoreError, StoreNotFoundError
from .. import atomic, faults
from ..lock import FileLock
from .zarr_backend import ZarrBackend, local_path

__all__ = ["LocalZarrBackend"]


class LocalZarrBackend(ZarrBackend):
    """Zarr v3 group in a local directory (see the module docstring for its guarantees)."""

    atomic_rename = True

    def __init__(
        self, path: str, group: Any, storage_options: dict[str, Any] | None, mode: str = "a"
    ) -> None:
        super().__init__(path, group, storage_options, mode)
        self.fs = None
        self.root = local_path(path).rstrip("/")
        self._meta_cache: dict[str, dict[str, Any] | None] = {}
        self._raw_cache: dict[str, Any] = {}

    # -- lifecycle ---------------------------------------------------------
    @classmethod
    def exists(cls, path: str, storage_options: dict[str, Any] | None) -> bool:
        return os.path.exists(local_path(path))

    @classmethod
    def _store_path(cls, path: str) -> str:
        return local_path(path)

    @classmethod
    def _remove_existing(cls, path: str, storage_options: dict[str, Any] | None) -> None:
        p = local_path(path)
        if os.path.isdir(p):
            shutil.rmtree(p)
        else:
            os.remove(p)

    @classmethod
    def open(cls, path: str, mode: str, storage_options: dict[str, Any] | None) -> LocalZarrBackend:
        if not cls.exists(path, storage_options):
            raise StoreNotFoundError(
                f"no store at {path!r}; check the path or create one with Store.create"
            )
        try:
            with open(os.path.join(local_path(path), "zarr.json")) as fh:
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

    def invalidate(self) -> None:
        super().invalidate()
        self._meta_cache.clear()
        self._raw_cache.clear()

    def _forget(self, name: str) -> None:
        super()._forget(name)
        self._raw_cache.pop(name, None)
        self._meta_cache.pop(name, None)

    # -- zarr.json ---------------------------------------------------------
    def _json_path(self, name: str | None) -> str:
        return (
            os.path.join(self.root, name, "zarr.json")
            if name
            else os.path.join(self.root, "zarr.json")
        )

    def _json(self, name: str | None) -> dict[str, Any] | None:
        """Parsed ``zarr.json`` of a node (None if absent)."""
        try:
            with open(self._json_path(name)) as fh:
                out: dict[str, Any] = json.load(fh)
                return out
        except (OSError, ValueError):
            return None

    def _meta(self, name: str) -> dict[str, Any] | None:
        if name not in self._meta_cache or self._meta_cache[name] is None:
            m = self._json(name)
            self._meta_cache[name] = m if m is not None and m.get("node_type") == "array" else None
        return self._meta_cache[name]

    def _write_node_json(
        self, name: str | None, update: dict[str, Any], merge_attrs: bool = False
    ) -> bool:
        """Rewrite a node's ``zarr.json`` atomically (temp file + rename).

        zarr rewrites metadata in place, so a kill in the middle would leave a
        torn ``zarr.json`` and an unopenable store or array. Returns False
        when the file cannot be read (then zarr's own writer is used).
        """
        meta = self._json(name)
        if meta is None:
            return False
        for k, v in update.items():
            if merge_attrs and k == "attributes":
                meta.setdefault("attributes", {}).update(v)
            else:
                meta[k] = v
        atomic.write_replace(self._json_path(name), json.dumps(meta, indent=2).encode())
        if name:
            self._arrays.pop(name, None)
            self._meta_cache.pop(name, None)
        return True

    # -- attributes --------------------------------------------------------
    def read_attrs(self) -> dict[str, Any]:
        meta = self._json(None)
        if meta is not None:
            return dict(meta.get("attributes", {}))
        return super().read_attrs()

    def write_attrs(self, attrs: dict[str, Any]) -> None:
        if self._write_node_json(None, {"attributes": attrs}):
            self._group = None  # its cached attributes are stale
            return
        super().write_attrs(attrs)

    # -- arrays ------------------------------------------------------------
    def has_array(self, name: str) -> bool:
        return name in self._arrays or self._meta(name) is not None

    def set_array_attrs(self, name: str, attrs: dict[str, Any]) -> None:
        if not self._write_node_json(name, {"attributes": attrs}, merge_attrs=True):
            super().set_array_attrs(name, attrs)

    def array_info(self, name: str) -> tuple[tuple[int, ...], np.dtype, int]:
        meta = self._meta(name) if name not in self._arrays else None
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
        return super().array_info(name)

    def _resize_local(self, name: str, n: int) -> bool:
        """Resize by rewriting ``zarr.json`` (True when done).

        zarr's ``Array.resize`` does the same through its event loop, which
        costs ~5-7 ms a call here (an import or extraction resizes every
        array a few times). The file is replaced atomically (temp + rename),
        and chunks wholly outside a smaller shape are deleted, as zarr does.
        """
        p = self._json_path(name)
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
            self._drop_chunks(
                name,
                -(-int(n) // cr),
                (cke.get("configuration") or {}).get("separator", "/") == ".",
            )
        self._forget(name)
        return True

    def _drop_chunks(self, name: str, first_gone: int, flat: bool) -> None:
        """Delete the chunk files of array ``name`` from chunk ``first_gone`` on."""
        cdir = os.path.join(self.root, name) if flat else os.path.join(self.root, name, "c")
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

    def resize(self, name: str, n: int) -> None:
        if not self._resize_local(name, n):
            super().resize(name, n)

    def _raw(self, name: str) -> Any:
        """Direct chunk reader/writer of a raw local array (None when not applicable)."""
        if name not in self._raw_cache:
            from ..rawread import RawZarrArray

            raw = RawZarrArray.open(os.path.join(self.root, name))
            if raw is not None:
                raw.strict = name in self.strict_arrays
            self._raw_cache[name] = raw
        return self._raw_cache[name]

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
        super().write(name, start, values)

    def read(self, name: str, sel: slice | np.ndarray = slice(None)) -> np.ndarray:
        raw = self._raw(name)
        if raw is not None:
            if isinstance(sel, slice):
                a, b, step = sel.indices(self.array_info(name)[0][0])
                if step == 1:
                    out: np.ndarray = raw.read_range(a, max(a, b))
                    return out
            else:
                pos: np.ndarray = raw.read_positions(np.asarray(sel, dtype=np.int64))
                return pos
        return super().read(name, sel)

    # -- commit records ----------------------------------------------------
    def _list_dir(self, path: str) -> list[str]:
        return sorted(os.listdir(path)) if os.path.isdir(path) else []

    def read_record(self, region: str, seq: int) -> bytes | None:
        try:
            with open(self._rec_path(region, seq), "rb") as fh:
                return fh.read()
        except OSError:
            return None

    def write_record(self, region: str, seq: int, payload: bytes) -> None:
        os.makedirs(self._rec_dir(region), exist_ok=True)
        # whole or absent; never overwrites an existing record
        atomic.write_new(self._rec_path(region, seq), payload)

    def delete_record(self, region: str, seq: int) -> None:
        try:
            atomic.remove(self._rec_path(region, seq))
        except OSError:
            pass

    def _remove_tree(self, key: str) -> None:
        p = os.path.join(self.root, key)
        if os.path.isdir(p):
            faults.step("delete")
            shutil.rmtree(p, ignore_errors=True)
        self._group = None  # zarr caches the members of the group

    # -- locking -----------------------------------------------------------
    def remove_temp_files(self, pid: int) -> int:
        """Delete the ``*.<pid>.tmp`` / ``*.<pid>.<thread>.tmp`` files of a killed writer.

        Chunk and record files are written to such a temporary name and
        renamed into place, so a writer killed in between leaves one behind.
        Called when a stale append lock of the dead process ``pid`` is taken
        over; temporary files of other (live) writers are left alone.
        """
        if pid <= 0:
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

    def make_lock(self, region: str) -> Any:
        return FileLock(self._lock_path(region), f"store {self.path!r} (region {region})")
