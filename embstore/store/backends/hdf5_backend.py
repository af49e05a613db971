"""HDF5 backend: one ``.h5`` file laid out as netCDF-4 (readable without embstore).

The file is created through :mod:`h5netcdf`, so ``xarray.open_dataset(path,
engine="h5netcdf")`` and ``h5dump`` see named dimensions (netCDF dimension
scales) and the id and metadata coordinates (the ``coordinates`` attribute of
every data variable). Bulk data is written through :mod:`h5py` directly.

Layout::

    /<variable>, /<id_name>, /<coord>    along the unlimited row dimension
    /<ragged>                            flat token rows (<ragged>_token, F)
    /<ragged>_offset, _n, _h, _w         per-row bookkeeping
    /_embstore (group attrs)             commit records "<region>:<seq>", JSON attrs,
                                         "generation" (see below)
    /_tables/<name>/c<i>, /_blobs/<name> tables and blobs

Booleans are stored as ``int8`` with the attribute ``dtype="bool"`` (the
convention xarray decodes). An HDF5 file takes one writer process at a time
(no region writers).

**Crash safety: the committed file is never written in place.**
HDF5 updates its metadata (B-trees, heaps, superblock) in place, so a process
killed inside a write can leave a file that no longer opens, or a string
coordinate whose heap is unreadable. The backend therefore never modifies
``run.h5`` itself:

1. A writer session starts at the first mutation: ``run.h5`` is copied to a
   private working copy ``run.h5.work.<pid>.tmp``, and a redo journal
   ``run.h5.wal`` is started (:mod:`~embstore.store.backends.h5journal`).
2. Every mutation (array write, resize, attrs, commit record, table, blob) is
   appended to the journal, then applied to the working copy. Bulk row writes
   (numeric, unfiltered, 64 KiB or more: the embeddings) go the other way
   round, and only once: each touched chunk is written whole into the working
   copy with ``H5Dwrite_chunk``, then the journal gets a *reference* (file
   offset and crc32c of each chunk's rows) instead of the bytes
   (:mod:`~embstore.store.backends.h5direct`). Reads of the writer come from
   the working copy. A row is *committed* once its commit record is in the
   journal.
3. ``close()`` (and only close) consolidates: the working copy is closed,
   fsync'ed and atomically renamed over ``run.h5``, then the journal is
   deleted. A stale journal is recognised by its base *generation* (a random
   token each consolidated file carries), so a kill between the rename and the
   delete is harmless.
4. Opening a store whose writer died replays the journal's valid prefix (each
   entry has a CRC) onto a copy of ``run.h5`` and renames that over
   ``run.h5`` (under the append lock). A torn last entry is dropped.
   References are read from the dead writer's working copy (kept until the
   journal is folded in); a referenced chunk failing its crc32c ends the
   replay, unless a later *rebase* entry (the chunk's rows journaled inline
   just before an in-place rewrite, e.g. ``set_coords``) rewrites it.

Durability: what a commit survives at once is a SIGKILL (journal and
working-copy bytes are in the kernel when ``flush`` returns) and a full disk.
Against a power cut, ``close()`` is the durability point (the copy is
fsync'ed before its rename); between closes a power cut gives back a prefix
of the commits (those whose pages reached the disk, checked by the CRCs),
never a damaged file. That is the Zarr backend's level (it does not fsync).
:attr:`HDF5Backend.durable_commits` = True fdatasyncs the working copy before
each commit record and the journal after it (each commit power-cut durable;
the peers write took about 1.3x as long).

So at every instant ``run.h5`` is a complete, closed HDF5 file that plain
``xarray.open_dataset(path, engine="h5netcdf")`` and ``h5dump`` read: the state
of the last clean close. Rows committed since then are in the journal and
appear in ``run.h5`` at ``close()`` or at the next open after a crash. A
``Store.open(mode="r")`` in the writer's own process reads the working copy
(HDF5 shares the open file), so it sees every commit at once, as before; other
processes see the last close (and never get "open by another process").
A truncated or overwritten ``run.h5`` raises
:class:`~embstore.errors.NotAStoreError` saying the file is damaged.

Tests: ``tests/test_hdf5_crash.py`` (SIGKILL at 20+ injected steps, torn
journal entries, random times, during recovery, each on the inline and the
by-reference write path, and with ``durable_commits``; an in-place rewrite of
referenced rows; a reference to bytes lost in a power cut; full tmpfs;
injected ENOSPC).

Cost: bulk row bytes are written once (into the working copy; the journal
holds ~100 bytes per chunk), small writes twice (journal + copy); no fsync
until ``close()``, which fsyncs the copy and renames it. A commit costs
O(rows committed), independent of the store size. Opening an existing store
for appending copies the file once (at the first mutation: O(store size)); a
store created and filled in one session is never copied. ``bench/peers.py``
(20,000 x 100 x 256 float16, batches of 64): see docs/store.rst for the
figures against LanceDB and an npy memmap, and ``bench/hdf5_commit.py`` for
commit and close times against store size. Disk use during a session: up to
twice the store plus the rows appended.
A full disk raises :class:`~embstore.errors.StoreError` saying so (free space
is checked before each write, so HDF5 itself rarely meets the full disk); the
committed file and the journal's committed entries stay intact and the
working copy is removed (kept, with the journal, only when journal references
read it and folding the journal in failed too: the next open folds it in).

:attr:`~HDF5Backend.atomic_records` is True: a commit record is one journal
entry (CRC-checked: whole or dropped) applied as one attribute, under the
one-writer lock, and never overwritten. ``staged_arrays`` is False:
``set_coords`` writes coordinates in place. Staging would need hidden
datasets outside the netCDF root group (each with its own dimension scales,
or plain netCDF readers reject the file) and a ``delete_array`` whose space
HDF5 never reuses across sessions (a file grows by every superseded
coordinate until ``h5repack``); in-place writes go through the journal, so
each journaled write comes back whole or not at all, but a kill between a
``set_coords`` and its commit record can leave some new values visible.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import uuid
from typing import Any

import numpy as np

from ...errors import (
    EmbstoreError,
    NotAStoreError,
    StoreError,
    StoreExistsError,
    StoreLockedError,
    StoreNotFoundError,
)
from .. import tablecodec
from ..lock import FileLock, pid_alive
from . import h5direct
from .base import Backend
from .h5direct import direct_dtype, direct_write, rebase_rows
from .h5journal import (
    Journal,
    ensure_space,
    fault_point,
    fsync_dir,
    fsync_path,
    is_disk_full,
    json_default,
)
from .h5ops import apply_op, create_variable, read_array, skip_same_rows
from .h5raw import RawH5Rows
from .h5recover import PlainH5 as _PlainH5
from .h5recover import begin_session, open_nc, recover, trim_to_last_record
from .h5recover import disk_full as _disk_full
from .h5recover import unlink as _unlink

__all__ = ["HDF5Backend"]

log = logging.getLogger(__name__)

_META = "_embstore"
_GEN = "generation"
#: Writer sessions of this process, by real path: a reader opened in the
#: writer's own process reads the working copy (and sees every commit).
_SESSIONS: dict[str, HDF5Backend] = {}
#: Writes up to this size are remembered, so that a rewrite from the same row skips equal rows.
_SAME_MAX = 4 << 20
_TMP_RE = re.compile(r"\.(work|init|recover)\.(\d+)\.tmp$")


def _pack(values: Any) -> tuple[dict[str, Any], memoryview]:
    """Array -> (dtype/shape header, raw bytes); strings as fixed-width unicode."""
    a = np.asarray(values)
    if a.dtype.kind in "OT":
        a = a.astype(str)
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.str, "shape": list(a.shape)}, a.reshape(-1).data.cast("B")


class _SessionLock(FileLock):
    """The append lock; releasing it first consolidates the writer's session."""

    def __init__(self, path: str, what: str, backend: HDF5Backend) -> None:
        super().__init__(path, what)
        self._backend = backend

    def release(self) -> None:
        try:
            if self.held:
                self._backend._finish()
        finally:
            super().release()


class HDF5Backend(Backend):
    """HDF5 (netCDF-4 layout) backend; see the module docstring."""

    kind = "hdf5"
    supports_regions = False
    atomic_rename = True  # the committed file is replaced by rename at close (see base.py)
    #: a record is one journal entry (CRC-checked: a torn one is dropped whole) applied as one
    #: attribute, under the one-writer lock; ``write_record`` never overwrites one
    atomic_records = True
    #: fdatasync the working copy and the journal at every commit (power-loss
    #: durability of each commit; off by default: see the module docstring)
    durable_commits = False

    def __init__(self, path: str, nc: Any, mode: str = "r") -> None:
        self.path = path
        self.nc = nc
        self._dsc: dict[str, Any] = {}  # h5py datasets by name (a lookup costs ~0.3 ms)
        self._direct: dict[str, np.dtype | None] = {}  # dtype if it takes direct chunk writes
        self.h5 = nc._h5file
        self.mode = mode  # "r", "a" or "replay" (apply to this file, no journal)
        self._journal: Journal | None = None
        self._work: str | None = None
        self._broken: str | None = None
        self._work_ok = True  # every operation in the journal was fully applied to the working copy
        self._raw: dict[str, RawH5Rows | None] = {}
        self._mut = 0  # operations applied (raw readers are rebuilt after a change)
        self._raw_mut = 0
        self._shared = (
            False  # reads the working copy of a writer in this process (through its HDF5 cache)
        )
        self._work_unsynced = (
            False  # direct chunk writes since the last fdatasync of the working copy
        )
        self._sync_due = False  # journal entries that a flush must make durable
        self._srcs: set[str] = set()  # working copies read by journal references (replay)
        self._ref_rows: dict[str, tuple[int, int]] = {}  # rows named by references, per array
        self._last: dict[str, tuple[int, np.ndarray]] = {}  # last small write per array (session)
        self._rebased: dict[
            tuple[str, int], int
        ] = {}  # (array, chunk) -> last rebase entry (replay)
        self._entry = 0  # index of the entry being replayed

    @property
    def h5(self) -> Any:
        """The open h5py file (the working copy during a writer session)."""
        return self._h5

    @h5.setter
    def h5(self, f: Any) -> None:
        self._h5 = f
        self._dsc = {}
        self._direct = {}

    def _close_nc(self) -> None:
        # drop h5py objects first: freeing them after their file failed and closed can crash HDF5
        self._dsc, self._direct = {}, {}
        self.nc.close()

    def _ds(self, name: str) -> Any:
        ds = self._dsc.get(name)
        if ds is None:
            ds = self._dsc[name] = self.h5[name]
        return ds

    # -- files -------------------------------------------------------------
    @classmethod
    def exists(cls, path: str, storage_options: dict[str, Any] | None) -> bool:
        return os.path.exists(path)

    @staticmethod
    def _wal(path: str) -> str:
        return path + ".wal"

    @staticmethod
    def _tmp(path: str, kind: str) -> str:
        return f"{path}.{kind}.{os.getpid()}.tmp"

    _open_nc = staticmethod(open_nc)

    @classmethod
    def _open_committed(cls, path: str) -> Any:
        nc = cls._open_nc(path, "r")
        if _META not in nc._h5file:
            nc.close()
            raise NotAStoreError(
                f"{path!r} is an HDF5 file but not an embstore store (no /{_META} group)"
            )
        return nc

    @staticmethod
    def _generation(h5: Any) -> str:
        v = h5[_META].attrs.get(_GEN, "")
        return v.decode() if isinstance(v, bytes) else str(v)

    # -- lifecycle ---------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str,
        overwrite: bool,
        storage_options: dict[str, Any] | None,
        attrs: dict[str, Any],
    ) -> HDF5Backend:
        if os.path.exists(path) and not overwrite:
            raise StoreExistsError(
                f"{path!r} already exists; pass overwrite=True to replace it, or use "
                "Store.open(path, mode='a') to add rows"
            )
        init = cls._tmp(path, "init")
        try:
            nc = cls._open_nc(init, "w")
            try:
                nc._h5file.create_group(_META)
                nc._h5file[_META].attrs[_GEN] = uuid.uuid4().hex
                cls(init, nc, "replay")._apply({"op": "attrs"}, json.dumps(attrs).encode())
            finally:
                nc.close()
            fsync_path(init)
            fault_point("replace")
            os.replace(
                init, path
            )  # a complete file appears at once (overwrite=True: the old one goes)
            fsync_dir(path)
        except BaseException as exc:
            _unlink(init)
            if is_disk_full(exc):
                raise _disk_full(path, exc) from exc
            raise
        _unlink(cls._wal(path))  # a journal of a replaced store is stale (other generation)
        return cls(path, cls._open_committed(path), "a")

    @classmethod
    def open(cls, path: str, mode: str, storage_options: dict[str, Any] | None) -> HDF5Backend:
        if not os.path.exists(path):
            raise StoreNotFoundError(
                f"no store at {path!r}; check the path or create one with Store.create"
            )
        live = _SESSIONS.get(os.path.realpath(path))
        if mode == "r" and live is not None and live._work is not None:
            import h5py

            try:  # HDF5 shares the file with the writer: its committed rows are visible
                b = cls(path, _PlainH5(h5py.File(live._work, "r", locking=False)), "r")
                b._shared = True
                return b
            except OSError:  # pragma: no cover - fall back to the committed file
                pass
        cls._recover_at_open(path)
        return cls(path, cls._open_committed(path), "r" if mode == "r" else "a")

    @classmethod
    def _recover_at_open(cls, path: str) -> None:
        """Fold in the journal of a writer that died (if no live writer holds the lock)."""
        if not os.path.exists(cls._wal(path)):
            # temporary files without a journal: only from a writer killed while starting (it left its lock)
            if not os.path.exists(path + ".lock"):
                return
            if not [p for p in glob.glob(glob.escape(path) + ".*.tmp") if _TMP_RE.search(p)]:
                return
        lock = FileLock(path + ".lock", f"store {path!r}")
        try:
            lock.acquire()
        except StoreLockedError:
            return  # a live writer: read the committed file (state of its last clean close)
        except OSError as exc:  # e.g. read-only directory
            log.warning(
                "cannot take the lock of %s to recover its journal (%s); reading the committed file",
                path,
                exc,
            )
            return
        try:
            cls._recover(path)  # reads rows from the dead writer's working copy: remove it after
            cls._remove_dead_tmp(path)
        finally:
            lock.release()

    @classmethod
    def _remove_dead_tmp(cls, path: str, pid: int | None = None) -> int:
        n = 0
        pending = os.path.exists(cls._wal(path))  # its references read working copies: keep them
        for p in glob.glob(glob.escape(path) + ".*.tmp"):
            m = _TMP_RE.search(p)
            if m is None or (pending and m.group(1) == "work"):
                continue
            owner = int(m.group(2))
            if (pid is None and not pid_alive(owner) and owner != os.getpid()) or owner == pid:
                n += _unlink(p)
        return n

    @classmethod
    def _recover(cls, path: str) -> bool:
        """Fold the journal into the committed file (caller holds the lock); see h5recover."""
        return recover(cls, path)

    def _trim_to_last_record(self) -> None:
        """Cut row arrays grown ahead of the last commit (as a clean close does); best effort."""
        trim_to_last_record(self)

    def _begin(self) -> None:
        begin_session(self)

    def _reopen_committed(self, close_current: bool = True) -> None:
        if close_current:
            try:
                self._close_nc()
            except Exception:
                pass
        self.nc = self._open_committed(self.path)
        self.h5 = self.nc._h5file
        self._drop_raw()

    def _finish(self) -> None:
        """End the session: rename the working copy over the committed file."""
        if self._journal is None:
            return
        journal, work = self._journal, self._work
        assert work is not None
        if _SESSIONS.get(os.path.realpath(self.path)) is self:
            del _SESSIONS[os.path.realpath(self.path)]
        if self._broken is None or self._work_ok:
            try:
                if self._broken is not None:  # the Store's own trim did not run
                    self._trim_to_last_record()
                self.h5.flush()  # the whole file, even while a reader in this process keeps it open
                self._close_nc()
                if journal.n_ops:
                    fsync_path(work)
                    fault_point("replace")
                    os.replace(work, self.path)
                    fsync_dir(self.path)
                journal.close()
                fault_point("unlink")
                _unlink(journal.path)
                _unlink(work)
                self._journal = self._work = None
                self._reopen_committed(close_current=False)
                return
            except (OSError, RuntimeError) as exc:
                self._broken = f"closing failed ({exc})"
                self._work_ok = False
                log.warning(
                    "consolidating %s failed (%s); recovering from its journal", self.path, exc
                )
        self._abort()

    def _abort(self) -> None:
        """Drop the working copy of a failed session; fold the journal into a fresh copy."""
        try:
            self._close_nc()
        except Exception:
            pass
        work = self._work
        if self._journal is not None:
            self._journal.close()
        self._journal = self._work = None
        if work is not None and not self._ref_rows:  # no journal reference reads it: free its space
            _unlink(work)
        try:  # else it goes after the journal is folded in (recovery reads rows from it)
            self._recover(self.path)
            if work is not None:
                _unlink(work)
        except StoreError as exc:
            log.warning(
                "%s; the journal %s stays (with the working copy its references read) and is "
                "folded in at the next open",
                exc,
                self._wal(self.path),
            )
        self._broken = None
        self._work_ok = True
        self._reopen_committed(close_current=False)

    def flush(self) -> None:
        # data entries alone commit nothing: they become durable with the next record's sync
        if self._journal is not None and self._sync_due and self.durable_commits:
            try:
                self._journal.sync()
            except OSError as exc:
                raise self._fail(exc) from exc
            self._sync_due = False

    def _sync_work(self) -> None:
        """fdatasync the working copy if direct chunk writes happened since the last one.

        Called before a commit record is journaled: a durable record never
        refers to rows whose bytes are not durable (power loss).
        """
        if self._work_unsynced and self._work is not None and self.durable_commits:
            try:
                fault_point("fsync")
                fd = os.open(self._work, os.O_RDONLY)
                try:
                    getattr(os, "fdatasync", os.fsync)(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise self._fail(exc, work_ok=True) from exc
            self._work_unsynced = False

    def close(self) -> None:
        try:
            self._finish()
        finally:
            self._drop_raw()
            try:
                self._close_nc()
            except Exception:  # pragma: no cover - already closed
                pass

    def remove_temp_files(self, pid: int) -> int:
        return self._remove_dead_tmp(self.path, pid)

    # -- the one write path -------------------------------------------------
    def _fail(self, exc: BaseException, work_ok: bool = False) -> StoreError:
        self._broken = str(exc)
        self._work_ok = self._work_ok and work_ok
        if is_disk_full(exc):
            return _disk_full(self.path, exc)
        return StoreError(
            f"writing HDF5 store {self.path!r} failed ({exc}); committed rows are safe. Close the store "
            "and reopen it"
        )

    def _check_writable(self) -> None:
        if self._broken is not None:
            what = (
                "the disk is full" if "No space left" in self._broken else "an earlier write failed"
            )
            raise StoreError(
                f"{what} ({self._broken}): this writer of {self.path!r} stops. Close the store and reopen it "
                "(committed rows are safe)"
            )

    def _mutate(self, header: dict[str, Any], payload: bytes | memoryview = b"") -> None:
        """Journal one operation, then apply it to the working copy."""
        if self.mode == "replay":
            self._apply(header, payload)
            return
        self._check_writable()
        self._begin()
        assert self._journal is not None
        if header["op"] not in ("write", "resize", "create", "delrecord"):  # those commit nothing
            self._sync_due = True
        try:
            ensure_space(self.path, 2 * len(payload))  # journal + working copy
        except OSError as exc:  # refused before anything was written: the working copy stays whole
            raise self._fail(exc, work_ok=True) from exc
        try:
            self._journal.append(header, payload)
        except OSError as exc:
            raise self._fail(exc, work_ok=True) from exc
        try:
            fault_point("h5-write")
            self._apply(header, payload)
        except Exception as exc:
            try:  # the operation did not happen: keep it out of the journal
                self._journal.undo_last()
            except OSError:  # pragma: no cover - then recovery stops before it
                pass
            if isinstance(exc, EmbstoreError):
                self._broken, self._work_ok = str(exc), False
                raise
            raise self._fail(exc) from exc

    def _apply(self, h: dict[str, Any], payload: bytes | memoryview) -> None:
        apply_op(self, h, payload)

    # -- attributes --------------------------------------------------------
    def read_attrs(self) -> dict[str, Any]:
        meta = self._ds(_META).attrs
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
        self._mutate({"op": "attrs"}, json.dumps(attrs, default=json_default).encode())

    def _do_write_attrs(self, attrs: dict[str, Any]) -> None:
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
        self._ds(_META).attrs["json_keys"] = json.dumps(json_keys)

    # -- arrays ------------------------------------------------------------
    def has_array(self, name: str) -> bool:
        if name in self._dsc and not name.startswith("_"):
            return True
        return name in self.h5 and not name.startswith("_") and hasattr(self._ds(name), "shape")

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
        if self.has_array(name):
            return
        enc = {
            k: (
                int(v)
                if isinstance(v, bool)
                else (v if isinstance(v, (str, int, float)) else json.dumps(v))
            )
            for k, v in (attrs or {}).items()
        }
        self._mutate(
            {
                "op": "create",
                "name": name,
                "shape": [int(s) for s in shape],
                "chunk_rows": int(chunk_rows),
                "dtype": str(dtype) if dtype == "str" else np.dtype(dtype).str,
                "dims": list(dims),
                "attrs": enc,
                "compressor": compressor,
            }
        )

    def _do_create_array(
        self,
        name: str,
        shape: tuple[int, ...],
        chunk_rows: int,
        dtype: str,
        dims: tuple[str, ...],
        attrs: dict[str, Any],
        compressor: str | None,
    ) -> None:
        create_variable(self, name, shape, chunk_rows, dtype, dims, attrs, compressor)

    def set_array_attrs(self, name: str, attrs: dict[str, Any]) -> None:
        self._mutate({"op": "array_attrs", "name": name, "attrs": dict(attrs)})

    def array_info(self, name: str) -> tuple[tuple[int, ...], np.dtype, int]:
        ds = self._ds(name)
        if ds.dtype.kind == "O":
            dt = np.dtype("<U1")
        elif ds.attrs.get("dtype") in ("bool", b"bool"):
            dt = np.dtype(bool)
        else:
            dt = ds.dtype
        return tuple(ds.shape), dt, int(ds.chunks[0]) if ds.chunks else max(1, ds.shape[0])

    def resize(self, name: str, n: int) -> None:
        self._mutate({"op": "resize", "name": name, "n": int(n)})

    def _do_resize(self, name: str, n: int) -> None:
        ds = self._ds(name)
        if ds.shape[0] != n:
            ds.resize(n, axis=0)
        # keep the netCDF dimension scale as long as the arrays
        dim = self.nc.variables[name].dimensions[0] if name in self.nc.variables else None
        if dim is not None and dim in self.h5 and self._ds(dim).shape[0] != n:
            self._ds(dim).resize((n,))

    def write(self, name: str, start: int, values: np.ndarray) -> None:
        values = np.asarray(values)
        whole = (start, values.copy()) if self.mode == "a" and values.nbytes <= _SAME_MAX else None
        start, values = skip_same_rows(self._last.get(name), start, values)
        self._last.pop(name, None)  # (a failed write leaves its rows unknown)
        if len(values):
            self._write(name, start, values)
        if whole is not None:
            self._last[name] = whole
        else:
            self._last.pop(name, None)

    def _write(self, name: str, start: int, values: np.ndarray) -> None:
        if name in self._ref_rows:  # rows referenced by the journal are about to change
            lo, hi = self._ref_rows[name]
            span = rebase_rows(self._ds(name), start, start + len(values), lo, hi)
            if span is not None:
                meta, raw = _pack(self._ds(name)[span[0] : span[1]])
                self._mutate(
                    {
                        "op": "write",
                        "name": name,
                        "start": span[0],
                        "rebase": True,
                        "chunk_rows": int(self._ds(name).chunks[0]),
                        **meta,
                    },
                    raw,
                )
        if self.mode == "a" and np.asarray(values).nbytes >= h5direct.MIN_DIRECT_BYTES:
            self._check_writable()
            self._begin()
            if name not in self._direct:
                self._direct[name] = direct_dtype(self._ds(name))
            if self._direct[name] is not None and np.asarray(values).dtype.kind in "biuf":
                self._write_direct(name, start, np.asarray(values))
                return
        meta, raw = _pack(values)
        self._mutate({"op": "write", "name": name, "start": int(start), **meta}, raw)

    def _write_direct(self, name: str, start: int, values: np.ndarray) -> None:
        """Rows into the working copy once; the journal gets a reference (see h5direct)."""
        self._check_writable()
        assert self._journal is not None and self._work is not None
        ds = self._ds(name)
        cr = int(ds.chunks[0])
        span = (start + len(values) + (-(start + len(values))) % cr) - (start - start % cr)
        try:
            ensure_space(self.path, span * (values.nbytes // max(1, len(values))))
        except OSError as exc:
            raise self._fail(exc, work_ok=True) from exc
        self._mut += 1
        self._work_unsynced = True
        try:
            head = direct_write(ds, start, values)
        except Exception as exc:  # rows past the last commit may be half written: recover at close
            raise self._fail(exc) from exc
        head["src"] = os.path.basename(self._work)
        try:
            self._journal.append(head)
        except OSError as exc:  # the rows are not journaled, hence not committed: the copy is fine
            raise self._fail(exc, work_ok=True) from exc
        lo, hi = self._ref_rows.get(name, (start, start))
        self._ref_rows[name] = (min(lo, start), max(hi, start + len(values)))

    def _do_write(self, name: str, start: int, values: np.ndarray) -> None:
        ds = self._ds(name)
        if ds.dtype.kind == "O":
            values = np.asarray(values).astype(object)
        elif values.dtype.kind == "b":
            values = values.astype(np.int8)
        ds[start : start + len(values)] = values

    def _drop_raw(self) -> None:
        for r in self._raw.values():
            if r is not None:
                r.close()
        self._raw = {}

    def _raw_reader(self, name: str) -> RawH5Rows | None:
        if self._mut != self._raw_mut:  # the working copy changed: HDF5 may hold unwritten chunks
            self._drop_raw()
            if self._journal is not None:
                self.h5.flush()
            self._raw_mut = self._mut
        if name not in self._raw:
            self._raw[name] = RawH5Rows.build(self._ds(name), self.h5.filename)
        return self._raw[name]

    def read(self, name: str, sel: slice | np.ndarray = slice(None)) -> np.ndarray:
        ds = self._ds(name)
        raw = self._raw_reader(name) if ds.dtype.kind != "O" and not self._shared else None
        return read_array(ds, raw, name, sel)

    # -- commit records ----------------------------------------------------
    def _recs(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for k in self._ds(_META).attrs:
            if ":" in k:
                r, s = k.split(":", 1)
                out.setdefault(r, []).append(int(s))
        return out

    def list_regions(self) -> list[str]:
        return sorted(self._recs())

    def list_records(self, region: str) -> list[int]:
        return sorted(self._recs().get(region, []))

    def read_record(self, region: str, seq: int) -> bytes | None:
        v = self._ds(_META).attrs.get(f"{region}:{seq:012d}")
        if v is None:
            return None
        return v.encode() if isinstance(v, str) else bytes(v)

    def write_record(self, region: str, seq: int, payload: bytes) -> None:
        if f"{region}:{seq:012d}" in self._ds(_META).attrs:
            raise FileExistsError(f"commit record {region}/{seq} of {self.path!r} already exists")
        self._check_writable()
        if (
            self._journal is not None
        ):  # chunks HDF5 caches go to the file at each commit: free-space
            try:  # checks see them, and close() has little left to write (a full disk is met here)
                self.h5.flush()
            except (OSError, RuntimeError) as exc:
                raise self._fail(exc) from exc
        self._sync_work()  # referenced rows are durable before the record that commits them
        self._mutate({"op": "record", "key": f"{region}:{seq:012d}"}, bytes(payload))
        self.flush()

    def delete_record(self, region: str, seq: int) -> None:
        key = f"{region}:{seq:012d}"
        if key in self._ds(_META).attrs:
            self._mutate({"op": "delrecord", "key": key})

    # -- tables and blobs --------------------------------------------------
    def write_table(self, name: str, columns: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        heads, parts = [], []
        for col, values in columns.items():
            m, raw = _pack(values)
            heads.append({"name": col, "nbytes": len(raw), **m})
            parts.append(bytes(raw))
        self._mutate({"op": "table", "name": name, "meta": meta, "columns": heads}, b"".join(parts))

    def _do_write_table(
        self, name: str, columns: dict[str, np.ndarray], meta: dict[str, Any]
    ) -> None:
        import h5py

        tables = self.h5.require_group("_tables")
        if name in tables:
            del tables[name]
        g = tables.create_group(name)
        g.attrs["embstore_table"] = json.dumps(meta)
        for i, (col, values) in enumerate(columns.items()):
            arr, extra = tablecodec.storable_column(values, bool_as_int8=True)
            key = tablecodec.column_key(i)
            if arr.dtype.kind == "U":
                ds = g.create_dataset(key, data=arr.astype(object), dtype=h5py.string_dtype())
            else:
                ds = g.create_dataset(key, data=arr)
            ds.attrs.update({"column": col, **extra})

    def read_table(self, name: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        g = self.h5.get("_tables")
        if g is None or name not in g:
            return None
        g = g[name]
        meta = json.loads(g.attrs["embstore_table"])
        cols: dict[str, np.ndarray] = {}
        for i in range(len(meta["columns"])):
            ds = g[tablecodec.column_key(i)]
            v = tablecodec.column_from_storage(
                ds.asstr()[:] if ds.dtype.kind == "O" else ds[:], ds.attrs
            )
            col = ds.attrs["column"]
            cols[col.decode() if isinstance(col, bytes) else col] = v
        return cols, meta

    def list_tables(self) -> list[str]:
        g = self.h5.get("_tables")
        return sorted(g.keys()) if g is not None else []

    def write_blob(self, name: str, data: bytes) -> None:
        self._mutate({"op": "blob", "name": name}, bytes(data))

    def read_blob(self, name: str) -> bytes | None:
        g = self.h5.get("_blobs")
        if g is None or name not in g:
            return None
        return tablecodec.blob_bytes(g[name][:])

    # -- locking -----------------------------------------------------------
    def make_lock(self, region: str) -> Any:
        return _SessionLock(self.path + ".lock", f"store {self.path!r}", self)
