"""Checks of user input shared by every store call: names, ids, attributes, chunking.

Every check runs *before* anything is buffered or written, so a refused call
leaves the writer exactly as it was. Each raises a
:class:`~embstore.errors.ValidationError` subclass whose message names the
bad value and the rule it broke.

Names
-----
Variable, dimension, coordinate, table and blob names become file or
directory names inside the store (``run.zarr/<name>/zarr.json``, a group in
the HDF5 file), so one rule guards them all (:func:`check_name`):

* a string of at most :data:`MAX_NAME_LENGTH` characters;
* letters, digits, ``_``, ``-`` and ``.`` only: no path separator, no NUL,
  no whitespace, so a name can never point outside the store;
* starting with a letter or a digit: no ``.``/``..``/dots-only names, no
  hidden files, and ``_`` stays reserved for embstore's own entries
  (``_embstore``, ``_tables``, ``_blobs``);
* not a reserved file name of the formats (:data:`RESERVED_NAMES`, compared
  case-insensitively) nor a name the store uses already (the id, the row
  dimension, ragged bookkeeping arrays), passed by the caller.

Examples
--------
>>> check_name("coordinate", "skin_type")
'skin_type'
>>> check_name("coordinate", "../other.zarr/image_id")
Traceback (most recent call last):
...
embstore.errors.InvalidNameError: coordinate name '../other.zarr/image_id' is not valid: ...
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np

from ..errors import DTypeMismatchError, InvalidNameError, ValidationError

__all__ = [
    "MAX_ATTR_DEPTH",
    "MAX_CHUNK_BYTES",
    "MAX_NAME_LENGTH",
    "RESERVED_NAMES",
    "check_attrs",
    "check_chunk_rows",
    "check_ids",
    "check_name",
    "check_table_frame",
    "reject_mixed",
]

#: Longest accepted name: file names are at most 255 bytes on common file
#: systems, and chunk and temporary files add suffixes.
MAX_NAME_LENGTH = 200

#: File names the Zarr (v2 and v3) formats and embstore use inside a store.
RESERVED_NAMES = frozenset(
    {"zarr.json", ".zattrs", ".zgroup", ".zarray", ".zmetadata", "con", "nul", "prn", "aux"}
)

#: Largest chunk ``chunk_rows`` may make (bytes of one chunk of the widest variable).
MAX_CHUNK_BYTES = 512 * 2**20

#: Deepest nesting of lists/dicts accepted in attributes.
MAX_ATTR_DEPTH = 32

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


def check_name(kind: str, name: Any, reserved: Collection[str] = ()) -> str:
    """Return ``name`` if it is a valid store name, else raise.

    Parameters
    ----------
    kind : str
        What the name is for (``"variable"``, ``"coordinate"``, ``"table"``,
        ``"blob"``...), used in the message.
    name : Any
        The name to check.
    reserved : collection of str, optional
        Names already taken in this store (id, row dim, variables...).

    Returns
    -------
    str
        ``name``.

    Raises
    ------
    InvalidNameError
        The message names the value and the rule it breaks.

    Examples
    --------
    >>> check_name("table", "persons")
    'persons'
    >>> check_name("table", "zarr.json")
    Traceback (most recent call last):
    ...
    embstore.errors.InvalidNameError: table name 'zarr.json' is not valid: it is reserved ...
    """
    if not isinstance(name, str):
        rule = f"it must be a string, not {type(name).__name__}"
    elif not name:
        rule = "it is empty"
    elif len(name) > MAX_NAME_LENGTH:
        rule = f"it has {len(name)} characters, more than the limit of {MAX_NAME_LENGTH}"
    elif not _NAME_RE.fullmatch(name):
        if "/" in name or "\\" in name:
            rule = "it contains a path separator ('/' or '\\'), which could point outside the store"
        elif "\x00" in name:
            rule = "it contains a NUL character"
        elif not (name[0].isascii() and name[0].isalnum()):
            rule = "it must start with an ASCII letter or digit ('.', '_' and '-' at the start are reserved)"
        else:
            rule = "it may only contain letters, digits, '_', '-' and '.'"
    elif name.lower() in RESERVED_NAMES:
        rule = f"it is reserved by the store format (reserved: {sorted(RESERVED_NAMES)})"
    elif name in reserved:
        rule = "it is already used by this store (id, row dimension, variable or ragged bookkeeping array)"
    else:
        return name
    raise InvalidNameError(
        f"{kind} name {name!r} is not valid: {rule}. Use a short name of letters, digits, '_', '-' or '.', "
        "e.g. 'skin_type'"
    )


def _mixed(values: Any) -> tuple[Any, Any] | None:
    """First str and first non-str element of a list mixing them (None when not mixed)."""
    first_str = first_other = None
    has_str = has_other = False
    for v in values:
        if isinstance(v, (str, np.str_)):
            if not has_str:
                first_str, has_str = v, True
        elif not has_other:
            first_other, has_other = v, True
        if has_str and has_other:
            return first_other, first_str
    return None


def reject_mixed(what: str, values: Any) -> None:
    """Refuse a Python sequence that mixes strings with other values.

    ``np.asarray([1, "a"])`` silently turns ``1`` into ``"1"``; this check
    runs on the input before that conversion (NumPy arrays have one dtype
    and pass).

    Parameters
    ----------
    what : str
        Description for the message (``"ids"``, ``"coordinate 'skin'"``).
    values : Any
        The values as given by the caller.

    Raises
    ------
    DTypeMismatchError
        Strings mixed with numbers (or other objects).

    Examples
    --------
    >>> reject_mixed("ids", [1, 2])
    >>> reject_mixed("ids", [1, "a"])
    Traceback (most recent call last):
    ...
    embstore.errors.DTypeMismatchError: ids mix strings and other values (e.g. 1 and 'a'); ...
    """
    if isinstance(values, np.ndarray) and values.dtype != object:
        return
    if isinstance(values, (str, bytes)):
        return
    try:
        found = _mixed(values)
    except TypeError:  # not iterable: the caller's shape check reports it
        return
    if found is not None:
        raise DTypeMismatchError(
            f"{what} mix strings and other values (e.g. {found[0]!r} and {found[1]!r}); use one type: "
            "all ints or all strings"
        )


_INT64_MAX = int(np.iinfo(np.int64).max)
_INT64_MIN = int(np.iinfo(np.int64).min)


def check_ids(ids: Any) -> np.ndarray:
    """Convert row ids to a 1-D ``int64`` or unicode array, refusing lossy conversions.

    Parameters
    ----------
    ids : sequence or numpy.ndarray
        One id per row: ints (fitting int64) or strings, not mixed.

    Returns
    -------
    numpy.ndarray
        A new array (never the caller's): ``int64`` or ``<U``.

    Raises
    ------
    ShapeMismatchError
        Not 1-D.
    DTypeMismatchError
        Mixed types, ids outside int64 (uint64 above 2**63 - 1, Python ints
        beyond it) or ids that are neither ints nor strings.

    Examples
    --------
    >>> check_ids([3, 1]).dtype
    dtype('int64')
    >>> check_ids(np.array([2**63], dtype=np.uint64))
    Traceback (most recent call last):
    ...
    embstore.errors.DTypeMismatchError: ids must fit int64 ...
    """
    from ..errors import ShapeMismatchError

    reject_mixed("ids", ids)
    try:
        arr = np.asarray(ids)
    except (OverflowError, ValueError, TypeError) as exc:
        raise DTypeMismatchError(
            f"ids could not be read as one array ({exc}); pass a list of ints or strings"
        ) from exc
    if arr.ndim != 1:
        raise ShapeMismatchError(f"ids must be 1-D (one id per row); got shape {arr.shape}")
    if (
        arr.dtype.kind == "O"
        and len(arr)
        and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in arr
        )
    ):
        big = [int(v) for v in arr if not _INT64_MIN <= int(v) <= _INT64_MAX]
        _range_error(big)
        arr = arr.astype(np.int64)
    if (
        arr.dtype.kind == "u"
        and arr.dtype.itemsize == 8
        and len(arr)
        and int(arr.max()) > _INT64_MAX
    ):
        _range_error([int(v) for v in arr[arr > np.uint64(_INT64_MAX)][:3]])
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind in "UT" or (arr.dtype.kind == "O" and all(isinstance(v, str) for v in arr)):
        return arr.astype(str)
    raise DTypeMismatchError(
        f"ids must be ints or strings; got dtype {arr.dtype} (e.g. {arr[:2].tolist()!r})"
    )


def _range_error(big: list[int]) -> None:
    if big:
        raise DTypeMismatchError(
            f"ids must fit int64 ({_INT64_MIN}..{_INT64_MAX}); got {big[:3]}. Store them as strings "
            "(str(id)) or map them to smaller ints"
        )


def check_coord_ints(name: str, arr: np.ndarray) -> None:
    """Refuse integer coordinate values that do not fit int64 (uint64 above 2**63 - 1).

    Parameters
    ----------
    name : str
        Coordinate name.
    arr : numpy.ndarray
        Values (any dtype; only ``uint64`` and object ints are checked).

    Raises
    ------
    DTypeMismatchError
        A value outside int64.
    """
    big: list[int] = []
    if (
        arr.dtype.kind == "u"
        and arr.dtype.itemsize == 8
        and len(arr)
        and int(arr.max()) > _INT64_MAX
    ):
        big = [int(v) for v in arr[arr > np.uint64(_INT64_MAX)][:3]]
    elif arr.dtype.kind == "O":
        big = [int(v) for v in arr if isinstance(v, int) and not _INT64_MIN <= v <= _INT64_MAX][:3]
    if big:
        raise DTypeMismatchError(
            f"coordinate {name!r} has integers outside int64: {big}; store them as strings or floats"
        )


def _depth(obj: Any, limit: int) -> int:
    """Nesting depth of lists/dicts, stopping early once past ``limit``."""
    stack = [(obj, 1)]
    deepest = 0
    while stack:
        o, d = stack.pop()
        if isinstance(o, (list, tuple, dict)):
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            items = o.values() if isinstance(o, dict) else o
            stack.extend((v, d + 1) for v in items)
    return deepest


def check_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Check user attributes: string keys, JSON values, bounded nesting, finite floats.

    Parameters
    ----------
    attrs : mapping
        Attributes to store.

    Returns
    -------
    dict
        The attributes as a plain dict.

    Raises
    ------
    ValidationError
        A value that is not JSON-serialisable, nested deeper than
        :data:`MAX_ATTR_DEPTH`, or a key that is not a string.

    Examples
    --------
    >>> check_attrs({"model": "detr", "layers": [1, [2, 3]]})
    {'model': 'detr', 'layers': [1, [2, 3]]}
    >>> check_attrs({"x": {1}})
    Traceback (most recent call last):
    ...
    embstore.errors.ValidationError: attribute 'x' = {1} is not JSON-serialisable ...
    """
    import json

    if not isinstance(attrs, Mapping):
        raise ValidationError(f"attrs must be a dict of JSON values; got {type(attrs).__name__}")
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if not isinstance(key, str):
            raise ValidationError(f"attribute key {key!r} must be a string")
        depth = _depth(value, MAX_ATTR_DEPTH)
        if depth > MAX_ATTR_DEPTH:
            raise ValidationError(
                f"attribute {key!r} is nested more than {MAX_ATTR_DEPTH} levels deep; flatten it or store it "
                "as a JSON string or a blob (write_blob)"
            )
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            raise ValidationError(
                f"attribute {key!r} = {value!r:.80} is not JSON-serialisable ({exc}); use str/int/float/bool/None "
                "and lists or dicts of them (no NaN/Inf)"
            ) from exc
        out[key] = value
    return out


def check_chunk_rows(label: str, value: Any, row_bytes: int | None = None) -> int | None:
    """Check a ``chunk_rows``-like setting: a positive int (not a bool), chunk <= 512 MiB.

    Parameters
    ----------
    label : str
        Parameter name for the message.
    value : Any
        The setting (None means "choose automatically").
    row_bytes : int, optional
        Bytes of one row of the widest variable, when known.

    Returns
    -------
    int or None
        The value as an int.

    Raises
    ------
    ValidationError
        Not a positive integer, a bool, or chunks over :data:`MAX_CHUNK_BYTES`.

    Examples
    --------
    >>> check_chunk_rows("chunk_rows", 64)
    64
    >>> check_chunk_rows("chunk_rows", True)
    Traceback (most recent call last):
    ...
    embstore.errors.ValidationError: chunk_rows=True must be a positive integer or None ...
    """
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValidationError(
            f"{label}={value!r} must be a positive integer or None (e.g. 64), not a bool"
        )
    value = int(value)
    if row_bytes is not None and value * max(1, int(row_bytes)) > MAX_CHUNK_BYTES:
        raise ValidationError(
            f"{label}={value} makes chunks of {value * int(row_bytes) / 2**20:.0f} MiB ({row_bytes} bytes per row); "
            f"the limit is {MAX_CHUNK_BYTES // 2**20} MiB per chunk: use at most "
            f"{max(1, MAX_CHUNK_BYTES // max(1, int(row_bytes)))} rows"
        )
    return value


def check_table_frame(df: Any) -> None:
    """Refuse a table that cannot round-trip: not a DataFrame, or repeated column/index names.

    Parameters
    ----------
    df : Any
        The table given to :meth:`embstore.Store.write_table`.

    Raises
    ------
    ValidationError
        The message names the repeated columns.

    Examples
    --------
    >>> import pandas as pd
    >>> check_table_frame(pd.DataFrame([[1, 2]], columns=["a", "a"]))
    Traceback (most recent call last):
    ...
    embstore.errors.ValidationError: table columns repeat: ['a'] ...
    """
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise ValidationError(f"write_table needs a pandas.DataFrame; got {type(df).__name__}")
    names = [str(c) for c in df.columns]
    index_names = [
        str(n) for n in df.index.names if n is not None
    ]  # pandas names unnamed levels freely
    seen: set[str] = set()
    dup = []
    for c in index_names + names:
        if c in seen and c not in dup:
            dup.append(c)
        seen.add(c)
    if dup:
        raise ValidationError(
            f"table columns repeat: {dup} (columns {names}, index {index_names}); give every column and "
            "index level a distinct name"
        )
