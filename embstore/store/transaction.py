"""Copy-on-write for non-append writes: coordinates, tables, blobs, skipped rows.

Appends already follow the commit protocol (:mod:`embstore.store.commit`):
data first, then one commit record. This module brings the other writes
under the same rule: **new data is written beside the old, one atomic record
makes it visible, and the old data is removed only after that record.**

Coordinates (``set_coords``)
    1. the new column is written to a hidden array
       ``_embstore/stage/<name>@<pid>-<token>``;
    2. a commit record of the writer's region lists it under ``staged``
       (``{name: {"array": ..., "ranges": [[lo, hi]]}}``): from now on
       readers take the rows in those ranges from the staged array;
    3. the column is copied into the coordinate array (only the writer's own
       region when it is a region writer);
    4. a second record drops the ``staged`` entry (same visible state, so
       :attr:`embstore.Store.version_token` does not change);
    5. the staged array is deleted.

    A kill before 2 leaves an orphan (removed by the next writer or
    ``embstore repair``); a kill after 2 is rolled forward by the next
    writer (:func:`roll_forward`); readers are right either way.

Tables and blobs
    see :mod:`embstore.store.catalog`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DamagedStoreError, DTypeMismatchError, ValidationError
from .backends.base import fill_value_for
from .batch import kind_compatible
from .buffer import ChunkBuffer
from .catalog import load_catalog, owner_pid, physical_name, update_catalog
from .commit import MAIN_REGION, CommitRecord
from .ragged import RAGGED_SUFFIXES
from .schema import coerce_coord
from .validation import check_name

if TYPE_CHECKING:
    from .backends import Backend
    from .writer import StoreWriter

__all__ = [
    "list_tables",
    "read_blob",
    "read_table",
    "read_with_staged",
    "remove_orphans",
    "roll_forward",
    "set_coords",
    "stage_name",
    "write_blob",
    "write_table",
]

log = logging.getLogger(__name__)

STAGE = "_embstore/stage"


def stage_name(name: str) -> str:
    """Physical name of a new staged version of coordinate ``name``."""
    return f"{STAGE}/{name}@{os.getpid()}-{uuid.uuid4().hex[:12]}"


# ----------------------------------------------------------------- coordinates
def read_with_staged(
    backend: Any, name: str, ranges: list[tuple[int, int]], staged: list[dict[str, Any]]
) -> np.ndarray:
    """Committed rows of coordinate ``name``, with staged versions overlaid.

    Parameters
    ----------
    backend : Backend
        The store's backend.
    name : str
        Coordinate name.
    ranges : list of (int, int)
        Committed row ranges, in order.
    staged : list of dict
        ``{"array": physical name, "ranges": [[lo, hi], ...]}`` entries of
        the commit records that stage a new version of ``name``.
    """
    pos = (
        np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in ranges])
        if ranges
        else np.zeros(0, np.int64)
    )
    dtype = backend.array_info(staged[0]["array"])[1]
    out = np.full(len(pos), fill_value_for(dtype), dtype=dtype)
    if backend.has_array(name) and len(pos):
        n = backend.array_info(name)[0][0]
        have = pos < n
        if have.any():
            base = backend.read(name, pos[have])
            if dtype.kind in "UT" or base.dtype.kind in "UT":
                out = (
                    out.astype(np.result_type(out.dtype, base.dtype))
                    if base.dtype.kind in "UT"
                    else out
                )
            out[have] = base
    for ent in staged:
        sn = backend.array_info(ent["array"])[0][0]
        for lo, hi in ent["ranges"]:
            m = (pos >= lo) & (pos < min(hi, sn))
            if m.any():
                vals = backend.read(ent["array"], pos[m])
                if (
                    vals.dtype.kind in "UT"
                    and out.dtype.kind in "UT"
                    and vals.dtype.itemsize > out.dtype.itemsize
                ):
                    out = out.astype(vals.dtype)
                out[m] = vals
    return out


def apply_staged(writer: StoreWriter, entries: dict[str, dict[str, Any]]) -> None:
    """Copy staged coordinate versions into their coordinate arrays (step 3).

    Idempotent: a writer that was killed in the middle repeats it.
    """
    be = writer.backend
    for cname, ent in entries.items():
        stage = ent["array"]
        shape, dtype, _ = be.array_info(stage)
        for lo, hi in ent["ranges"]:
            hi = min(hi, shape[0])
            if hi <= lo:
                continue
            vals = be.read(stage, slice(lo, hi))
            if not be.has_array(cname):
                writer.ensure_array(cname, (), max(hi, writer.schema.n_prealloc), dtype=dtype)
            if be.array_info(cname)[0][0] < hi:
                be.resize(cname, hi)
            be.write(cname, lo, vals)
    be.flush()


def roll_forward(writer: StoreWriter) -> None:
    """Finish a ``set_coords`` whose writer was killed after its commit (steps 3-5)."""
    rec = writer.own
    entries = dict(getattr(rec, "staged", {}) or {})
    if not entries:
        return
    log.warning("finishing an interrupted set_coords of %s on %s", sorted(entries), writer.path)
    apply_staged(writer, entries)
    writer.commit(staged={}, visible=False)
    for ent in entries.values():
        writer.backend.delete_array(ent["array"])


def set_coords(writer: StoreWriter, values: Mapping[str, Any], ids: Sequence[Any] | None) -> None:
    """Steps 1-5 of a coordinate update by ``writer`` (its buffered rows already committed).

    Backends without :attr:`~embstore.store.backends.base.Backend.staged_arrays`
    write the new values in place and commit once.
    """
    sch, be, region = writer.schema, writer.backend, writer.region
    total = writer.disk_end if region == MAIN_REGION else max(sch.n_prealloc, writer.disk_end)
    # a region writer touches only its own rows (and so only its own chunks)
    lo, hi = (
        (0, total)
        if region == MAIN_REGION
        else (writer.rstart, min(int(writer.rstop or total), total))
    )
    if ids is None:
        own = writer.own
        pos = (
            writer.reader.positions()
            if region == MAIN_REGION
            else np.arange(own.start, own.start + own.n)
        )
    else:
        id_list, loc = writer.reader.lookup(ids)
        pos = writer.reader.positions()[loc]
        outside = (pos < lo) | (pos >= hi)
        if outside.any():
            raise ValidationError(
                f"set_coords: ids {id_list[outside][:5].tolist()} are rows of another region; a region "
                f"writer ({lo}, {hi}) sets coordinates of its own rows only (open that region, or set them "
                "with a plain writer after the region writers have closed)"
            )
    reserved = set(sch.variables) | set(sch.ragged) | {sch.row_dim, sch.id_name}
    for var in sch.ragged:
        reserved |= {var + s for s in RAGGED_SUFFIXES}
    prepared = {}
    for cname, vals in values.items():
        check_name("coordinate", cname, reserved)
        arr = coerce_coord(cname, vals, len(pos))
        stored = writer.trailing_dtype(cname)
        if stored is not None and not kind_compatible(stored, arr.dtype):
            raise DTypeMismatchError(
                f"coordinate {cname!r} holds {stored} values; got {arr.dtype}. Use a new name for a new type"
            )
        prepared[cname] = arr
    if sch.chunk_rows is None and prepared:
        raise ValidationError("set_coords needs at least one appended row")
    fulls: dict[str, np.ndarray] = {}
    for cname, arr in prepared.items():
        if be.has_array(cname):
            full = be.read(cname, slice(0, total))
            if len(full) < total:
                fill = np.full(total - len(full), fill_value_for(full.dtype), full.dtype)
                full = np.concatenate([full, fill])
            if full.dtype.kind == "f":
                arr = arr.astype(np.float64)
        else:
            full = np.full(total, fill_value_for(arr.dtype), dtype=arr.dtype)
        if full.dtype.kind in "UT" and arr.dtype.kind in "UT":
            full = full.astype(arr.dtype)
        full[pos] = arr
        fulls[cname] = full
        if cname not in writer.coords_known:
            writer.coords_known.append(cname)
    if be.staged_arrays:  # copy-on-write: stage, commit, copy in, commit, clean up
        entries: dict[str, Any] = {}
        for cname, full in fulls.items():
            sname = stage_name(cname)
            dt = "str" if full.dtype.kind in "UOT" else full.dtype.name
            be.create_array(sname, (total,), writer.row_chunk(cname), dt, (sch.row_dim,))
            be.write(sname, 0, full)
            entries[cname] = {"array": sname, "ranges": [[lo, hi]]}
        be.flush()
        writer.commit(staged=entries)  # the new values are visible from here on
        apply_staged(writer, entries)
        writer.commit(staged={}, visible=False)
        for ent in entries.values():
            be.delete_array(ent["array"])
    else:  # backends without hidden arrays write in place (see Backend.staged_arrays)
        for cname, full in fulls.items():
            writer.ensure_array(cname, (), max(total, sch.n_prealloc), dtype=full.dtype)
            if be.array_info(cname)[0][0] < hi:
                be.resize(cname, hi)
            be.write(cname, lo, full[lo:hi])
        be.flush()
        writer.commit()
    for (
        cname,
        full,
    ) in fulls.items():  # keep the write buffer consistent with what is now on disk
        buf = writer.row_bufs.get(cname)
        ch = writer.row_chunk(cname)
        if buf is None and writer.row_bufs:
            buf = ChunkBuffer(writer.disk_end - writer.disk_end % ch, ch)
            writer.row_bufs[cname] = buf
        if buf is not None:
            nb = ChunkBuffer(buf.start, ch)
            if buf.start < writer.disk_end:
                nb.append(full[buf.start : writer.disk_end])
            writer.row_bufs[cname] = nb
    writer.reader.forget()


def _referenced(
    backend: Backend, records: Mapping[str, CommitRecord]
) -> tuple[set[str], set[str], set[str]]:
    """Physical names that commit and catalog records refer to (staged, tables, blobs)."""
    staged = {
        ent["array"]
        for rec in records.values()
        for ent in (getattr(rec, "staged", {}) or {}).values()
    }
    cat = load_catalog(backend, strict=False)
    return staged, set(cat.tables.values()), {b["key"] for b in cat.blobs.values()}


def remove_orphans(
    backend: Backend, records: Mapping[str, CommitRecord], pid: int | None = None
) -> list[str]:
    """Delete versions written but never committed (all, or only those of a dead ``pid``).

    Parameters
    ----------
    backend : Backend
        The store's backend.
    records : dict of str to CommitRecord
        The latest commit record of each region (their staged arrays are kept).
    pid : int, optional
        Only versions written by this (dead) process.

    Returns
    -------
    list of str
        The removed physical names.
    """
    be = backend
    staged, tables, blobs = _referenced(backend, records)
    removed: list[str] = []

    def mine(phys: str) -> bool:
        p = owner_pid(phys.rsplit("/", 1)[-1])
        return p is not None and (pid is None or p == pid)

    for s in be.list_staged():
        if s not in staged and mine(s):
            be.delete_array(s)
            removed.append(s)
    for t in be.list_tables():
        if t not in tables and mine(t) and be.delete_table(t):
            removed.append(f"_tables/{t}")
    for b in be.list_blobs():
        if b not in blobs and mine(b) and be.delete_blob(b):
            removed.append(f"_blobs/{b}")
    return removed


# ---------------------------------------------------------------------- tables
def write_table(
    backend: Any, name: str, columns: dict[str, np.ndarray], meta: dict[str, Any]
) -> None:
    """Write a new version of table ``name`` and commit it in the catalog; delete the old one."""
    phys = physical_name(name)
    backend.write_table(phys, columns, meta)
    backend.flush()

    def change(cat: Any) -> None:
        cat.tables[name] = phys

    _new, old = update_catalog(backend, change)
    prev = old.tables.get(name) or name  # a legacy table of that name goes too
    if prev != phys:
        backend.delete_table(prev)


def read_table(backend: Any, name: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """Columns and meta of the committed version of table ``name`` (None if absent)."""
    cat = load_catalog(backend)
    phys = cat.tables.get(name)
    if phys is None:
        return backend.read_table(name) if "@" not in name else None  # legacy store
    got = backend.read_table(phys)
    if got is None:
        raise DamagedStoreError(
            f"table {name!r} of {backend.path!r} is committed as {phys!r}, which is missing; "
            "run `embstore check` (a backup or `embstore repair` can restore an older version)"
        )
    return got


def list_tables(backend: Any) -> list[str]:
    """Committed table names (catalog entries and tables of legacy stores)."""
    cat = load_catalog(backend)
    names = set(cat.tables)
    names |= {t for t in backend.list_tables() if "@" not in t}
    return sorted(names)


# ----------------------------------------------------------------------- blobs
def write_blob(backend: Any, name: str, data: bytes) -> None:
    """Write a new version of blob ``name`` with its SHA-256, commit it, delete the old one."""
    phys = physical_name(name)
    backend.write_blob(phys, data)
    backend.flush()
    entry = {"key": phys, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}

    def change(cat: Any) -> None:
        cat.blobs[name] = dict(entry)

    _new, old = update_catalog(backend, change)
    prev = old.blobs.get(name, {}).get("key") or name  # a legacy blob of that name goes too
    if prev != phys:
        backend.delete_blob(prev)


def read_blob(backend: Any, name: str) -> bytes | None:
    """Bytes of the committed version of blob ``name``, checksum verified (None if absent).

    Raises
    ------
    DamagedStoreError
        The blob is missing or its bytes do not match the committed SHA-256.
    """
    cat = load_catalog(backend)
    ent = cat.blobs.get(name)
    if ent is None:
        return backend.read_blob(name) if "@" not in name else None  # legacy store, no checksum
    data = backend.read_blob(ent["key"])
    if data is None:
        raise DamagedStoreError(
            f"blob {name!r} of {backend.path!r} is committed as {ent['key']!r}, which is missing; run `embstore check`"
        )
    if len(data) != ent.get("size", len(data)) or hashlib.sha256(data).hexdigest() != ent["sha256"]:
        raise DamagedStoreError(
            f"blob {name!r} of {backend.path!r} fails its SHA-256 check ({len(data)} bytes read, "
            f"{ent.get('size')} committed): it was changed or damaged on disk. Write it again "
            "(e.g. rebuild the index) or restore it from a backup"
        )
    return data
