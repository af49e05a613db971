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
from typing import Any

import numpy as np

from ..errors import DamagedStoreError
from .backends.base import fill_value_for
from .catalog import load_catalog, owner_pid, physical_name, update_catalog

__all__ = [
    "list_tables",
    "read_blob",
    "read_table",
    "read_with_staged",
    "remove_orphans",
    "roll_forward",
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


def apply_staged(store: Any, entries: dict[str, dict[str, Any]]) -> None:
    """Copy staged coordinate versions into their coordinate arrays (step 3).

    Idempotent: a writer that was killed in the middle repeats it.
    """
    be = store._backend
    for cname, ent in entries.items():
        stage = ent["array"]
        shape, dtype, _ = be.array_info(stage)
        for lo, hi in ent["ranges"]:
            hi = min(hi, shape[0])
            if hi <= lo:
                continue
            vals = be.read(stage, slice(lo, hi))
            if not be.has_array(cname):
                store._ensure_array(cname, (), max(hi, store._schema.n_prealloc), dtype=dtype)
            if be.array_info(cname)[0][0] < hi:
                be.resize(cname, hi)
            be.write(cname, lo, vals)
    be.flush()


def roll_forward(store: Any) -> None:
    """Finish a ``set_coords`` whose writer was killed after its commit (steps 3-5)."""
    rec = store._own
    entries = dict(getattr(rec, "staged", {}) or {})
    if not entries:
        return
    log.warning("finishing an interrupted set_coords of %s on %s", sorted(entries), store.path)
    apply_staged(store, entries)
    store._commit(staged={}, visible=False)
    for ent in entries.values():
        store._backend.delete_array(ent["array"])


def _referenced(store: Any) -> tuple[set[str], set[str], set[str]]:
    """Physical names that commit and catalog records refer to (staged, tables, blobs)."""
    staged = {
        ent["array"]
        for rec in store._records.values()
        for ent in (getattr(rec, "staged", {}) or {}).values()
    }
    cat = load_catalog(store._backend, strict=False)
    return staged, set(cat.tables.values()), {b["key"] for b in cat.blobs.values()}


def remove_orphans(store: Any, pid: int | None = None) -> list[str]:
    """Delete versions written but never committed (all, or only those of a dead ``pid``).

    Returns the removed physical names.
    """
    be = store._backend
    staged, tables, blobs = _referenced(store)
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
