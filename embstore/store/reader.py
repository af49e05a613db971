"""The read side of a store: committed rows, the id lookup, eager reads and lazy xarray views.

:class:`StoreReader` owns what every open :class:`~embstore.Store` has,
whatever its mode: the backend, the schema, the latest valid commit record
of each region (which rows are visible), the ids and their one
id -> position lookup (:meth:`StoreReader.locate`, raising
:class:`~embstore.errors.UnknownIdError`), coordinates, :meth:`read`, the
lazy views (``st["var"]``, ``st.dataset``) and :meth:`sel`. It never writes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DamagedStoreError, UnknownIdError, UnknownVariableError, ValidationError
from . import tablecodec, transaction
from .backends import Backend
from .catalog import CATALOG
from .commit import MAIN_REGION, CommitRecord
from .schema import Schema

__all__ = ["StoreReader"]

log = logging.getLogger(__name__)


class StoreReader:
    """Committed state of a store and every read of it.

    Parameters
    ----------
    backend : Backend
        The opened backend (:attr:`backend` may be swapped, e.g. by tests).
    schema : Schema
        The store's schema.

    Attributes
    ----------
    records : dict of str to CommitRecord
        Latest valid commit record per region (a writer replaces its own).
    known_coords : list of str or None
        Set by a writer: its coordinate names, including those not yet
        committed (None for read-only stores: the records' names are used).
    """

    def __init__(self, backend: Backend, schema: Schema) -> None:
        self.backend = backend
        self.schema = schema
        self.known_coords: list[str] | None = None
        self.records: dict[str, CommitRecord] = {}
        self.ids_cache: np.ndarray | None = None
        self._coord_cache: dict[str, np.ndarray] = {}
        self._index_cache: pd.Index | None = None
        self.load()

    @property
    def path(self) -> str:
        """Location of the store."""
        return self.backend.path

    # -------------------------------------------------------------- records
    def latest_record(self, region: str) -> CommitRecord | None:
        """Newest readable commit record of ``region`` (raises on damage, never deletes)."""
        seqs = self.backend.list_records(region)
        for seq in reversed(seqs):
            rec = CommitRecord.decode(self.backend.read_record(region, seq))
            if rec is not None:
                return rec
            if self.backend.atomic_records or seq == seqs[0]:
                # records are published whole, so this is damage, not a write cut short by a kill
                raise DamagedStoreError(
                    f"commit record {region}/{seq} of {self.path!r} is unreadable (damaged or changed on "
                    "disk); nothing was deleted. Run `embstore check` to see the damage and `embstore repair` "
                    "to roll back to the last valid commit"
                )
            log.warning("ignoring invalid commit record %s/%d of %s", region, seq, self.path)
        return None

    def load(self) -> None:
        """(Re)read commit records and reset cached views."""
        self.backend.invalidate()
        records: dict[str, CommitRecord] = {}
        for r in self.backend.list_regions():
            if r == CATALOG:
                continue
            rec = self.latest_record(r)
            if rec is not None:
                records[r] = rec
        if MAIN_REGION not in records:
            idn = self.schema.id_name
            if self.backend.has_array(idn) and self.backend.array_info(idn)[0][0]:
                raise DamagedStoreError(
                    f"{self.path!r} holds rows but its commit records (_embstore/commits/main) are missing; "
                    "nothing was deleted. Run `embstore repair` to rebuild them from the stored ids"
                )
            records[MAIN_REGION] = CommitRecord(MAIN_REGION, -1, self.schema.n_prealloc, 0)
        self.records = records
        self.ids_cache = None
        self.forget()

    def forget(self) -> None:
        """Drop cached coordinates and the id index (after a commit)."""
        self._coord_cache = {}
        self._index_cache = None

    def ranges(self) -> list[tuple[int, int]]:
        """Committed ``(start, stop)`` row ranges in order (regions by start, main last)."""
        out = []
        for rec in sorted(self.records.values(), key=lambda r: (r.region == MAIN_REGION, r.start)):
            if rec.n > 0:
                out.append((rec.start, rec.start + rec.n))
        return out

    def n_rows(self) -> int:
        """Number of committed rows."""
        return sum(b - a for a, b in self.ranges())

    def positions(self) -> np.ndarray:
        """Storage positions of the committed rows, in :attr:`ids` order."""
        rs = self.ranges()
        if not rs:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in rs])

    def read_rows(self, name: str) -> np.ndarray:
        """Every committed row of the row array ``name`` (staged coordinate versions overlaid)."""
        rs = self.ranges()
        staged = [r.staged[name] for r in self.records.values() if name in r.staged]
        if staged:  # a set_coords committed but not yet copied in (its writer was killed)
            return transaction.read_with_staged(self.backend, name, rs, staged)
        if not rs or not self.backend.has_array(name):
            dt = (
                self.backend.array_info(name)[1]
                if self.backend.has_array(name)
                else np.dtype("int64")
            )
            return np.zeros(0, dtype=dt)
        parts = [self.backend.read(name, slice(a, b)) for a, b in rs]
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def read_rows_at(self, name: str, pos: np.ndarray) -> np.ndarray:
        """Rows of ``name`` at storage positions ``pos`` (any order)."""
        order = np.argsort(pos, kind="stable")
        vals = self.backend.read(name, pos[order])
        out = np.empty_like(vals)
        out[order] = vals
        return out

    def all_coord_names(self) -> list[str]:
        """Coordinate names of every region's record, in first-seen order."""
        names: list[str] = []
        for rec in self.records.values():
            for c in rec.coords:
                if c not in names:
                    names.append(c)
        return names

    # ------------------------------------------------------------------ ids
    @property
    def ids(self) -> np.ndarray:
        """Committed ids in commit order (read-only array)."""
        if self.ids_cache is None:
            self.ids_cache = self.read_rows(self.schema.id_name)
            self.ids_cache.flags.writeable = False
        return self.ids_cache

    def id_index(self) -> pd.Index:
        """A :class:`pandas.Index` over :attr:`ids` (cached until the next commit)."""
        if self._index_cache is None:
            self._index_cache = pd.Index(self.ids)
        return self._index_cache

    def lookup(self, ids: Iterable[Any]) -> tuple[np.ndarray, np.ndarray]:
        """``(ids as an array, their indices into ids)``: the one id lookup of the store.

        Raises
        ------
        UnknownIdError
            An id is not committed (a :class:`SelectionError` and a
            :class:`ValidationError`).
        """
        arr = np.asarray(list(ids))
        loc = self.id_index().get_indexer(arr) if len(arr) else np.zeros(0, dtype=np.int64)
        if (loc < 0).any():
            raise UnknownIdError(
                f"ids {arr[loc < 0][:5].tolist()} are not committed in {self.path!r}; "
                "see store.ids / store.missing"
            )
        return arr, loc

    def locate(self, ids: Iterable[Any]) -> np.ndarray:
        """Storage positions of ``ids`` (raises :class:`UnknownIdError` for unknown ones)."""
        return self.positions()[self.lookup(ids)[1]]

    def missing(self, candidate_ids: Iterable[Any]) -> list[Any]:
        """Candidates that are not committed, in the order given.

        Parameters
        ----------
        candidate_ids : iterable
            Ids to check (e.g. every image of a dataset).

        Returns
        -------
        list
            The candidates absent from the store: what a resumed run must
            still extract.

        Examples
        --------
        >>> from embstore import Store
        >>> import numpy as np, tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "r.zarr")
        >>> with Store.create(p, variables={"e": ("d",)}) as st:
        ...     st.append([1, 3], {"e": np.zeros((2, 2))})
        ...     st.missing([1, 2, 3, 4])
        [2, 4]
        """
        cand = list(candidate_ids)
        if not cand:
            return []
        idx = self.id_index()
        if len(idx) == 0:
            return cand
        arr = np.asarray(cand)
        if (idx.dtype.kind in "iu") != (arr.dtype.kind in "iu"):
            return cand
        found = idx.isin(arr)
        present = set(np.asarray(idx[found]).tolist())
        return [c for c in cand if (c.item() if isinstance(c, np.generic) else c) not in present]

    # ---------------------------------------------------------- coordinates
    def coord_names(self) -> list[str]:
        """Coordinate names (a writer's own list, else those of the records)."""
        if self.known_coords is not None:
            return list(self.known_coords)
        return self.all_coord_names()

    def coord_values(self, name: str) -> np.ndarray:
        """Committed values of coordinate ``name`` (cached)."""
        if name not in self._coord_cache:
            self._coord_cache[name] = self.read_rows(name)
        return self._coord_cache[name]

    def has_coord(self, name: str) -> bool:
        """Whether coordinate ``name`` has stored values (its array, or a committed staged version)."""
        return self.backend.has_array(name) or any(name in r.staged for r in self.records.values())

    def coords_frame(self) -> pd.DataFrame:
        """Row coordinates as a DataFrame indexed by id (committed rows).

        Examples
        --------
        >>> from embstore import Store
        >>> import numpy as np, tempfile, os
        >>> st = Store.create(os.path.join(tempfile.mkdtemp(), "r.zarr"), variables={"e": ("d",)})
        >>> st.append([5, 6], {"e": np.zeros((2, 1))}, coords={"skin": [1, 2]})
        >>> st.coords  # doctest: +NORMALIZE_WHITESPACE
                  skin
        image_id
        5            1
        6            2
        """
        ids = self.ids
        names = [c for c in self.coord_names() if self.has_coord(c)]
        return pd.DataFrame(
            {c: self.coord_values(c) for c in names},
            index=pd.Index(ids, name=self.schema.id_name),
        )

    def version_token(self) -> str:
        """Hash of the store uuid and each region's ``(vis, n)``."""
        attrs_uuid = self.backend.read_attrs().get("store_uuid", self.path)
        state = sorted((r.region, r.visible_seq, r.n) for r in self.records.values())
        return hashlib.sha1(json.dumps([attrs_uuid, state]).encode()).hexdigest()[:16]

    # -------------------------------------------------------- tables, blobs
    def attrs(self) -> dict[str, Any]:
        """Group attributes without the schema."""
        a = self.backend.read_attrs()
        a.pop("embstore", None)
        return a

    def read_table(self, name: str) -> pd.DataFrame:
        """The committed version of table ``name`` (see :meth:`embstore.Store.read_table`)."""
        got = transaction.read_table(self.backend, name)
        if got is None:
            raise UnknownVariableError(
                f"no table {name!r} in {self.path!r}; tables: {self.tables()}"
            )
        return tablecodec.decode_frame(*got)

    def tables(self) -> list[str]:
        """Names of the user's tables (internal ones start with ``_``)."""
        return [t for t in transaction.list_tables(self.backend) if not t.startswith("_")]

    def skipped(self) -> pd.DataFrame:
        """Every region's skipped rows, concatenated (columns ``id`` and ``reason``)."""
        parts = []
        for t in transaction.list_tables(self.backend):
            if t == "_skipped" or t.startswith("_skipped."):
                got = transaction.read_table(self.backend, t)
                if got is not None:
                    parts.append(pd.DataFrame({"id": got[0]["id"], "reason": got[0]["reason"]}))
        if not parts:
            return pd.DataFrame(
                {"id": pd.Series([], dtype=object), "reason": pd.Series([], dtype=object)}
            )
        df = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        if len(parts) > 1 and df["id"].dtype == object:
            df["id"] = df["id"].astype(str)
        return df

    # ----------------------------------------------------------------- views
    def xr_coords(self, sub: np.ndarray | None = None) -> dict[str, tuple[str, np.ndarray]]:
        """Row coordinates (optionally only the rows at indices ``sub`` of the committed rows)."""
        rd = self.schema.row_dim
        out = {self.schema.id_name: (rd, self.ids)}
        for c in self.coord_names():
            if self.has_coord(c):
                out[c] = (rd, self.coord_values(c))
        if sub is not None:
            out = {k: (d, v[sub]) for k, (d, v) in out.items()}
        return out

    def check_dense(self, name: str) -> None:
        """Raise :class:`UnknownVariableError` unless ``name`` is a dense variable."""
        if name not in self.schema.variables:
            hint = (
                " It is ragged: use get_ragged / get_ragged_padded."
                if name in self.schema.ragged
                else ""
            )
            raise UnknownVariableError(
                f"no dense variable {name!r} in {self.path!r}; variables: {sorted(self.schema.variables)}.{hint}"
            )

    def lazy(self, name: str, sub: np.ndarray | None = None) -> Any:
        """Lazily indexed array of a dense variable over committed rows (or a subset of them).

        Indexing it only composes indexers; reading the result is one call of
        the backend's point reader with the selected rows (see
        :class:`~embstore.store.lazyrows.StoreBackendArray`). float16 storage is
        decoded to float32.
        """
        from .lazyrows import decoded_dtype, lazy_variable

        dims = self.schema.variables[name]
        if not self.backend.has_array(name):
            return np.zeros((0,) * (1 + len(dims)), dtype=decoded_dtype(self.schema.dtypes[name]))
        pos = self.positions()
        if sub is not None:
            pos = pos[sub]
        shape, dtype, _rows = self.backend.array_info(name)
        return lazy_variable(self.backend, name, pos, tuple(shape[1:]), dtype)

    @staticmethod
    def attach(obj: Any, row_dim: str) -> Any:
        """Give an xarray object the row index of :mod:`embstore.selection`."""
        from ..selection import attach_row_index

        return attach_row_index(obj, row_dim)

    def data_array(self, name: str) -> Any:
        """Lazy :class:`xarray.DataArray` of dense variable ``name``."""
        import xarray as xr

        self.check_dense(name)
        da_ = xr.DataArray(
            self.lazy(name),
            dims=(self.schema.row_dim,) + self.schema.variables[name],
            coords=self.xr_coords(),
            name=name,
        )
        return self.attach(da_, self.schema.row_dim)

    def view_attrs(self) -> dict[str, Any]:
        """Store attributes for an xarray view: nested values as JSON strings (netCDF-safe)."""
        from .xrio import ROW_DIM_KEY, encode_attrs

        return encode_attrs({**self.attrs(), ROW_DIM_KEY: self.schema.row_dim})

    def dataset(self, sub: np.ndarray | None = None) -> Any:
        """Lazy :class:`xarray.Dataset` of every dense variable (rows ``sub`` of the committed ones)."""
        import xarray as xr

        rd = self.schema.row_dim
        ds = xr.Dataset(
            {n: ((rd,) + dims, self.lazy(n, sub)) for n, dims in self.schema.variables.items()},
            coords=self.xr_coords(sub),
            attrs=self.view_attrs(),
        )
        return self.attach(ds, rd)

    def sel(self, **labels: Any) -> Any:
        """Select rows by coordinate labels; returns a lazy :class:`xarray.Dataset`.

        ``sel(skin=1)``, ``sel(skin=[1, 2])`` and ``sel(skin=1, lighting="well_lit")``
        work on non-unique labels (AND across coordinates, OR within a list)
        and always keep the row dimension. The result reads only the selected
        rows when computed (not whole chunks); ``.values`` of one of its
        variables reads them without dask (see :meth:`__getitem__`), and
        :meth:`read` does the same returning NumPy.

        Raises
        ------
        SelectionError
            Unknown coordinate, or nothing matched (the message lists the
            values present).

        Examples
        --------
        >>> from embstore import Store
        >>> import numpy as np, tempfile, os
        >>> st = Store.create(os.path.join(tempfile.mkdtemp(), "r.zarr"), variables={"e": ("d",)})
        >>> st.append([1, 2, 3], {"e": np.zeros((3, 2))}, coords={"skin": [1, 2, 1]})
        >>> st.sel(skin=1).image_id.values.tolist()
        [1, 3]
        """
        from ..selection import row_positions

        dims = {d for v in self.schema.variables.values() for d in v}
        row_labels: dict[Hashable, Any] = {k: v for k, v in labels.items() if k not in dims}
        other = {k: v for k, v in labels.items() if k in dims}
        if not row_labels:
            ds = self.dataset()
            return ds.sel(**other) if other else ds
        columns: dict[Hashable, np.ndarray] = {k: v for k, (_d, v) in self.xr_coords().items()}
        ds = self.dataset(row_positions(columns, row_labels))
        return ds.sel(**other) if other else ds

    def read(
        self, var: str, ids: Sequence[Any] | None = None, mask: Any = None, **labels: Any
    ) -> np.ndarray:
        """Eagerly read a dense variable into one NumPy array (no xarray, no dask).

        The fastest way to get values out: only the selected rows' bytes are
        read, straight into one preallocated array. Equivalent to
        ``st.sel(**labels)[var].values`` (or ``st[var].values``).

        Parameters
        ----------
        var : str
            Dense variable name.
        ids : sequence, optional
            Ids to read, in the order given (every committed row when None).
        mask : array of bool, optional
            One flag per committed row (commit order, as :attr:`ids`); rows
            where it is True are read. Combines with ``ids``/``labels`` by AND
            (``ids`` keeps its order).
        **labels
            Coordinate selection with :meth:`sel` semantics, e.g. ``skin=1``
            or ``skin=[1, 2], lighting="well_lit"``.

        Returns
        -------
        numpy.ndarray
            ``(rows, *trailing)`` in the storage dtype.

        Raises
        ------
        UnknownVariableError
            ``var`` is not a dense variable.
        SelectionError
            An id is not committed, or the labels match nothing.
        ValidationError
            ``mask`` is not one bool per committed row.

        Examples
        --------
        >>> from embstore import Store
        >>> import numpy as np, tempfile, os
        >>> st = Store.create(os.path.join(tempfile.mkdtemp(), "r.zarr"), variables={"e": ("d",)},
        ...                   dtypes={"e": "float32"})
        >>> st.append([1, 2, 3], {"e": np.arange(6.0).reshape(3, 2)}, coords={"skin": [1, 2, 1]})
        >>> st.read("e", skin=1).tolist()
        [[0.0, 1.0], [4.0, 5.0]]
        >>> st.read("e", ids=[3, 2])[:, 0].tolist()
        [4.0, 2.0]
        """
        if var not in self.schema.variables:
            raise UnknownVariableError(
                f"no dense variable {var!r} in {self.path!r}; variables: {sorted(self.schema.variables)}"
            )
        n = self.n_rows()
        keep: np.ndarray | None = None
        if mask is not None:
            m = np.asarray(mask)
            if m.dtype != bool or m.shape != (n,):
                raise ValidationError(
                    f"mask must be {n} booleans (one per committed row), got dtype {m.dtype} shape {m.shape}; "
                    "build it from store.coords or store.ids"
                )
            keep = m
        if labels:
            from ..selection import row_mask

            columns: dict[Hashable, np.ndarray] = {k: v for k, (_d, v) in self.xr_coords().items()}
            wanted: dict[Hashable, Any] = {}
            wanted.update(labels)
            lm = row_mask(columns, wanted)
            keep = lm if keep is None else keep & lm
        all_pos = self.positions()
        if ids is not None:
            loc = self.lookup(ids)[1]
            if keep is not None:
                loc = loc[keep[loc]]
            pos = all_pos[loc]
        else:
            pos = all_pos if keep is None else all_pos[keep]
        dims = self.schema.variables[var]
        if not self.backend.has_array(var):
            return np.zeros((len(pos),) + (0,) * len(dims), dtype=self.schema.dtypes[var])
        shape, dtype, _ = self.backend.array_info(var)
        if len(pos) == 0:
            return np.zeros((0,) + tuple(shape[1:]), dtype=dtype)
        return self.backend.read_points(var, pos)
