"""Files of the HDF5 backend: open them, fold a journal into the committed file, trim.

Helpers of :class:`~embstore.store.backends.hdf5_backend.HDF5Backend` (see
its module docstring for the protocol). :func:`recover` replays the valid
prefix of a dead writer's journal onto a copy of the committed ``run.h5``
and renames the copy into place; journal references (see
:mod:`~embstore.store.backends.h5direct`) are read from the dead writer's
working copy, and a reference whose chunk fails its crc32c ends the replay
unless a later *rebase* entry of the journal rewrites that chunk whole.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from typing import TYPE_CHECKING, Any

from ...errors import NotAStoreError, ReadOnlyStoreError, StoreError, StoreLockedError
from .h5journal import (
    Journal,
    ensure_space,
    fault_point,
    fsync_dir,
    fsync_path,
    is_disk_full,
    read_journal,
)

if TYPE_CHECKING:
    from .hdf5_backend import HDF5Backend

__all__ = [
    "PlainH5",
    "chain",
    "disk_full",
    "open_nc",
    "rebased_chunks",
    "recover",
    "trim_to_last_record",
    "unlink",
]

log = logging.getLogger("embstore.store.backends.hdf5_backend")

META = "_embstore"
GEN = "generation"


def disk_full(path: str, exc: BaseException) -> StoreError:
    return StoreError(
        f"the disk is full while writing HDF5 store {path!r} ({exc}). Rows committed before this error are "
        "safe: the committed file is untouched and they are in its journal. Free disk space, then reopen "
        "the store (the journal is folded in on open)"
    )


class PlainH5:
    """A read-only h5py file in the place of an h5netcdf one (``_h5file``, ``close``)."""

    def __init__(self, f: Any) -> None:
        self._h5file = f

    def close(self) -> None:
        self._h5file.close()


def open_nc(path: str, mode: str) -> Any:
    """Open ``path``: read-only with h5py (committed files), else with h5netcdf, unlocked.

    Errors become embstore errors: locked, disk full, not HDF5, damaged.
    """
    from ..._optional import attempt_import

    h5netcdf = attempt_import("h5netcdf")
    try:
        if mode == "r":  # committed files are never written in place: no lock needed to read
            import h5py

            try:  # reads need no netCDF layer (it costs 11 ms per open)
                return PlainH5(h5py.File(path, "r"))  # HDF5's default locking, as xarray's readers
            except (
                OSError
            ) as exc:  # this process still has the file open from a writer's unlocked copy
                if "locking flag" not in str(exc):
                    raise
                return PlainH5(h5py.File(path, "r", locking=False))
        # private working copies and temporary files: no HDF5 file lock (the append lock guards
        # them), so the file renamed into place carries no lock of a reader still open in this process
        return h5netcdf.File(path, mode, locking=False)
    except (BlockingIOError, OSError) as exc:
        msg = str(exc).lower()
        if "unable to lock file" in msg or isinstance(exc, BlockingIOError):
            raise StoreLockedError(
                f"HDF5 file {path!r} is open by another process ({exc}); close that writer first"
            ) from exc
        if mode == "w":
            if is_disk_full(exc):
                raise disk_full(path, exc) from exc
            raise StoreError(
                f"cannot create HDF5 file {path!r} ({exc}); check the directory and permissions"
            ) from exc
        if "signature not found" in msg:
            raise NotAStoreError(
                f"{path!r} is not an HDF5 file (no HDF5 signature): it is damaged or was never an "
                "embstore .h5 store; restore a copy or pass the right path"
            ) from exc
        raise NotAStoreError(
            f"HDF5 file {path!r} is damaged and cannot be read ({exc}); it may have been truncated or "
            "overwritten by another program. Restore a copy or re-extract"
        ) from exc
    except (KeyError, RuntimeError, ValueError) as exc:
        raise NotAStoreError(
            f"HDF5 file {path!r} is damaged and cannot be read ({exc}). Restore a copy or re-extract"
        ) from exc


def recover(cls: type[HDF5Backend], path: str) -> bool:
    """Replay the journal onto a copy of the committed file and swap it in.

    Returns True if a journal was folded in. Caller holds the lock.
    """
    wal = cls._wal(path)
    if not os.path.exists(wal):
        return False
    base, entries = read_journal(wal)
    nc = cls._open_committed(path)
    try:
        gen = cls._generation(nc._h5file)
    finally:
        nc.close()
    first = next(entries, None) if base == gen else None
    if first is None:  # stale (already folded in), empty, or torn before its first entry
        list(entries)
        unlink(wal)
        return False
    tmp = cls._tmp(path, "recover")
    applied = 0
    rebased = rebased_chunks(wal)
    try:
        ensure_space(path, os.path.getsize(path) + os.path.getsize(wal))
        fault_point("copy")
        shutil.copyfile(path, tmp)
        nc = cls._open_nc(tmp, "a")
        try:
            nc._h5file[META].attrs[GEN] = uuid.uuid4().hex
            b = cls(tmp, nc, "replay")
            b._rebased = rebased
            for header, payload in chain(first, entries):
                b._entry = applied
                try:
                    b._apply(header, payload)
                except Exception as exc:
                    if is_disk_full(exc):
                        raise
                    log.warning(
                        "journal of %s: entry %d (%s) does not apply (%s); stopping there",
                        path,
                        applied,
                        header.get("op"),
                        exc,
                    )
                    break
                applied += 1
            b._trim_to_last_record()
        finally:
            nc.close()
        fsync_path(tmp)
        fault_point("replace")
        os.replace(tmp, path)
        fsync_dir(path)
        fault_point("unlink")
        unlink(wal)
        for src in b._srcs:  # the dead writer's working copy: folded in
            unlink(src)
    except BaseException as exc:
        unlink(tmp)
        if is_disk_full(exc):
            raise disk_full(path, exc) from exc
        if isinstance(exc, (OSError, RuntimeError)):
            raise StoreError(
                f"could not fold the journal {wal!r} into {path!r} ({exc}); the committed file is intact. "
                "Fix the cause and reopen"
            ) from exc
        raise
    log.warning(
        "recovered %d journaled operations of a writer of %s that did not close", applied, path
    )
    return True


def trim_to_last_record(self: HDF5Backend) -> None:
    """Cut row arrays grown ahead of the last commit (as a clean close does); best effort."""
    from ..commit import MAIN_REGION, CommitRecord

    try:
        schema = self.read_attrs().get("embstore") or {}
        if schema.get("n_prealloc"):
            return
        rec = None
        for seq in reversed(self.list_records(MAIN_REGION)):
            rec = CommitRecord.decode(self.read_record(MAIN_REGION, seq))
            if rec is not None:
                break
        if rec is None:
            return
        n = rec.start + rec.n
        for name, var in list(self.nc.variables.items()):
            if (
                var.dimensions
                and var.dimensions[0] == schema["row_dim"]
                and self._ds(name).shape[0] > n
            ):
                self._do_resize(name, n)
        for name in schema.get("ragged", {}):
            tot = int(rec.ragged.get(name, 0))
            if self.has_array(name) and self._ds(name).shape[0] > tot:
                self._do_resize(name, tot)
    except Exception as exc:
        log.warning("could not trim %s to its last commit (%s)", self.path, exc)


def rebased_chunks(wal: str) -> dict[tuple[str, int], int]:
    """(array, first row of chunk) -> index of the last rebase entry rewriting it."""
    out: dict[tuple[str, int], int] = {}
    _, entries = read_journal(wal)
    for i, (h, _payload) in enumerate(entries):
        if h.get("rebase"):
            start, n = int(h["start"]), int(h["shape"][0])
            # a rebase is whole chunks (up to the array's end): each chunk's first row
            step = max(1, int(h.get("chunk_rows", n) or n))
            for k in range(start, start + n, step):
                out[(h["name"], k)] = i
    return out


def chain(first: Any, rest: Any) -> Any:
    yield first
    yield from rest


def unlink(path: str) -> int:
    try:
        os.unlink(path)
        return 1
    except FileNotFoundError:
        return 0


def begin_session(self: HDF5Backend) -> None:
    """Start a writer session: working copy + journal (first mutation only)."""
    if self._journal is not None:
        return
    if self.mode == "r":
        raise ReadOnlyStoreError(f"{self.path!r} is open read-only; open it with mode='a' to write")
    path = self.path
    self._close_nc()
    if os.path.exists(self._wal(path)):  # a journal we did not see at open (force=True takeover)
        self._recover(path)
    work = self._tmp(path, "work")
    wnc = None
    try:
        nc = self._open_committed(path)
        try:
            gen = self._generation(nc._h5file)
        finally:
            nc.close()
        ensure_space(path, os.path.getsize(path))
        fault_point("copy")
        shutil.copyfile(path, work)
        wnc = self._open_nc(work, "a")
        wnc._h5file[META].attrs[GEN] = (
            uuid.uuid4().hex
        )  # differs from the base: marks the journal stale
        self._journal = Journal.create(self._wal(path), gen)
    except BaseException as exc:
        if wnc is not None:
            try:
                wnc.close()
            except Exception:
                pass
        unlink(work)
        self._reopen_committed(close_current=False)
        if is_disk_full(exc):
            raise disk_full(path, exc) from exc
        if isinstance(exc, (OSError, RuntimeError)):
            raise StoreError(f"cannot start writing {path!r} ({exc})") from exc
        raise
    self.nc, self.h5, self._work = wnc, wnc._h5file, work
    self._ref_rows, self._last = {}, {}
    self._drop_raw()
    from .hdf5_backend import _SESSIONS

    _SESSIONS[os.path.realpath(path)] = self
