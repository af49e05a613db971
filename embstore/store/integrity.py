"""Verify a store (``embstore check``) and roll it back to its last valid commit (``embstore repair``).

:func:`check` reads everything a store promises and reports, without
changing anything:

* commit and catalog records that do not decode (damaged or changed on disk);
* committed rows whose chunks of a variable, the ids or ragged tokens are
  missing or cut short (naming the array and the rows);
* tables and blobs that are missing or fail their SHA-256 check;
* duplicate ids;
* orphans: versions written but never committed, and temporary files (a
  killed writer's leftovers; harmless, removed by :func:`repair`).

:func:`repair` takes the store's plain append lock (it refuses while any
writer is alive), moves unreadable records to ``_embstore/quarantine/``
(never deleting them), rebuilds missing ``main`` commit records from the
stored ids, finishes an interrupted ``set_coords`` and removes orphans. It
never deletes a chunk of a committed row.

Examples
--------
>>> import numpy as np, tempfile, os
>>> from embstore import Store
>>> p = os.path.join(tempfile.mkdtemp(), "r.zarr")
>>> with Store.create(p, variables={"e": ("d",)}) as st:
...     st.append([1, 2], {"e": np.zeros((2, 3))})
>>> check(p).ok
True
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from ..errors import EmbstoreError, StoreLockedError
from .backends import backend_class
from .catalog import CATALOG, Catalog
from .commit import MAIN_REGION, CommitRecord
from .schema import Schema

__all__ = ["Report", "check", "repair"]

_BLOCK = 4096


@dataclasses.dataclass
class Report:
    """What :func:`check` found or :func:`repair` did.

    Attributes
    ----------
    path : str
        The store.
    rows : int
        Committed rows.
    problems : list of str
        Damage (each names what and where).
    orphans : list of str
        Uncommitted leftovers (harmless).
    actions : list of str
        What :func:`repair` changed.
    """

    path: str
    rows: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)
    orphans: list[str] = dataclasses.field(default_factory=list)
    actions: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is damaged (orphans are not damage)."""
        return not self.problems

    def lines(self) -> list[str]:
        """Human-readable summary, one finding per line."""
        out = [
            f"{self.path}: {self.rows} committed rows, "
            + ("OK" if self.ok else f"{len(self.problems)} problem(s)")
        ]
        out += [f"DAMAGED: {p}" for p in self.problems]
        out += [f"orphan: {o}" for o in self.orphans]
        out += [f"repaired: {a}" for a in self.actions]
        return out


def _open_backend(
    path: str, mode: str, storage_options: dict[str, Any] | None
) -> tuple[Any, Schema]:
    bcls = backend_class(path)
    backend = bcls.open(path, mode, storage_options)
    attrs = backend.read_attrs()
    from ..errors import NotAStoreError

    if "embstore" not in attrs:
        backend.close()
        raise NotAStoreError(
            f"{path!r} has no embstore schema in its attributes; it was not made by Store.create"
        )
    return backend, Schema.from_json(attrs["embstore"], repr(path))


def _bad_records(backend: Any) -> list[tuple[str, int]]:
    bad = []
    for region in backend.list_regions():
        dec = Catalog.decode if region == CATALOG else CommitRecord.decode
        for seq in backend.list_records(region):
            if dec(backend.read_record(region, seq)) is None:
                bad.append((region, seq))
    return bad


def _temp_files(backend: Any) -> list[str]:
    root = getattr(backend, "root", None)
    if getattr(backend, "fs", True) is not None or root is None:
        return []
    return [os.path.join(d, f) for d, _s, fs in os.walk(root) for f in fs if f.endswith(".tmp")]


def check(path: str, storage_options: dict[str, Any] | None = None) -> Report:
    """Verify every commit record, committed row, table and blob of a store.

    Parameters
    ----------
    path : str
        The store.
    storage_options : dict, optional
        fsspec options for URLs.

    Returns
    -------
    Report
        ``report.ok`` is False when anything is damaged.
    """
    from . import transaction
    from .core import Store

    path = str(path)
    rep = Report(path)
    backend, schema = _open_backend(path, "r", storage_options)
    try:
        for region, seq in _bad_records(backend):
            rep.problems.append(f"record {region}/{seq} is unreadable (damaged or changed on disk)")
        rep.orphans += _temp_files(backend)
    finally:
        backend.close()
    try:
        st = Store.open(path, storage_options=storage_options)
    except EmbstoreError as exc:
        rep.problems.append(f"cannot open: {exc}")
        return rep
    with st:
        rep.rows = len(st)
        be = st._backend
        rs = st._reader.ranges()
        strict = [v for v in list(schema.variables) + [schema.id_name] if be.has_array(v)]
        for name in strict:
            for a, b in rs:
                for lo in range(a, b, _BLOCK):
                    hi = min(b, lo + _BLOCK)
                    try:
                        be.read(name, slice(lo, hi))
                    except Exception as exc:  # every failure is a finding
                        rep.problems.append(f"array {name!r} rows {lo}..{hi - 1}: {exc}")
            raw = be._raw(name) if hasattr(be, "_raw") else None
            if (
                raw is not None
            ):  # every chunk file whole, with its crc32c (also the last, partial one)
                cr = raw.chunk_rows
                chunks = sorted({c for a, b in rs for c in range(a // cr, -(-b // cr))})
                for c in chunks:
                    msg = raw.verify_chunk(c)
                    if msg and msg not in " ".join(rep.problems):
                        rep.problems.append(msg)
        for var in schema.ragged:
            if not be.has_array(var):
                continue
            tot = sum(int(r.ragged.get(var, 0)) for r in st._reader.records.values())
            try:
                n = be.array_info(var)[0][0]
                if n < tot:
                    rep.problems.append(f"ragged {var!r} holds {n} tokens; {tot} are committed")
                for lo in range(0, min(n, tot), 16 * _BLOCK):
                    be.read(var, slice(lo, min(n, tot, lo + 16 * _BLOCK)))
            except Exception as exc:
                rep.problems.append(f"ragged {var!r}: {exc}")
        try:
            ids = st.ids
            if len(np.unique(ids)) != len(ids):
                rep.problems.append(
                    f"{len(ids) - len(np.unique(ids))} duplicate id(s) among committed rows"
                )
        except Exception as exc:
            rep.problems.append(f"ids: {exc}")
        for cname in st.coord_names:
            try:
                st._reader.coord_values(cname)
            except Exception as exc:
                rep.problems.append(f"coordinate {cname!r}: {exc}")
        try:
            cat = transaction.load_catalog(be, strict=False)
            for t in transaction.list_tables(be):
                try:
                    if transaction.read_table(be, t) is None:
                        rep.problems.append(f"table {t!r} is missing")
                except Exception as exc:
                    rep.problems.append(f"table {t!r}: {exc}")
            for blob in cat.blobs:
                try:
                    transaction.read_blob(be, blob)
                except Exception as exc:
                    rep.problems.append(f"blob {blob!r}: {exc}")
            staged, tables, blobs = transaction._referenced(be, st._reader.records)
            rep.orphans += [s for s in be.list_staged() if s not in staged]
            rep.orphans += [
                f"_tables/{t}" for t in be.list_tables() if "@" in t and t not in tables
            ]
            rep.orphans += [f"_blobs/{b}" for b in be.list_blobs() if "@" in b and b not in blobs]
        except Exception as exc:
            rep.problems.append(f"catalog: {exc}")
    return rep


def _rebuild_main(backend: Any, schema: Schema) -> CommitRecord | None:
    """A main commit record for the rows whose ids are present (None: nothing to rebuild)."""
    idn = schema.id_name
    if not backend.has_array(idn):
        return None
    ids = backend.read(idn, slice(schema.n_prealloc, None))
    if len(ids) == 0:
        return None
    fill = ids == ("" if ids.dtype.kind in "UT" else -1)
    n = int(np.argmax(fill)) if fill.any() else len(ids)
    ragged = {}
    for var in schema.ragged:
        off, cnt = var + "_offset", var + "_n"
        if n and backend.has_array(off) and backend.has_array(cnt):
            p = schema.n_prealloc + n - 1
            ragged[var] = int(backend.read(off, slice(p, p + 1))[0]) + int(
                backend.read(cnt, slice(p, p + 1))[0]
            )
    reserved = set(schema.variables) | set(schema.ragged) | {idn}
    for var in schema.ragged:
        reserved |= {var + s for s in ("_offset", "_n", "_h", "_w")}
    group = getattr(backend, "group", None)
    coords = []
    if group is not None:
        coords = sorted(
            k for k in group.array_keys() if k not in reserved and not k.startswith("_")
        )
    return CommitRecord(MAIN_REGION, 0, schema.n_prealloc, n, ragged, coords, CommitRecord.now())


def repair(path: str, storage_options: dict[str, Any] | None = None) -> Report:
    """Roll a store back to its last valid commit and remove orphans.

    Parameters
    ----------
    path : str
        The store.
    storage_options : dict, optional
        fsspec options for URLs.

    Returns
    -------
    Report
        ``actions`` lists what was changed; ``problems`` what remains (e.g.
        missing chunks of committed rows, which only a backup can restore).

    Raises
    ------
    StoreLockedError
        A writer is still open on the store.
    """
    from . import transaction
    from .core import Store

    path = str(path)
    rep = Report(path)
    backend, schema = _open_backend(path, "a", storage_options)
    lock = backend.make_lock(MAIN_REGION)
    lock.acquire()
    try:
        lister = getattr(backend, "list_locks", None)
        if lister is not None:
            from .regions import check_claims

            check_claims(backend, MAIN_REGION, schema.n_prealloc)
        root = getattr(backend, "root", None)
        for region, seq in _bad_records(backend):
            raw = backend.read_record(region, seq) or b""
            if root is not None and getattr(backend, "fs", True) is None:
                q = os.path.join(root, "_embstore", "quarantine")
                os.makedirs(q, exist_ok=True)
                os.replace(
                    os.path.join(root, "_embstore", "commits", region, f"{seq:012d}.json"),
                    os.path.join(q, f"{region}-{seq:012d}.json"),
                )
                rep.actions.append(
                    f"moved unreadable record {region}/{seq} ({len(raw)} bytes) to _embstore/quarantine/"
                )
            else:
                backend.delete_record(region, seq)
                rep.actions.append(f"removed unreadable record {region}/{seq}")
        if not backend.list_records(MAIN_REGION):
            rec = _rebuild_main(backend, schema)
            if rec is not None:
                backend.write_record(MAIN_REGION, 0, rec.encode())
                rep.actions.append(f"rebuilt the main commit record: {rec.n} rows with stored ids")
        for f in _temp_files(backend):
            try:
                os.remove(f)
                rep.actions.append(f"removed temporary file {os.path.relpath(f, root)}")
            except FileNotFoundError:
                pass
        backend.flush()
    finally:
        lock.release()
        backend.close()
    try:
        with Store.open(
            path, mode="a", storage_options=storage_options
        ) as st:  # finishes staged set_coords
            for o in transaction.remove_orphans(st._backend, st._reader.records):
                rep.actions.append(f"removed uncommitted {o}")
    except StoreLockedError:
        raise
    except EmbstoreError as exc:
        rep.problems.append(f"cannot open for repair: {exc}")
    after = check(path, storage_options)
    rep.rows, rep.problems, rep.orphans = after.rows, rep.problems + after.problems, after.orphans
    return rep
