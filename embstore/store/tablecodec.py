"""Table and blob encoding, written once for every backend.

A table is stored as named columns plus a JSON ``meta`` dict
(``columns``, ``index``, ``kinds``, ``default_index``); a blob as a 1-D
``uint8`` array. This module owns every conversion between those stored forms
and what users pass in or get back:

- :func:`encode_frame` / :func:`decode_frame`: DataFrame <-> columns + meta
  (index kept, datetimes as int64 nanoseconds);
- :func:`storable_column` / :func:`column_from_storage`: one column <-> the
  array a backend writes (strings as fixed-width unicode, bools as ``int8``
  tagged ``dtype="bool"`` where the format has no bool);
- :func:`blob_array` / :func:`blob_bytes`: bytes <-> ``uint8`` array;
- :func:`skipped_frame`: the ``_skipped`` table of ``record_skipped``.

The Zarr backends and the HDF5 backend call these, so a table written by one
reads back identically from the other.

Examples
--------
>>> import pandas as pd
>>> cols, meta = encode_frame(pd.DataFrame({"skin": [1, 5], "who": ["a", "b"]}))
>>> sorted(cols), meta["kinds"]
(['index', 'skin', 'who'], {'index': 'i', 'skin': 'i', 'who': 'str'})
>>> decode_frame(cols, meta)["who"].tolist()
['a', 'b']
>>> blob_bytes(blob_array(b"abc"))
b'abc'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "BLOBS",
    "TABLES",
    "TABLE_ATTR",
    "blob_array",
    "blob_bytes",
    "column_from_storage",
    "column_key",
    "decode_frame",
    "encode_frame",
    "skipped_frame",
    "skipped_meta",
    "storable_column",
]

#: Group holding one subgroup per table version.
TABLES = "_tables"
#: Group holding one ``uint8`` array per blob version.
BLOBS = "_blobs"
#: Attribute of a table group holding its ``meta``.
TABLE_ATTR = "embstore_table"


def column_key(i: int) -> str:
    """Name of the ``i``-th column array inside a table group (the column name is an attribute)."""
    return f"c{i}"


def encode_frame(df: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Columns and meta of a DataFrame (its index becomes leading columns).

    Parameters
    ----------
    df : pandas.DataFrame
        Numbers, bools, strings or datetimes (checked by the caller).

    Returns
    -------
    columns : dict of str to numpy.ndarray
        One array per column, index columns first.
    meta : dict
        ``columns`` (order), ``index`` (index column names), ``kinds``
        (``"datetime"``, ``"str"`` or the NumPy kind) and ``default_index``.
    """
    flat = df.reset_index()
    index_cols = [c for c in flat.columns if c not in df.columns]
    columns: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    for c in flat.columns:
        s = flat[c]
        if pd.api.types.is_datetime64_any_dtype(s):
            columns[str(c)] = s.astype("datetime64[ns]").astype("int64").to_numpy()
            kinds[str(c)] = "datetime"
        elif s.dtype.kind in "biuf":
            columns[str(c)] = s.to_numpy()
            kinds[str(c)] = s.dtype.kind
        else:
            columns[str(c)] = s.astype(str).to_numpy().astype(str)
            kinds[str(c)] = "str"
    meta = {
        "columns": [str(c) for c in flat.columns],
        "index": [str(c) for c in index_cols],
        "kinds": kinds,
        "default_index": list(df.index.names) == [None] and isinstance(df.index, pd.RangeIndex),
    }
    return columns, meta


def decode_frame(columns: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> pd.DataFrame:
    """Inverse of :func:`encode_frame`."""
    data = {}
    for c in meta["columns"]:
        v = columns[c]
        if meta["kinds"].get(c) == "datetime":
            v = pd.to_datetime(v.astype("int64"))
        data[c] = v
    df = pd.DataFrame(data, columns=meta["columns"])
    if meta.get("default_index"):
        return df.drop(columns=meta["index"])
    return df.set_index(meta["index"]) if meta["index"] else df


def storable_column(values: Any, bool_as_int8: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """The array a backend stores for one column, and the extra attributes it needs.

    Parameters
    ----------
    values : array-like
        Column values.
    bool_as_int8 : bool
        Store bools as ``int8`` tagged ``{"dtype": "bool"}`` (formats without
        a bool type, such as HDF5).

    Returns
    -------
    array : numpy.ndarray
        Strings and objects as fixed-width unicode (``<U``), otherwise as given.
    attrs : dict
        Attributes to store with the column (besides its name).

    Examples
    --------
    >>> a, at = storable_column([True, False], bool_as_int8=True)
    >>> a.dtype.name, at
    ('int8', {'dtype': 'bool'})
    """
    arr = np.asarray(values)
    if arr.dtype.kind in "UOT":
        return arr.astype(str), {}
    if arr.dtype.kind == "b" and bool_as_int8:
        return arr.astype(np.int8), {"dtype": "bool"}
    return arr, {}


def column_from_storage(values: Any, attrs: Mapping[str, Any] | None = None) -> np.ndarray:
    """Inverse of :func:`storable_column`: strings as ``<U`` (``<U1`` when empty), tagged bools as bool.

    Examples
    --------
    >>> column_from_storage(np.array(["a", "bc"], dtype=object)).dtype.str
    '<U2'
    >>> column_from_storage(np.array([1, 0], dtype="int8"), {"dtype": b"bool"}).tolist()
    [True, False]
    """
    out = np.asarray(values)
    if out.dtype.kind in "OTS":
        items = [v.decode() if isinstance(v, bytes) else v for v in out.astype(object).tolist()]
        out = np.array(items, dtype=str) if out.ndim else np.array(str(out.item()), dtype=str)
        if out.size == 0:
            out = out.astype("<U1")
    elif attrs is not None and attrs.get("dtype") in ("bool", b"bool"):
        out = out.astype(bool)
    return out


def blob_array(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Bytes as the 1-D ``uint8`` array a backend stores."""
    return np.frombuffer(bytes(data), dtype=np.uint8)


def blob_bytes(values: Any) -> bytes:
    """Inverse of :func:`blob_array`."""
    return np.asarray(values, dtype=np.uint8).tobytes()


def skipped_meta() -> dict[str, Any]:
    """Meta of the ``_skipped`` tables (columns ``id`` and ``reason``, default index)."""
    return {"columns": ["id", "reason"], "index": [], "kinds": {}, "default_index": True}


def skipped_frame(
    old: Mapping[str, np.ndarray] | None, ids: Sequence[Any], reasons: Sequence[str]
) -> dict[str, np.ndarray]:
    """Columns of a ``_skipped`` table: the ``old`` rows followed by new ones.

    Examples
    --------
    >>> cols = skipped_frame(None, [1, 2], ["bad", "worse"])
    >>> cols["id"].tolist(), cols["reason"].tolist()
    ([1, 2], ['bad', 'worse'])
    """
    new = pd.DataFrame({"id": np.asarray(ids), "reason": list(reasons)})
    prev = pd.DataFrame({"id": old["id"], "reason": old["reason"]}) if old is not None else None
    df = pd.concat([prev, new], ignore_index=True) if prev is not None and len(prev) else new
    if df["id"].dtype == object:
        df["id"] = df["id"].astype(str)
    return {"id": df["id"].to_numpy(), "reason": df["reason"].to_numpy().astype(str)}
