"""The write side of a store: one transaction object per writer, alive only while the store is open for writing.

:class:`StoreWriter` holds the append lock of its region, the chunk
buffers and every mutation: ``append`` (validated by
:mod:`embstore.store.batch`), ``set_coords``, tables, blobs, skipped rows and
attributes. Each mutation follows the commit protocol (data beside the old,
one atomic record, then clean-up) through :mod:`embstore.store.commit`,
:mod:`embstore.store.transaction`, :mod:`embstore.store.catalog` and the
backend's :mod:`~embstore.store.atomic` writes. A read-only
:class:`~embstore.Store` has no writer at all.

How rows become visible
-----------------------
``append`` validates a batch (writing nothing when anything is wrong) and
buffers it. Whenever the buffer holds ``write_chunks`` whole chunks, they are
written in one call, then a commit record makes them visible. ``flush`` and
``close`` write the rest. A reader only sees rows of the latest valid commit
record, so a killed writer leaves every committed row intact and nothing
half-written visible.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import (
    DiskFullError,
    EmbstoreError,
    ShapeMismatchError,
    ValidationError,
)
from . import tablecodec, transaction
from .backends import Backend
from .backends.base import fill_value_for
from .batch import validate_batch
from .buffer import ChunkBuffer
from .commit import MAIN_REGION, CommitRecord, region_name
from .ragged import RAGGED_SUFFIXES, flat_dims
from .reader import StoreReader
from .schema import Schema, ragged_layout
from .validation import check_attrs, check_chunk_rows, check_name, check_table_frame

__all__ = ["StoreWriter", "now"]

_KEEP_RECORDS = 3


def now() -> str:
    """The current UTC time as an ISO string (seconds): the ``created``/``updated`` attributes."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class StoreWriter:
    """Writer of one region of a store (the main region, or ``(start, stop)`` rows).

    Creating it takes the region's append lock, checks region claims,
    cleans up after a killed predecessor and rolls forward its interrupted
    ``set_coords``; :meth:`close` writes the rest and releases the lock.

    Parameters
    ----------
    reader : StoreReader
        The store's reader (its records are updated on every commit).
    region : (int, int), optional
        Rows of a preallocated store this writer fills.
    force : bool
        Take over an append lock left by a writer that is gone.
    write_chunks : int
        Whole chunks gathered before one write call.
    """

    def __init__(
        self,
        reader: StoreReader,
        region: tuple[int, int] | None = None,
        force: bool = False,
        write_chunks: int = 4,
    ) -> None:
        self.reader = reader
        schema = reader.schema
        self.write_chunks = max(1, int(write_chunks))
        self.rstop: int | None
        if region is None:
            self.region = MAIN_REGION
            self.rstart, self.rstop = schema.n_prealloc, None
        else:
            self.region = region_name(*region)
            self.rstart, self.rstop = region
        self.row_bufs: dict[str, ChunkBuffer] = {}
        self.flat_bufs: dict[str, ChunkBuffer] = {}
        self.coords_known: list[str] = []
        self.trailing: dict[str, tuple[int, ...]] = {}
        self.disk_end = 0
        self._ids_seen: set[Any] | None = None
        self.lock: Any = self.backend.make_lock(self.region)
        self.lock.acquire(force=force)
        try:
            if region is not None or schema.n_prealloc:
                from .regions import check_claims

                check_claims(self.backend, self.region, schema.n_prealloc, force)
            stale = getattr(self.lock, "stale_pid", None)
            if stale is not None:  # its writer was killed: drop its half-written temporary files
                self.backend.remove_temp_files(stale)
                transaction.remove_orphans(self.backend, reader.records, stale)
            self._prepare()
            transaction.roll_forward(self)
        except BaseException:
            self.lock.release()
            raise

    # ---------------------------------------------------------------- state
    @property
    def backend(self) -> Backend:
        """The store's backend (through the reader, so both always share one)."""
        return self.reader.backend

    @property
    def schema(self) -> Schema:
        """The store's schema."""
        return self.reader.schema

    @property
    def path(self) -> str:
        """Location of the store."""
        return self.reader.path

    @property
    def own(self) -> CommitRecord:
        """Latest commit record of this writer's region (an empty one before the first)."""
        return self.reader.records.get(self.region) or CommitRecord(self.region, -1, self.rstart, 0)

    def _prepare(self) -> None:
        """Drop uncommitted leftovers and reload a partial last chunk into buffers."""
        rec = self.own
        self.reader.records[self.region] = rec
        end = rec.start + rec.n
        self.disk_end = end
        self.coords_known = list(self.reader.all_coord_names())
        self.reader.known_coords = self.coords_known
        be = self.backend
        for name in self.row_array_names() + list(self.schema.ragged):
            if be.has_array(name):
                self.trailing[name] = tuple(be.array_info(name)[0][1:])
        if self.schema.chunk_rows is None:
            return
        if self.region == MAIN_REGION:
            for name in self.row_array_names():
                if be.has_array(name) and be.array_info(name)[0][0] > end:
                    be.resize(name, end)
            for var in self.schema.ragged:
                if be.has_array(var):
                    tot = int(rec.ragged.get(var, 0))
                    if be.array_info(var)[0][0] > tot:
                        be.resize(var, tot)
        for name in self.row_array_names():
            if be.has_array(name):
                ch = self.row_chunk(name)
                self.row_bufs[name] = self._reloaded(name, end, ch)
        for var in self.schema.ragged:
            if be.has_array(var):
                tot = int(self.own.ragged.get(var, 0))
                self.flat_bufs[var] = self._reloaded(var, tot, be.array_info(var)[2])

    def _reloaded(self, name: str, end: int, chunk: int) -> ChunkBuffer:
        """A buffer starting at the chunk holding ``end``, with the stored rows before ``end``."""
        b0 = end - end % chunk
        buf = ChunkBuffer(b0, chunk)
        if b0 < end:
            buf.append(self.backend.read(name, slice(b0, end)))
        return buf

    def row_chunk(self, name: str) -> int:
        """Rows per chunk of the row array ``name`` (as stored, or as it will be created)."""
        if self.backend.has_array(name):
            return self.backend.array_info(name)[2]
        return self.schema.row_array_chunk(name)

    def row_array_names(self) -> list[str]:
        """Every array along the row dim: dense vars, id, coords, ragged bookkeeping."""
        names = list(self.schema.variables) + [self.schema.id_name] + list(self.coords_known)
        for var in self.schema.ragged:
            names += [var + s for s in RAGGED_SUFFIXES]
        return names

    def trailing_dtype(self, name: str) -> np.dtype | None:
        """dtype of row array ``name`` (buffered or stored; None if unknown)."""
        buf = self.row_bufs.get(name)
        if buf is not None and len(buf):
            return buf.block(buf.start + 1).dtype
        if self.backend.has_array(name):
            return self.backend.array_info(name)[1]
        return None

    def id_set(self) -> set[Any]:
        """Ids committed or buffered (for the duplicate check)."""
        if self._ids_seen is None:
            self._ids_seen = set(self.reader.read_rows(self.schema.id_name).tolist())
        return self._ids_seen

    def pending_rows(self) -> bool:
        """Whether rows are buffered beyond the last commit."""
        idb = self.row_bufs.get(self.schema.id_name)
        return idb is not None and idb.end > self.disk_end

    def row_end(self) -> int:
        """Row just past the last buffered row."""
        b = self.row_bufs.get(self.schema.id_name)
        return b.end if b is not None else self.disk_end

    # --------------------------------------------------------------- append
    def append(
        self,
        ids: Sequence[Any] | np.ndarray,
        data: Mapping[str, Any],
        coords: Mapping[str, Any] | None = None,
        ragged_hw: Mapping[str, Sequence[tuple[int, int]]] | None = None,
        allow_nonfinite: bool = False,
    ) -> None:
        """Validate and buffer a batch of rows.

        Parameters
        ----------
        ids : sequence of int or str
            One unique id per row, not yet in the store.
        data : dict
            Every variable: dense ones as arrays with a leading row axis,
            ragged ones as a list of per-row arrays.
        coords : dict, optional
            Metadata coordinates, one value per row (ints, floats, bools or
            strings). Coordinates omitted here but known to the store get fill
            values (-1, NaN, False or "").
        ragged_hw : dict, optional
            ``{var: [(h, w), ...]}`` for ``("token", F)`` variables whose tokens
            form an ``h x w`` grid.
        allow_nonfinite : bool
            Accept NaN/Inf values.

        Raises
        ------
        ReadOnlyStoreError, ShapeMismatchError, DTypeMismatchError,
        DuplicateIdError, NonFiniteError, UnknownVariableError, ValidationError
            Nothing is written when any check fails.

        Notes
        -----
        Rows are buffered and written in whole chunks; they become visible
        (committed) when their chunks are written or on :meth:`flush` /
        :meth:`close`.
        """
        if len(ids) == 0:
            return
        id_arr, rows, flats, new_trailing = validate_batch(
            self, ids, data, coords, ragged_hw, allow_nonfinite
        )
        n = len(id_arr)
        if n == 0:
            return
        sch = self.schema
        if sch.chunk_rows is not None:  # a chunk of any new array must stay <= 512 MiB
            for name, trailing in new_trailing.items():
                if name in sch.variables:
                    row_bytes = int(np.prod(trailing)) * np.dtype(sch.dtypes[name]).itemsize
                    check_chunk_rows("chunk_rows", sch.chunk_rows, row_bytes)
        if self.rstop is not None and self.row_end() + n > self.rstop:
            raise ShapeMismatchError(
                f"region {self.rstart}-{self.rstop} has room for {self.rstop - self.row_end()} more rows; "
                f"got {n}. Give this writer a larger region"
            )
        # ---- nothing below raises on user input
        if sch.chunk_rows is None:
            row_bytes = 1
            for name in sch.variables:
                row_bytes = max(row_bytes, int(np.prod(rows[name].shape[1:])) * rows[name].itemsize)
            sch.chunk_rows = sch.pick_chunk_rows(row_bytes)
            attrs = self.backend.read_attrs()
            attrs["embstore"] = sch.to_json()
            self.backend.write_attrs(attrs)
        self.trailing.update(new_trailing)
        cr = sch.chunk_rows
        row_end = self.row_end()
        for name, arr in rows.items():
            buf = self.row_bufs.get(name)
            if buf is None:
                ch = self.row_chunk(name)
                buf = ChunkBuffer(self.disk_end - self.disk_end % ch, ch)
                self.row_bufs[name] = buf
                missing_rows = row_end - buf.start
                if missing_rows > 0:  # new coordinate: fill earlier buffered rows
                    if self.backend.has_array(name):
                        buf.append(self.backend.read(name, slice(buf.start, self.disk_end)))
                        missing_rows = row_end - self.disk_end
                    buf.append(np.full(missing_rows, fill_value_for(arr.dtype), dtype=arr.dtype))
                if name not in self.coords_known and name in (coords or {}):
                    self.coords_known.append(name)
            if name in sch.variables:  # validated, not yet cast: cast into the buffer
                buf.append_cast(arr, sch.dtypes[name])
            else:
                buf.append(arr)
        for name, buf in self.row_bufs.items():
            if name not in rows:  # known coordinate not given in this batch
                dt = self.trailing_dtype(name) or np.dtype("int64")
                buf.append(np.full(n, fill_value_for(dt), dtype=dt))
        for var, parts in flats.items():
            if not parts:
                continue
            fbuf = self.flat_bufs.get(var)
            if fbuf is None:
                tc = self._token_chunk(var, parts[0])
                tot = int(self.own.ragged.get(var, 0))
                fbuf = ChunkBuffer(tot - tot % tc, tc)
                self.flat_bufs[var] = fbuf
            for part in parts:  # each row's tokens cast straight into the buffer (no concatenation)
                fbuf.append_cast(part, sch.dtypes[var])
        self.id_set().update(id_arr.tolist())
        if self.row_end() - (self.disk_end - self.disk_end % cr) >= self.write_chunks * cr:
            self.write(final=False)

    def _token_chunk(self, var: str, flat: np.ndarray) -> int:
        """Tokens per chunk of a ragged variable's flat array: about 16 MiB, a power of two.

        Larger than the dense chunks (~8 MiB): token rows are read per row
        range (never one dask block per chunk), and every chunk file costs an
        inode creation when written (4 MiB chunks made DETR encoder maps the
        largest group of chunk files in ``bench/store_io.py``).
        """
        if self.backend.has_array(var):
            return self.backend.array_info(var)[2]
        per_token = max(
            1, int(np.prod(flat.shape[1:])) * np.dtype(self.schema.dtypes[var]).itemsize
        )
        t = max(1, (16 * 2**20) // per_token)
        return int(min(1 << 16, max(256, 2 ** int(np.floor(np.log2(t))))))

    def ensure_array(
        self,
        name: str,
        trailing: tuple[int, ...],
        length: int,
        dtype: Any = None,
        chunk: int | None = None,
    ) -> None:
        """Create row array (or ragged token array) ``name`` unless it exists."""
        if self.backend.has_array(name):
            return
        sch = self.schema
        cr = sch.chunk_rows or 1
        inner = sch.inner_chunk_rows
        attrs: dict[str, Any]
        if name in sch.variables:
            dims = (sch.row_dim,) + sch.variables[name]
            dt = sch.dtypes[name]
            attrs = {"coordinates": " ".join([sch.id_name] + self.coords_known)}
        elif name in sch.ragged:
            dims = flat_dims(name, sch.ragged[name], ragged_layout(sch.ragged[name]))
            dt = sch.dtypes[name]
            attrs = {"embstore_ragged": True}
            cr = int(chunk or 4096)
            inner = None
        else:
            dims = (sch.row_dim,)
            dt = "str" if np.dtype(dtype).kind in "UOT" else np.dtype(dtype).name
            attrs = {}
            cr = sch.row_array_chunk(name)
            inner = None
        self.backend.create_array(
            name,
            (length,) + tuple(trailing),
            cr,
            dt,
            dims,
            attrs=attrs,
            inner_chunk_rows=inner,
            compressor=sch.compressor,
        )
        self.trailing[name] = tuple(trailing)

    # ---------------------------------------------------------------- write
    def write(self, final: bool) -> None:
        """Write buffered whole chunks (all rows when ``final``), then commit.

        A full disk (``ENOSPC``/``EDQUOT``) raises :class:`DiskFullError`;
        nothing of this write is committed, so the committed rows stay as
        they were, and the rows stay buffered (a later flush retries).
        """
        with self.disk_full_guard():
            self._write_rows(final)

    @contextlib.contextmanager
    def disk_full_guard(self) -> Iterator[None]:
        """Turn ``ENOSPC``/``EDQUOT`` raised inside into :class:`DiskFullError`."""
        try:
            yield
        except (OSError, RuntimeError) as exc:  # h5py raises RuntimeError, errno only in the text
            text = str(exc)
            code = getattr(exc, "errno", None)
            full = code in (errno.ENOSPC, errno.EDQUOT) or (
                code is None
                and ("No space left" in text or "errno = 28," in text or "errno = 122," in text)
            )
            if isinstance(exc, EmbstoreError) or not full:
                raise
            raise DiskFullError(
                f"the disk holding {self.path!r} is full ({exc}); rows buffered since the last commit were not "
                f"written and committed rows are intact ({self.disk_end} rows). Free space, then flush() or "
                "close() again, or resume the run"
            ) from exc

    def _write_rows(self, final: bool) -> None:
        idn = self.schema.id_name
        idb = self.row_bufs.get(idn)
        if idb is None:
            return
        cr = self.schema.chunk_rows or 1
        end = idb.end if final else idb.end - idb.end % cr  # whole chunks of the dense variables
        if end <= self.disk_end:
            return
        be = self.backend
        rec = self.own
        ragged_tot = dict(rec.ragged)
        # 1. ragged token rows
        for var, fb in self.flat_bufs.items():
            offb = self.row_bufs[var + "_offset"]
            tok_end = int(offb.block(end + 1)[-1]) if end < offb.end else fb.end
            self.ensure_array(var, self.trailing[var], 0, chunk=fb.chunk)
            if tok_end > fb.start:
                self._grow(var, tok_end, fb.chunk)
                be.write(var, fb.start, fb.block(tok_end))
            fb.advance(tok_end)
            ragged_tot[var] = tok_end
        # 2. row arrays (ids last among data so a half-written chunk never shows ids)
        names = [k for k in self.row_bufs if k != idn] + [idn]
        new_ids = idb.block(end)[self.disk_end - idb.start :].copy()
        for name in names:
            buf = self.row_bufs[name]
            if buf.start >= end:  # written by an earlier try that failed further on (disk full)
                continue
            block = buf.block(end)
            self.ensure_array(
                name, tuple(block.shape[1:]), self.schema.n_prealloc, dtype=block.dtype
            )
            if self.region == MAIN_REGION:
                self._grow(name, end, cr)  # every row array grows alike (one row count)
            be.write(name, buf.start, block)
            buf.advance(end)
        be.flush()
        # 3. commit record
        self.commit(n=end - rec.start, ragged=ragged_tot)
        self.disk_end = end
        r = self.reader
        if r.ids_cache is not None:
            r.ids_cache = np.concatenate([r.ids_cache, new_ids]) if len(r.ranges()) <= 1 else None
            if r.ids_cache is not None:
                r.ids_cache.flags.writeable = False
        r.forget()

    def _grow(self, name: str, end: int, chunk: int) -> None:
        """Make room for ``end`` rows, growing geometrically (trimmed on close)."""
        size = self.backend.array_info(name)[0][0]
        if size < end:
            target = max(end + 64 * chunk, 2 * size)  # few metadata rewrites
            self.backend.resize(name, target + (-target) % chunk)

    def _trim(self) -> None:
        """Cut arrays of the main region to the committed length (clean close)."""
        if self.region != MAIN_REGION:
            return
        rec, be, n_pre = self.own, self.backend, self.schema.n_prealloc
        for name in self.row_array_names():
            if be.has_array(name) and be.array_info(name)[0][0] != rec.start + rec.n:
                if n_pre and rec.start + rec.n < n_pre:
                    continue
                be.resize(name, max(rec.start + rec.n, n_pre))
        for var in self.schema.ragged:
            if be.has_array(var):
                be.resize(var, int(rec.ragged.get(var, 0)))

    def commit(
        self,
        n: int | None = None,
        ragged: dict[str, int] | None = None,
        staged: dict[str, Any] | None = None,
        visible: bool = True,
    ) -> None:
        """Publish the next commit record of this region (the one atomic step of every write)."""
        old = self.own
        be = self.backend
        # a killed writer may have left a newer, invalid (cut short) record: never reuse its number
        listed = be.list_records(self.region)
        rec = CommitRecord(
            region=self.region,
            seq=max([old.seq] + listed) + 1,
            start=old.start,
            n=old.n if n is None else n,
            ragged=dict(old.ragged if ragged is None else ragged),
            coords=list(self.coords_known),
            time=CommitRecord.now(),
            staged=dict(old.staged if staged is None else staged),
            vis=-1 if visible else old.visible_seq,
        )
        if rec.coords != old.coords:
            coord_attr = " ".join([self.schema.id_name] + rec.coords)
            set_attrs = getattr(be, "set_array_attrs", None)
            for var in self.schema.variables:
                if set_attrs is not None and be.has_array(var):
                    set_attrs(var, {"coordinates": coord_attr})
        be.write_record(self.region, rec.seq, rec.encode())
        be.flush()
        self.reader.records[self.region] = rec
        self.consolidate()  # at once: plain readers lag the commit by as few I/O steps as possible
        for seq in listed:
            if seq <= rec.seq - _KEEP_RECORDS:
                be.delete_record(self.region, seq)

    def consolidate(self) -> None:
        """Zarr consolidated metadata of the committed rows, for plain readers (xarray.open_zarr).

        Only the main writer writes it: region writers of a preallocated store
        run concurrently and would race on the root ``zarr.json``.
        """
        if self.region != MAIN_REGION:
            return
        from .backends.consolidate import write_consolidated

        records = self.reader.records
        ends = [r.start + r.n for r in records.values()]
        tokens = dict(self.own.ragged) if len(records) <= 1 else {}
        write_consolidated(self.backend, max(ends, default=0), self.schema.row_dim, tokens)

    def flush(self) -> None:
        """Write every buffered row, commit it and stamp ``updated``."""
        self.write(final=True)
        with self.disk_full_guard():
            attrs = self.backend.read_attrs()
            attrs["updated"] = now()
            self.backend.write_attrs(attrs)
            self.backend.flush()
            self.consolidate()  # writing the attrs dropped it

    def close(self) -> None:
        """Flush, trim the arrays of the main region and release the lock (the backend stays open)."""
        try:
            self.flush()
            with self.disk_full_guard():
                self._trim()
                self.backend.flush()
        finally:
            self.lock.release()

    # ---------------------------------------------------------- set_coords
    def set_coords(self, values: Mapping[str, Any], ids: Sequence[Any] | None = None) -> None:
        """Add or overwrite coordinates of committed rows.

        Parameters
        ----------
        values : dict
            Coordinate name -> one value per selected row.
        ids : sequence, optional
            Rows to set (default: every committed row, in :attr:`ids` order;
            for a region writer, the rows of its region). Rows not listed keep
            their value (fill value for a new coordinate). A region writer may
            only set rows of its own region.

        Notes
        -----
        Copy-on-write: the new values are written to a hidden array and made
        visible by one commit record, so a writer killed at any point leaves
        every coordinate entirely old or entirely new (see
        :mod:`embstore.store.transaction`).

        Raises
        ------
        ReadOnlyStoreError, ShapeMismatchError, DTypeMismatchError, ValidationError

        Examples
        --------
        >>> from embstore import Store
        >>> import numpy as np, tempfile, os
        >>> st = Store.create(os.path.join(tempfile.mkdtemp(), "r.zarr"), variables={"e": ("d",)})
        >>> st.append([1, 2, 3], {"e": np.zeros((3, 1))})
        >>> st.set_coords({"cluster": [0, 0, 1]})
        >>> st.set_coords({"cluster": [7]}, ids=[2])
        >>> st.coords["cluster"].tolist()
        [0, 7, 1]
        """
        self.flush()
        transaction.set_coords(self, values, ids)

    # ------------------------------------------------- attrs, tables, blobs
    def update_attrs(self, **kv: Any) -> None:
        """Merge run information into the attributes (JSON-serialisable values).

        Examples
        --------
        >>> from embstore import Store
        >>> import tempfile, os
        >>> st = Store.create(os.path.join(tempfile.mkdtemp(), "r.zarr"), variables={"e": ("d",)})
        >>> st.update_attrs(model="detr_r50")
        >>> st.attrs["model"]
        'detr_r50'
        """
        bad = {"embstore", "store_uuid", "format_version"} & set(kv)
        if bad:
            raise ValidationError(
                f"attributes {sorted(bad)} are managed by embstore; use other names"
            )
        check_attrs(kv)
        a = self.backend.read_attrs()
        a.update(kv)
        a["updated"] = now()
        self.backend.write_attrs(a)
        self.backend.flush()
        self.consolidate()  # writing the attrs dropped it

    def write_table(self, name: str, df: pd.DataFrame) -> None:
        """Store a DataFrame (replacing a table of the same name).

        Columns may hold numbers, bools, strings or datetimes; the index is kept.

        Examples
        --------
        >>> from embstore import Store
        >>> import pandas as pd, tempfile, os
        >>> st = Store.create(os.path.join(tempfile.mkdtemp(), "r.zarr"), variables={"e": ("d",)})
        >>> st.write_table("people", pd.DataFrame({"skin": [1, 5], "who": ["a", "b"]}))
        >>> st.read_table("people")["who"].tolist()
        ['a', 'b']
        """
        check_name("table/blob", name)
        check_table_frame(df)
        columns, meta = tablecodec.encode_frame(df)
        transaction.write_table(self.backend, name, columns, meta)

    def write_blob(self, name: str, data: Any) -> None:
        """Store bytes as a new blob version with its SHA-256, committed in the catalog."""
        check_name("table/blob", name)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValidationError(f"write_blob needs bytes; got {type(data).__name__}")
        transaction.write_blob(self.backend, name, bytes(data))

    def record_skipped(self, ids: Sequence[Any], reasons: str | Sequence[str]) -> None:
        """Remember rows that could not be extracted (e.g. unreadable images).

        Parameters
        ----------
        ids : sequence
            Ids that were skipped.
        reasons : str or sequence of str
            One reason for all, or one per id.

        Notes
        -----
        Each writer region keeps its own table, replaced copy-on-write (see
        :mod:`embstore.store.catalog`); :attr:`skipped` joins them.
        """
        id_list = list(ids)
        if isinstance(reasons, str):
            reasons = [reasons] * len(id_list)
        reason_list = [str(r) for r in reasons]
        if len(reason_list) != len(id_list):
            raise ShapeMismatchError(
                f"record_skipped got {len(id_list)} ids but {len(reason_list)} reasons"
            )
        # one table per writer region: region writers never rewrite each other's records
        own = "_skipped" if self.region == MAIN_REGION else f"_skipped.{self.region}"
        got = transaction.read_table(self.backend, own)
        columns = tablecodec.skipped_frame(
            got[0] if got is not None else None, id_list, reason_list
        )
        transaction.write_table(self.backend, own, columns, tablecodec.skipped_meta())
