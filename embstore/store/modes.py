"""Open modes of :meth:`embstore.Store.open` (the xarray/zarr mode words).

========  ==============================================================
``"r"``   read only; the store must exist
``"r+"``  write to an existing store (append, set_coords, tables...)
``"a"``   write; an existing store is resumed (after checking that the
          given schema, if any, matches it), an absent one is created
          from the create arguments (``variables=...``)
``"w"``   create, replacing whatever is at the path
``"w-"``  create; fail if the path exists
========  ==============================================================

Examples
--------
>>> CREATE_ARGS[:3]
('row_dim', 'id_name', 'variables')
"""

from __future__ import annotations

from typing import Any

from ..errors import ValidationError

__all__ = ["CREATE_ARGS", "MODES", "check_mode", "schema_mismatch"]

MODES = ("r", "r+", "a", "w", "w-")

#: Keyword arguments of :meth:`embstore.Store.create` that ``Store.open`` accepts.
CREATE_ARGS = (
    "row_dim",
    "id_name",
    "variables",
    "dtypes",
    "ragged",
    "chunk_rows",
    "attrs",
    "n_rows",
    "shapes",
    "inner_chunk_rows",
    "compressor",
)


def check_mode(mode: Any) -> str:
    """Validate a mode word.

    Examples
    --------
    >>> check_mode("r+")
    'r+'
    """
    if mode not in MODES:
        raise ValidationError(
            f"mode={mode!r} is not supported; use 'r' (read), 'r+' (write existing), 'a' (write, create if "
            "absent), 'w' (create, replacing) or 'w-' (create, fail if it exists)"
        )
    return str(mode)


def schema_mismatch(stored: Any, create_kw: dict[str, Any]) -> list[str]:
    """Differences between a stored schema and ``Store.open(..., mode="a", **create_kw)``.

    Returns
    -------
    list of str
        One line per mismatching field (empty: the store can be resumed).
    """
    from .schema import Schema

    want = Schema.build(
        create_kw.get("row_dim", stored.row_dim),
        create_kw.get("id_name", stored.id_name),
        create_kw.get("variables", stored.variables if "ragged" not in create_kw else {}),
        create_kw.get("ragged", stored.ragged if "variables" not in create_kw else {}),
        create_kw.get("dtypes"),
        None,
        None,
        0,
        None,
    )
    out = []
    for field in ("row_dim", "id_name", "variables", "ragged"):
        a, b = getattr(stored, field), getattr(want, field)
        if a != b:
            out.append(f"{field}: stored {a!r}, given {b!r}")
    for k in create_kw.get("dtypes") or {}:
        if k in stored.dtypes and str(stored.dtypes[k]) != str(want.dtypes.get(k)):
            out.append(f"dtypes[{k!r}]: stored {stored.dtypes[k]}, given {want.dtypes.get(k)}")
    cr = create_kw.get("chunk_rows")
    if cr is not None and stored.chunk_rows is not None and int(cr) != int(stored.chunk_rows):
        out.append(f"chunk_rows: stored {stored.chunk_rows}, given {cr}")
    return out
