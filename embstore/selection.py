"""Labeled row selection on non-unique coordinates: :class:`RowIndex`.

Plain xarray selects through one :class:`pandas.Index` per coordinate. That
breaks for the coordinates an embedding store carries along its row
dimension (``skin``, ``lighting``, ``filename``, ...):

* ``da.sel(skin=1)`` fails when ``skin`` is not an indexed coordinate, and
  with a non-unique index a single match drops the row dimension;
* ``da.sel(skin=1, lighting="well_lit")`` fails because two indexes over the
  same dimension cannot be combined.

:class:`RowIndex` is ONE custom :class:`xarray.Index` covering every 1-D
coordinate along the row dimension. Its selection rules are:

* a scalar label selects the rows equal to it; a list (or array) selects the
  rows equal to any of its values (OR within a list); a ``slice(a, b)``
  selects ``a <= value <= b`` (both ends optional);
* several coordinates combine with AND;
* the row dimension is always kept (also when one row matches) and rows keep
  their order;
* a label that matches no row, or a combination that matches no row, raises
  :class:`~embstore.errors.SelectionError` (a :class:`KeyError`) naming the
  coordinate and the values present.

A list of labels on a coordinate with unique values (an id) returns the
rows in the order of the list, as xarray does (``.sel(image_id=[3, 1, 2])``);
lists on other coordinates keep the row order.

Selection turns into positional indexing, so lazy data stays lazy.
``isel``, slicing, ``concat``, ``groupby``, ``roll``, ``rename``, pickling and
``equals`` keep a valid index. Objects whose rows differ are aligned on the
first coordinate with unique values (the id), like xarray aligns on labels:
``xr.merge``, ``xr.align``, ``reindex_like`` and arithmetic match rows by
id (``join="inner"`` keeps the common ids). Both objects need the same row
coordinates; otherwise alignment raises (xarray compares indexes by their
coordinate names): :func:`merge_by_id` merges objects whose row
coordinates differ.

Two xarray rules apply to every multi-coordinate index, RowIndex included:

* ``to_dataframe()`` / ``to_series()`` leave indexed coordinates out of the
  columns; call :func:`detach_row_index` first to keep them as columns;
* a single coordinate of the index cannot be dropped (``drop_vars``) or
  taken out of it (``reset_index`` drops the whole index): use
  :func:`drop_row_coords` and :func:`unindex_row_coords`, which keep the
  other coordinates indexed.

Examples
--------
>>> import numpy as np, xarray as xr
>>> from embstore.selection import attach_row_index, select_rows
>>> da = xr.DataArray(
...     np.arange(8.0).reshape(4, 2), dims=("image", "hidden"),
...     coords={"image_id": ("image", [10, 11, 12, 13]),
...             "skin": ("image", [1, 2, 1, 3]),
...             "lighting": ("image", ["well", "dim", "dim", "well"])})
>>> da = attach_row_index(da, "image")
>>> da.sel(skin=1).image_id.values.tolist()
[10, 12]
>>> da.sel(skin=[1, 3], lighting="well").image_id.values.tolist()
[10, 13]
>>> da.sel(image_id=11).sizes["image"]          # the row dim is kept
1
>>> select_rows(da, "image", skin=2).image_id.values.tolist()
[11]
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import numpy as np
import pandas as pd
import xarray as xr
from xarray import Index, Variable
from xarray.core.indexing import IndexSelResult

from .errors import SelectionError, ValidationError

__all__ = [
    "RowIndex",
    "attach_row_index",
    "detach_row_index",
    "drop_row_coords",
    "merge_by_id",
    "reindex_by_id",
    "row_coord_names",
    "row_mask",
    "row_positions",
    "select_rows",
    "shared_row_coords",
    "unindex_row_coords",
]

log = logging.getLogger(__name__)

T_Xarray = TypeVar("T_Xarray", xr.DataArray, xr.Dataset)

#: how many distinct values an error message lists before truncating
_MAX_SHOWN = 20


# --------------------------------------------------------------------------- #
# Pure NumPy/pandas matching (also usable by the Store without xarray objects)
# --------------------------------------------------------------------------- #
def _label_values(label: Any) -> Any:
    """Unwrap xarray/pandas containers to NumPy (scalars stay scalars)."""
    if isinstance(label, (xr.DataArray, Variable)):
        label = label.values
    elif isinstance(label, (pd.Series, pd.Index)):
        label = label.to_numpy()
    if isinstance(label, np.ndarray) and label.ndim == 0:
        label = label.item()
    return label


def _is_list_like(label: Any) -> bool:
    return isinstance(label, (list, tuple, set, frozenset, np.ndarray, range)) or (
        isinstance(label, Iterable) and not isinstance(label, (str, bytes, Mapping))
    )


def _fmt(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def _present_values(values: np.ndarray) -> str:
    """Describe the distinct values of a coordinate, truncated if many."""
    uniq = pd.Series(values).unique()
    try:
        uniq = np.sort(uniq)
    except TypeError:  # mixed types: keep first-seen order
        pass
    shown = ", ".join(_fmt(v) for v in uniq[:_MAX_SHOWN])
    if len(uniq) > _MAX_SHOWN:
        shown += f", ... ({len(uniq)} distinct values)"
    return f"[{shown}]"


def _type_hint(name: Hashable, values: np.ndarray, missing: Sequence[Any]) -> str:
    """Extra hint when the label type obviously differs from the coordinate's."""
    kind = values.dtype.kind
    sample = missing[0]
    if kind in "iub" and isinstance(sample, str):
        return f" Coordinate {name!r} holds {values.dtype} values: pass numbers, not strings."
    is_number = isinstance(sample, (int, float, np.number)) and not isinstance(sample, bool)
    if kind in "UOS" and is_number:
        return f" Coordinate {name!r} holds strings: pass e.g. {str(sample)!r}."
    return ""


class _Column:
    """One coordinate's values plus a lazily computed factorization.

    Factorizing once (``codes``, ``uniques``) turns every later selection
    into a hash lookup over the few distinct values and one integer gather,
    instead of hashing every row again.
    """

    __slots__ = ("_codes", "_uniques", "values")

    def __init__(self, values: np.ndarray):
        self.values = values
        self._codes: np.ndarray | None = None
        self._uniques: pd.Index | None = None

    def factorized(self) -> tuple[np.ndarray, pd.Index]:
        if self._codes is None or self._uniques is None:
            codes, uniques = pd.factorize(self.values, use_na_sentinel=False)
            self._codes, self._uniques = np.asarray(codes), pd.Index(uniques, dtype=object)
        return self._codes, self._uniques


def _match_one(name: Hashable, column: _Column, label: Any) -> np.ndarray:
    """Boolean mask of the rows of one coordinate matching one label."""
    values = column.values
    label = _label_values(label)
    if isinstance(label, slice):
        if label.step is not None:
            raise SelectionError(
                f"slice selection on coordinate {name!r} does not take a step "
                f"(got {label!r}); use slice(start, stop) for start <= value <= stop."
            )
        mask = np.ones(values.shape[0], dtype=bool)
        try:
            if label.start is not None:
                mask &= values >= label.start
            if label.stop is not None:
                mask &= values <= label.stop
        except TypeError as exc:
            raise SelectionError(
                f"cannot compare coordinate {name!r} ({values.dtype}) with slice "
                f"bounds {label!r}: {exc}. Use bounds of the coordinate's type."
            ) from exc
        if not mask.any():
            raise SelectionError(
                f"no row has {name!r} within {label.start!r}..{label.stop!r}; "
                f"values present: {_present_values(values)}."
            )
        return mask

    wanted = list(label) if _is_list_like(label) else [label]
    if not wanted:
        raise SelectionError(
            f"empty list of labels for coordinate {name!r}; pass at least one of "
            f"{_present_values(values)}."
        )
    wanted = [_label_values(w) for w in wanted]
    codes, uniques = column.factorized()
    try:
        hit = np.asarray(uniques.isin(wanted), dtype=bool)
        found = pd.Index(wanted, dtype=object).isin(uniques)
    except TypeError as exc:  # unhashable labels
        raise SelectionError(
            f"labels {wanted!r} for coordinate {name!r} cannot be matched ({exc}); "
            "pass scalars or a list of scalars."
        ) from exc
    missing = [w for w, ok in zip(wanted, found) if not ok]
    if missing:
        what = ", ".join(_fmt(m) for m in missing[:_MAX_SHOWN])
        raise SelectionError(
            f"no row has {name!r} equal to {what}; values present: "
            f"{_present_values(values)}.{_type_hint(name, values, missing)}"
        )
    return hit[codes]


def _check_known(labels: Mapping[Hashable, Any], columns: Mapping[Hashable, Any]) -> None:
    unknown = [k for k in labels if k not in columns]
    if unknown:
        raise SelectionError(
            f"unknown coordinate(s) {', '.join(map(repr, unknown))}; available row "
            f"coordinates: {sorted(map(str, columns))}."
        )


def _mask(
    columns: Mapping[Hashable, _Column], labels: Mapping[Hashable, Any], n: int
) -> np.ndarray:
    mask = np.ones(n, dtype=bool)
    for name, label in labels.items():
        mask &= _match_one(name, columns[name], label)
    if not mask.any():
        desc = ", ".join(f"{k}={_label_values(v)!r}" for k, v in labels.items())
        counts = ", ".join(
            f"{k}={_label_values(v)!r}: {int(_match_one(k, columns[k], v).sum())}"
            for k, v in labels.items()
        )
        raise SelectionError(
            f"no row matches {desc} together (rows matching each alone: {counts}); "
            "select fewer coordinates or other values."
        )
    return mask


def _ordered_positions(
    columns: Mapping[Hashable, np.ndarray], labels: Mapping[Hashable, Any], mask: np.ndarray
) -> np.ndarray:
    """Positions of the True rows of ``mask``; in the requested order when
    ``labels`` is one list on a coordinate with unique values (an id), as
    xarray's ``.sel(x=[3, 1, 2])`` does. Otherwise rows keep their order."""
    pos = np.flatnonzero(mask)
    if len(labels) != 1:
        return pos
    ((name, label),) = labels.items()
    label = _label_values(label)
    if isinstance(label, slice) or not _is_list_like(label):
        return pos
    index = pd.Index(columns[name])
    if not index.is_unique:
        return pos
    wanted = list(
        dict.fromkeys(_label_values(w) for w in label)
    )  # a repeated label selects once (OR)
    got = index.get_indexer(pd.Index(wanted, dtype=object) if index.dtype == object else wanted)
    return got[got >= 0].astype(np.intp)


def row_positions(
    columns: Mapping[Hashable, np.ndarray], labels: Mapping[Hashable, Any]
) -> np.ndarray:
    """Positions of the rows matching ``labels`` (the order of ``.sel``).

    Like :func:`row_mask`, but a list of labels on a coordinate with unique
    values (an id) returns the rows in the order of the list.

    Parameters
    ----------
    columns : mapping of str to numpy.ndarray
        Row coordinates.
    labels : mapping of str to label
        As in :func:`row_mask`.

    Returns
    -------
    numpy.ndarray
        Integer positions.

    Examples
    --------
    >>> import numpy as np
    >>> cols = {"id": np.array([1, 2, 3]), "skin": np.array([5, 6, 5])}
    >>> row_positions(cols, {"id": [3, 1]}).tolist(), row_positions(cols, {"skin": [6, 5]}).tolist()
    ([2, 0], [0, 1, 2])
    """
    return _ordered_positions(columns, labels, row_mask(columns, labels))


def row_mask(columns: Mapping[Hashable, np.ndarray], labels: Mapping[Hashable, Any]) -> np.ndarray:
    """Boolean mask of the rows matching every label (the RowIndex rules).

    Parameters
    ----------
    columns : mapping of str to numpy.ndarray
        Row coordinates, each a 1-D array of the same length.
    labels : mapping of str to label
        ``{coordinate: scalar | list | slice}``; AND across coordinates, OR
        within a list, ``slice(a, b)`` means ``a <= value <= b``.

    Returns
    -------
    numpy.ndarray
        Boolean array, one entry per row, with at least one ``True``.

    Raises
    ------
    SelectionError
        If a coordinate name is unknown, a label matches no row, or the
        combination of labels matches no row.

    Examples
    --------
    >>> import numpy as np
    >>> row_mask({"skin": np.array([1, 2, 1])}, {"skin": 1}).tolist()
    [True, False, True]
    """
    n = None
    for name, values in columns.items():
        if n is None:
            n = len(values)
        elif len(values) != n:
            raise ValidationError(
                f"row coordinate {name!r} has {len(values)} values but the others have "
                f"{n}; every row coordinate needs one value per row."
            )
    _check_known(labels, columns)
    cols = {k: _Column(np.asarray(columns[k])) for k in labels}
    return _mask(cols, labels, n or 0)


# --------------------------------------------------------------------------- #
# The xarray index
# --------------------------------------------------------------------------- #
class RowIndex(Index):
    """One xarray index over every 1-D coordinate along the row dimension.

    Build it with :func:`attach_row_index` (or
    ``obj.set_xindex(names, RowIndex)``). It answers ``.sel`` for any
    subset of its coordinates with the rules of :func:`row_mask`: non-unique
    labels, lists (OR), several coordinates (AND), the row dimension always
    kept, order preserved; nothing matched raises
    :class:`~embstore.errors.SelectionError`.

    Parameters
    ----------
    columns : mapping of str to numpy.ndarray
        The coordinate values, each 1-D with one value per row.
    dim : str
        The row dimension.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"x": ("image", np.arange(3.0))},
    ...                 coords={"skin": ("image", [1, 1, 2])})
    >>> ds = ds.set_xindex(["skin"], RowIndex)
    >>> ds.sel(skin=2).x.values.tolist()
    [2.0]
    """

    def __init__(self, columns: Mapping[Hashable, np.ndarray], dim: Hashable):
        self.columns: dict[Hashable, np.ndarray] = {k: np.asarray(v) for k, v in columns.items()}
        self.dim = dim
        self._cache: dict[Hashable, _Column] = {}
        sizes = {len(v) for v in self.columns.values()}
        if len(sizes) > 1:
            raise ValidationError(
                f"RowIndex coordinates along {dim!r} differ in length ({sorted(sizes)}); "
                "give every row coordinate one value per row."
            )

    # -- construction ------------------------------------------------------
    @classmethod
    def from_variables(
        cls, variables: Mapping[Any, Variable], *, options: Mapping[str, Any]
    ) -> RowIndex:
        """Build the index from 1-D coordinate variables sharing one dimension.

        Parameters
        ----------
        variables : mapping of str to xarray.Variable
            The coordinates to index (all 1-D along the same dimension).
        options : mapping
            Must be empty; RowIndex takes no options.

        Returns
        -------
        RowIndex
        """
        if options:
            raise ValidationError(
                f"RowIndex takes no options, got {dict(options)!r}; call "
                "set_xindex(names, RowIndex) without keyword arguments."
            )
        if not variables:
            raise ValidationError("RowIndex needs at least one coordinate to index.")
        dims = {var.dims for var in variables.values()}
        bad = {name: var.dims for name, var in variables.items() if var.ndim != 1}
        if bad or len(dims) != 1:
            raise ValidationError(
                f"RowIndex indexes 1-D coordinates along one dimension, got dims "
                f"{ {n: v.dims for n, v in variables.items()} }; drop the other "
                "coordinates from the list."
            )
        (dim,) = next(iter(dims))
        columns = {name: np.asarray(var.values) for name, var in variables.items()}
        return cls(columns, dim)

    def create_variables(
        self, variables: Mapping[Any, Variable] | None = None
    ) -> dict[Hashable, Variable]:
        """Coordinate variables holding this index's (possibly subset) values.

        Parameters
        ----------
        variables : mapping of str to xarray.Variable, optional
            Previous variables, whose attrs and encoding are carried over.

        Returns
        -------
        dict of str to xarray.Variable
        """
        out: dict[Hashable, Variable] = {}
        for name, values in self.columns.items():
            attrs = encoding = None
            if variables is not None and name in variables:
                attrs = variables[name].attrs
                encoding = variables[name].encoding
            out[name] = Variable((self.dim,), values, attrs=attrs, encoding=encoding)
        return out

    # -- queries -------------------------------------------------------------
    def sel(
        self, labels: dict[Any, Any], method: Any = None, tolerance: Any = None
    ) -> IndexSelResult:
        """Positions of the rows matching ``labels`` (see :func:`row_mask`).

        Parameters
        ----------
        labels : dict
            ``{coordinate: scalar | list | slice}`` for coordinates of this index.
        method, tolerance : None
            Inexact matching is not supported; leave them unset.

        Returns
        -------
        xarray.core.indexing.IndexSelResult
            An integer array indexer along the row dimension (keeps the dim).
        """
        if method is not None or tolerance is not None:
            raise SelectionError(
                f"RowIndex matches labels exactly; method={method!r} / "
                f"tolerance={tolerance!r} are not supported. Drop them, or use "
                "slice(start, stop) for ranges."
            )
        _check_known(labels, self.columns)
        for name in labels:
            if name not in self._cache:
                self._cache[name] = _Column(self.columns[name])
        mask = _mask({k: self._cache[k] for k in labels}, labels, len(self))
        return IndexSelResult({self.dim: _ordered_positions(self.columns, labels, mask)})

    def isel(self, indexers: Mapping[Any, int | slice | np.ndarray | Variable]) -> RowIndex | None:
        """Subset the index positionally; a scalar indexer drops it.

        Parameters
        ----------
        indexers : dict
            ``{row_dim: int | slice | array | Variable}``.

        Returns
        -------
        RowIndex or None
        """
        indexer = indexers[self.dim]
        if isinstance(indexer, Variable):
            if indexer.dims != (self.dim,):
                return None
            indexer = indexer.values
        if isinstance(indexer, slice):
            if indexer == slice(None):
                return self
        else:
            indexer = np.asarray(indexer)
            if indexer.ndim != 1:
                return None
        return type(self)({k: v[indexer] for k, v in self.columns.items()}, self.dim)

    def equals(self, other: Index, *, exclude: frozenset[Hashable] | None = None) -> bool:
        """True when ``other`` is a RowIndex with the same names, dim and values.

        Parameters
        ----------
        other : xarray.Index
            Index to compare with.
        exclude : frozenset, optional
            Ignored (the index is 1-D).

        Returns
        -------
        bool
        """
        if not isinstance(other, RowIndex) or other.dim != self.dim:
            return False
        if list(self.columns) != list(other.columns):
            return False
        return all(
            pd.Series(self.columns[k]).equals(pd.Series(other.columns[k])) for k in self.columns
        )

    @classmethod
    def concat(
        cls,
        indexes: Sequence[RowIndex],
        dim: Hashable,
        positions: Iterable[Iterable[int]] | None = None,
    ) -> RowIndex:
        """Concatenate indexes with the same coordinates along the row dimension.

        Parameters
        ----------
        indexes : sequence of RowIndex
            Indexes to join, in order.
        dim : str
            The row dimension.
        positions : list of integer arrays, optional
            Target positions of each index's rows (used by groupby).

        Returns
        -------
        RowIndex
        """
        if not indexes:
            raise ValidationError("cannot concatenate an empty list of RowIndex objects.")
        names = list(indexes[0].columns)
        for idx in indexes:
            if idx.dim != dim or list(idx.columns) != names:
                raise ValidationError(
                    f"cannot concatenate RowIndex over {idx.dim!r} with coordinates "
                    f"{list(idx.columns)} to one over {dim!r} with {names}; give every "
                    "object the same row coordinates."
                )
        columns = {k: np.concatenate([idx.columns[k] for idx in indexes]) for k in names}
        if positions is not None:
            order = np.concatenate([np.asarray(list(p), dtype=np.intp) for p in positions])
            inverse = np.empty_like(order)
            inverse[order] = np.arange(order.size, dtype=np.intp)
            columns = {k: v[inverse] for k, v in columns.items()}
        return cls(columns, dim)

    def key(self) -> Hashable | None:
        """The coordinate rows are aligned on: the first one with unique values.

        For a store view this is the id coordinate. ``None`` when no
        coordinate is unique (such objects align only when equal).

        Returns
        -------
        str or None
        """
        if "_key" not in self.__dict__:
            self._key = next((k for k, v in self.columns.items() if pd.Index(v).is_unique), None)
        return self._key

    def _check_key(self, other: RowIndex, what: str) -> Hashable:
        key = self.key()
        if key is None or key != other.key() or list(self.columns) != list(other.columns):
            raise ValidationError(
                f"cannot {what} objects whose rows along {self.dim!r} differ: rows are "
                f"matched by a unique coordinate (the id), and the two row indexes "
                f"have coordinates {list(self.columns)} and {list(other.columns)} "
                f"(unique: {key!r} and {other.key()!r}). Give both the same row "
                "coordinates (e.g. detach_row_index, drop or add coordinates, "
                "attach_row_index), or select the same rows first with "
                ".sel(<id>=other.<id>.values)."
            )
        return key

    def join(self, other: RowIndex, how: str = "inner") -> RowIndex:
        """Join two row indexes on their id (unique) coordinate, as xarray joins labels.

        Parameters
        ----------
        other : RowIndex
            The other index (same coordinates).
        how : {"inner", "outer"}
            ``"inner"``: this index's rows whose id is in ``other`` (this
            order); ``"outer"``: this index's rows, then ``other``'s new ones.

        Returns
        -------
        RowIndex

        Raises
        ------
        ValidationError
            The indexes have different coordinates or no unique coordinate.
        """
        if self.equals(other):
            return self
        key = self._check_key(other, "align")
        mine = pd.Index(self.columns[key])
        theirs = pd.Index(other.columns[key])
        if how == "inner":
            return self.isel({self.dim: np.flatnonzero(mine.isin(theirs))})  # type: ignore[return-value]
        new = np.flatnonzero(~theirs.isin(mine))
        columns = {
            k: np.concatenate([self.columns[k], other.columns[k][new]]) for k in self.columns
        }
        return type(self)(columns, self.dim)

    def reindex_like(self, other: RowIndex) -> dict[Hashable, Any]:
        """Positional indexer putting this index's rows in ``other``'s id order.

        Parameters
        ----------
        other : RowIndex
            The (joined) index to align with; ids it has and this one has not
            get ``-1`` (filled with NaN by xarray).

        Returns
        -------
        dict
        """
        if self.equals(other):
            return {self.dim: np.arange(len(self), dtype=np.intp)}
        key = self._check_key(other, "reindex")
        return {self.dim: pd.Index(self.columns[key]).get_indexer(other.columns[key])}

    def roll(self, shifts: Mapping[Any, int]) -> RowIndex:
        """Roll the rows like :func:`numpy.roll`.

        Parameters
        ----------
        shifts : mapping
            ``{row_dim: shift}``.

        Returns
        -------
        RowIndex
        """
        shift = shifts[self.dim]
        return type(self)({k: np.roll(v, shift) for k, v in self.columns.items()}, self.dim)

    def rename(
        self, name_dict: Mapping[Any, Hashable], dims_dict: Mapping[Any, Hashable]
    ) -> RowIndex:
        """Follow renamed coordinates and/or row dimension.

        Parameters
        ----------
        name_dict : mapping
            Old to new coordinate names.
        dims_dict : mapping
            Old to new dimension names.

        Returns
        -------
        RowIndex
        """
        if not (set(self.columns) & set(name_dict)) and self.dim not in dims_dict:
            return self
        columns = {name_dict.get(k, k): v for k, v in self.columns.items()}
        return type(self)(columns, dims_dict.get(self.dim, self.dim))

    def to_pandas_index(self) -> pd.Index:
        """A :class:`pandas.MultiIndex` of the coordinates (one level each).

        Returns
        -------
        pandas.Index
        """
        if len(self.columns) == 1:
            ((name, values),) = self.columns.items()
            return pd.Index(values, name=name)
        return pd.MultiIndex.from_arrays(list(self.columns.values()), names=list(self.columns))

    def _copy(self, deep: bool = True, memo: dict[int, Any] | None = None) -> RowIndex:
        columns = {k: (v.copy() if deep else v) for k, v in self.columns.items()}
        return type(self)(columns, self.dim)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __repr__(self) -> str:
        # xarray puts this repr in the errors users meet with a multi-coordinate
        # index (drop_vars / reset_index of one coordinate, aligning objects whose
        # row coordinates differ): it names embstore's way out
        return (
            f"RowIndex(dim={self.dim!r}, coords={list(self.columns)!r}, rows={len(self)})\n"
            "  embstore: drop or un-index one row coordinate with "
            "embstore.selection.drop_row_coords / unindex_row_coords; merge views whose "
            "row coordinates differ with embstore.selection.merge_by_id; reindex on the "
            "id with embstore.selection.reindex_by_id"
        )

    def _repr_inline_(self, max_width: int) -> str:
        text = f"RowIndex({', '.join(map(str, self.columns))})"
        return text if len(text) <= max_width else text[: max(max_width - 3, 0)] + "..."


# --------------------------------------------------------------------------- #
# Helpers used by the Store
# --------------------------------------------------------------------------- #
def row_coord_names(obj: xr.DataArray | xr.Dataset, row_dim: Hashable) -> list[Hashable]:
    """Names of the 1-D coordinates along ``row_dim`` (in the object's order).

    Parameters
    ----------
    obj : xarray.DataArray or xarray.Dataset
        Object to inspect.
    row_dim : str
        The row dimension.

    Returns
    -------
    list of str
    """
    return [name for name, c in obj.coords.items() if c.dims == (row_dim,)]


def _has_full_row_index(obj: xr.DataArray | xr.Dataset, names: list[Hashable]) -> bool:
    idx = {id(obj.xindexes[n]) for n in names if n in obj.xindexes}
    if len(idx) != 1:
        return False
    index = obj.xindexes[names[0]]
    return isinstance(index, RowIndex) and set(index.columns) == set(names)


def attach_row_index(obj: T_Xarray, row_dim: Hashable) -> T_Xarray:
    """Put one :class:`RowIndex` over every 1-D coordinate along ``row_dim``.

    Existing indexes on those coordinates (e.g. the default pandas index of a
    dimension coordinate) are replaced. Calling it again is cheap when the
    index already covers every row coordinate; coordinates added since are
    picked up.

    Parameters
    ----------
    obj : xarray.DataArray or xarray.Dataset
        Object with a ``row_dim`` dimension.
    row_dim : str
        The row dimension (``"image"``, ``"instance"``, ...).

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        The same kind of object, sharing the data (lazy data stays lazy).

    Raises
    ------
    SelectionError
        If ``obj`` has no dimension ``row_dim``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.zeros(3), dims="image",
    ...                   coords={"image_id": ("image", [5, 6, 7])})
    >>> type(attach_row_index(da, "image").xindexes["image_id"]).__name__
    'RowIndex'
    """
    if row_dim not in obj.dims:
        raise SelectionError(
            f"row dimension {row_dim!r} not found; the object has dims "
            f"{list(obj.dims)}. Pass one of them as row_dim."
        )
    names = row_coord_names(obj, row_dim)
    if not names:
        log.debug("no coordinates along %r: nothing to index", row_dim)
        return obj
    if _has_full_row_index(obj, names):
        return obj
    # drop every index touching a row coordinate (whole groups, so that
    # multi-coordinate indexes are not left half-dropped)
    to_drop: set[Hashable] = set()
    for _index, index_vars in obj.xindexes.group_by_index():
        if set(index_vars) & set(names):
            to_drop |= set(index_vars)
    if to_drop:
        obj = obj.drop_indexes(list(to_drop))
    return obj.set_xindex(names, RowIndex)


def detach_row_index(obj: T_Xarray) -> T_Xarray:
    """Remove every :class:`RowIndex`, keeping the coordinates as plain ones.

    Needed before dropping or overwriting a single row coordinate, which
    xarray refuses while it is part of a multi-coordinate index.

    Parameters
    ----------
    obj : xarray.DataArray or xarray.Dataset
        Object possibly carrying a RowIndex.

    Returns
    -------
    xarray.DataArray or xarray.Dataset

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = attach_row_index(xr.DataArray(np.zeros(2), dims="image",
    ...     coords={"skin": ("image", [1, 2]), "id": ("image", [3, 4])}), "image")
    >>> detach_row_index(da).drop_vars("skin").coords["id"].values.tolist()
    [3, 4]
    """
    names = [n for n, idx in obj.xindexes.items() if isinstance(idx, RowIndex)]
    return obj.drop_indexes(names) if names else obj


def shared_row_coords(*objs: T_Xarray, row_dim: Hashable | None = None) -> list[T_Xarray]:
    """Restrict objects to the row coordinates they all have, ready to merge or align.

    xarray aligns two objects only when their indexes cover the same
    coordinate names; stores from different models often carry different
    row coordinates (a SigLIP store has ``category``, a DETR store does not).
    This keeps, in every object, the row coordinates common to all of them
    (in the first object's order) under one :class:`RowIndex`, so
    ``xr.merge(shared_row_coords(a, b), join="inner", compat="override")``
    matches rows by id whatever their order.

    Parameters
    ----------
    *objs : xarray.DataArray or xarray.Dataset
        Objects sharing a row dimension and an id coordinate.
    row_dim : str, optional
        The row dimension (default: the dimension of the first object's
        first RowIndex).

    Returns
    -------
    list
        The objects, each with only the shared row coordinates.

    Raises
    ------
    ValidationError
        No object has a row index and no ``row_dim`` was given.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> a = attach_row_index(xr.Dataset({"x": ("image", [1.0, 2.0])},
    ...     coords={"id": ("image", [7, 8]), "skin": ("image", [1, 2])}), "image")
    >>> b = attach_row_index(xr.Dataset({"y": ("image", [9.0, 8.0])},
    ...     coords={"id": ("image", [8, 7]), "cat": ("image", ["p", "q"])}), "image")
    >>> m = xr.merge(shared_row_coords(a, b), join="inner", compat="override")
    >>> m.y.values.tolist(), list(m.coords)
    ([8.0, 9.0], ['id'])
    """
    if row_dim is None:
        found = [i.dim for o in objs for i in o.xindexes.values() if isinstance(i, RowIndex)]
        if not found:
            raise ValidationError("no RowIndex found; pass row_dim=... (e.g. 'image').")
        row_dim = found[0]
    names = [row_coord_names(o, row_dim) for o in objs]
    common = [n for n in names[0] if all(n in other for other in names[1:])]
    out = []
    for obj, have in zip(objs, names):
        extra = [n for n in have if n not in common]
        plain = detach_row_index(obj).drop_vars(extra)
        out.append(attach_row_index(plain, row_dim))
    return out


def _row_index(obj: xr.DataArray | xr.Dataset) -> RowIndex | None:
    """``obj``'s (first) RowIndex, if any."""
    return next((i for i in obj.xindexes.values() if isinstance(i, RowIndex)), None)


def _row_dim_of(obj: xr.DataArray | xr.Dataset) -> Hashable:
    """The dimension of ``obj``'s RowIndex (the row dimension of a store view)."""
    index = _row_index(obj)
    if index is not None:
        return index.dim
    raise ValidationError(
        "no RowIndex found on this object; pass row_dim=... (e.g. 'image'), or "
        "call attach_row_index(obj, row_dim) first."
    )


def _check_row_coords(obj: xr.DataArray | xr.Dataset, row_dim: Hashable, names: tuple) -> None:
    present = row_coord_names(obj, row_dim)
    unknown = [n for n in names if n not in present]
    if unknown:
        raise SelectionError(
            f"{', '.join(map(repr, unknown))} is not a row coordinate along {row_dim!r}; "
            f"the row coordinates are {present}."
        )


def drop_row_coords(obj: T_Xarray, *names: Hashable, row_dim: Hashable | None = None) -> T_Xarray:
    """``drop_vars`` for row coordinates: the others stay indexed.

    xarray refuses ``obj.drop_vars("skin")`` while ``skin`` belongs to the
    :class:`RowIndex` (it never drops part of a multi-coordinate index);
    this drops the coordinates and rebuilds the index over the rest, so
    ``.sel`` on one or several of them, and alignment by id, keep working.

    Parameters
    ----------
    obj : xarray.DataArray or xarray.Dataset
        A store view (or any object with a RowIndex).
    *names : str
        Row coordinates to drop.
    row_dim : str, optional
        The row dimension (default: that of the object's RowIndex).

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        The same kind of object without those coordinates (lazy data stays lazy).

    Raises
    ------
    SelectionError
        A name is not a row coordinate (the message lists them).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = attach_row_index(xr.DataArray(np.arange(3.0), dims="image", coords={
    ...     "image_id": ("image", [7, 8, 9]), "skin": ("image", [1, 2, 1]),
    ...     "lighting": ("image", ["dim", "dim", "well"])}), "image")
    >>> no_skin = drop_row_coords(da, "skin")
    >>> sorted(no_skin.coords), no_skin.sel(lighting="dim").image_id.values.tolist()
    (['image_id', 'lighting'], [7, 8])
    """
    row_dim = _row_dim_of(obj) if row_dim is None else row_dim
    _check_row_coords(obj, row_dim, names)
    return attach_row_index(detach_row_index(obj).drop_vars(list(names)), row_dim)


def unindex_row_coords(
    obj: T_Xarray, *names: Hashable, row_dim: Hashable | None = None
) -> T_Xarray:
    """``reset_index`` for row coordinates: keep them as plain coordinates, the others indexed.

    xarray's ``obj.reset_index("skin")`` removes the whole :class:`RowIndex`
    (it keeps the other coordinates indexed only for its own
    ``pandas.MultiIndex``). This takes the named coordinates out of the index
    and keeps their values as plain coordinates; the other row coordinates
    stay under one RowIndex. Overwrite an unindexed coordinate with
    ``assign_coords``, then index it again with :func:`attach_row_index`.

    Parameters
    ----------
    obj : xarray.DataArray or xarray.Dataset
        A store view (or any object with a RowIndex).
    *names : str
        Row coordinates to take out of the index.
    row_dim : str, optional
        The row dimension (default: that of the object's RowIndex).

    Returns
    -------
    xarray.DataArray or xarray.Dataset

    Raises
    ------
    SelectionError
        A name is not a row coordinate (the message lists them).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = attach_row_index(xr.DataArray(np.arange(3.0), dims="image", coords={
    ...     "image_id": ("image", [7, 8, 9]), "skin": ("image", [1, 2, 1])}), "image")
    >>> plain = unindex_row_coords(da, "skin")
    >>> "skin" in plain.coords, "skin" in plain.xindexes, "image_id" in plain.xindexes
    (True, False, True)
    """
    row_dim = _row_dim_of(obj) if row_dim is None else row_dim
    _check_row_coords(obj, row_dim, names)
    plain = detach_row_index(obj)
    kept = [n for n in row_coord_names(plain, row_dim) if n not in names]
    return plain.set_xindex(kept, RowIndex) if kept else plain


def merge_by_id(
    *objs: xr.DataArray | xr.Dataset,
    join: Literal["inner", "outer", "left"] = "inner",
    row_dim: Hashable | None = None,
) -> xr.Dataset:
    """Merge views of several stores row by row on their id, keeping every row coordinate.

    ``xr.merge([a, b], join="inner", compat="override")`` matches rows by id
    when the objects carry the same row coordinates. When one store has a
    coordinate the other lacks (a SigLIP store's ``category``), xarray does
    not pair their indexes at all (it matches indexes by coordinate names)
    and raises ``conflicting indexes``. This merges on the coordinates all
    objects share (:func:`shared_row_coords`), then puts every other row
    coordinate back by id, and indexes the result with one
    :class:`RowIndex`.

    Parameters
    ----------
    *objs : xarray.Dataset or named xarray.DataArray
        Views with the same row dimension and id coordinate.
    join : {"inner", "outer", "left"}, default "inner"
        Which ids to keep, as in :func:`xarray.merge`: ``"inner"`` the ids
        all objects have, in the first object's order; ``"outer"`` every id
        (missing rows and missing coordinate values are NaN);
        ``"left"`` the first object's ids.
    row_dim : str, optional
        The row dimension (default: that of the first object's RowIndex).

    Returns
    -------
    xarray.Dataset
        One dataset; where two objects disagree on a shared coordinate's
        value for the same id, the first object's value is kept (as with
        ``compat="override"``).

    Raises
    ------
    ValidationError
        Fewer than two objects, an unnamed DataArray, an unknown ``join``,
        or no unique (id) coordinate shared by all objects.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> a = attach_row_index(xr.Dataset({"x": ("image", [1.0, 2.0, 3.0])},
    ...     coords={"image_id": ("image", [7, 8, 9]), "skin": ("image", [1, 2, 1])}), "image")
    >>> b = attach_row_index(xr.Dataset({"y": ("image", [80.0, 70.0])},
    ...     coords={"image_id": ("image", [8, 7]), "skin": ("image", [2, 1]),
    ...             "category": ("image", ["cat", "dog"])}), "image")
    >>> m = merge_by_id(a, b)
    >>> m.image_id.values.tolist(), m.y.values.tolist(), m.category.values.tolist()
    ([7, 8], [70.0, 80.0], ['dog', 'cat'])
    >>> m.sel(category="cat", skin=2).x.values.tolist()
    [2.0]
    """
    if len(objs) < 2:
        raise ValidationError(f"merge_by_id needs at least two objects, got {len(objs)}.")
    if join not in ("inner", "outer", "left"):
        raise ValidationError(f"join must be 'inner', 'outer' or 'left', got {join!r}.")
    datasets: list[xr.Dataset] = []
    for k, obj in enumerate(objs):
        if isinstance(obj, xr.DataArray):
            if obj.name is None:
                raise ValidationError(
                    f"object {k} is a DataArray without a name; name it (da.rename('...')) "
                    "or pass a Dataset."
                )
            obj = obj.to_dataset()
        datasets.append(obj)
    row_dim = _row_dim_of(datasets[0]) if row_dim is None else row_dim
    shared = shared_row_coords(*datasets, row_dim=row_dim)
    keys = {_key_of(d) for d in shared}
    if len(keys) != 1 or None in keys:
        raise ValidationError(
            f"merge_by_id matches rows on a coordinate with unique values that every "
            f"object has (the id); found {sorted(map(str, keys))} along {row_dim!r}. "
            "Rename the id coordinates to one name first."
        )
    (key,) = keys
    merged = xr.merge(shared, join=join, compat="override", combine_attrs="drop_conflicts")
    ids = pd.Index(np.asarray(merged[key].values))
    extra: dict[Hashable, np.ndarray] = {}
    for ds in datasets:
        own = pd.Index(np.asarray(ds[key].values))
        where = own.get_indexer(ids)
        for name in row_coord_names(ds, row_dim):
            if name in merged.coords:
                continue
            values = _take_or_missing(np.asarray(ds[name].values), where)
            if name in extra:  # an earlier object has it: it wins, this one fills its gaps
                first = extra[name]
                gaps = pd.isna(first)
                values = np.where(gaps, values, first) if gaps.any() else first
            extra[name] = values
    merged = detach_row_index(merged).assign_coords(
        {name: (row_dim, values) for name, values in extra.items()}
    )
    return attach_row_index(merged, row_dim)


def reindex_by_id(obj: T_Xarray, ids: Any, *, row_dim: Hashable | None = None) -> T_Xarray:
    """``reindex`` on the id: the rows of ``ids``, in that order, NaN for ids not present.

    ``obj.reindex(image_id=[...])`` needs an indexed *dimension* coordinate in
    xarray; the id of a store view is a coordinate along ``image``, so
    xarray raises ``conflicting indexes``. ``.sel(image_id=[...])`` returns the
    rows in the requested order but raises for an absent id; this fills
    absent ids with NaN rows (their other row coordinates NaN too), as
    ``reindex`` does.

    Parameters
    ----------
    obj : xarray.DataArray or xarray.Dataset
        A store view (or any object with a RowIndex that has a unique coordinate).
    ids : array-like
        The ids wanted, in order (unique).
    row_dim : str, optional
        The row dimension (default: that of the object's RowIndex).

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        One row per id (lazy data is read only for the present ids).

    Raises
    ------
    ValidationError
        ``ids`` repeats a value, or the object has no unique (id) coordinate.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = attach_row_index(xr.DataArray([1.0, 2.0, 3.0], dims="image", coords={
    ...     "image_id": ("image", [7, 8, 9]), "skin": ("image", [1, 2, 1])}), "image")
    >>> r = reindex_by_id(da, [9, 5, 7])
    >>> r.values.tolist(), r.skin.values.tolist()
    ([3.0, nan, 1.0], [1.0, nan, 1.0])
    """
    row_dim = _row_dim_of(obj) if row_dim is None else row_dim
    index = _row_index(obj)
    key = index.key() if index is not None else None
    if index is None or key is None:
        raise ValidationError(
            f"reindex_by_id needs a row coordinate with unique values (the id) along "
            f"{row_dim!r}; the row coordinates are {row_coord_names(obj, row_dim)}."
        )
    wanted = np.asarray(ids)
    if wanted.ndim != 1 or not pd.Index(wanted).is_unique:
        raise ValidationError(
            f"ids must be a 1-D list of unique {key!r} values; got shape {wanted.shape} "
            "with repeats or more dimensions. Select repeated rows with .sel instead."
        )
    where = pd.Index(index.columns[key]).get_indexer(wanted)
    columns = {
        name: (wanted if name == key else _take_or_missing(values, where))
        for name, values in index.columns.items()
    }
    target = xr.Dataset(coords={name: (row_dim, values) for name, values in columns.items()})
    return obj.reindex_like(attach_row_index(target, row_dim))


def _key_of(obj: xr.Dataset) -> Hashable | None:
    index = _row_index(obj)
    return index.key() if index is not None else None


def _take_or_missing(values: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``values[where]``, with NaN where ``where`` is -1 (as xarray fills missing labels)."""
    if (where >= 0).all():
        return values[where]
    if values.dtype.kind in "iufb":
        out = values.astype(np.float64)[where]
    else:
        out = values.astype(object)[where]
    out[where < 0] = np.nan
    return out


def select_rows(obj: T_Xarray, row_dim: Hashable, **labels: Any) -> T_Xarray:
    """Select rows by coordinate labels with :class:`RowIndex` semantics.

    Attaches (or refreshes) the row index when needed, checks the names,
    then calls ``obj.sel``. Labels for other indexed coordinates (e.g. a
    ``query`` dimension coordinate) are passed on to xarray.

    Parameters
    ----------
    obj : xarray.DataArray or xarray.Dataset
        Object with a ``row_dim`` dimension.
    row_dim : str
        The row dimension.
    **labels
        ``coordinate=scalar | list | slice``.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        The matching rows (row dimension kept, order preserved, lazy).

    Raises
    ------
    SelectionError
        Unknown coordinate name, or a label / combination matching no row.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"x": ("image", np.arange(4))},
    ...                 coords={"skin": ("image", [1, 2, 2, 3])})
    >>> select_rows(ds, "image", skin=[2, 3]).x.values.tolist()
    [1, 2, 3]
    """
    obj = attach_row_index(obj, row_dim)
    if not labels:
        return obj
    unknown = [k for k in labels if k not in obj.coords and k not in obj.dims]
    if unknown:
        available = sorted(map(str, obj.coords))
        raise SelectionError(
            f"unknown coordinate(s) {', '.join(map(repr, unknown))}; available "
            f"coordinates: {available}."
        )
    not_indexed = [k for k in labels if k in obj.coords and k not in obj.xindexes]
    if not_indexed:
        raise SelectionError(
            f"coordinate(s) {not_indexed} are not along {row_dim!r} and have no index; "
            f"select on row coordinates {row_coord_names(obj, row_dim)} or use .isel."
        )
    return obj.sel(labels)
