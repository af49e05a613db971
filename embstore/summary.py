"""Human-readable summaries of a store, shared by the CLI and the demo.

Examples
--------
>>> from embstore.summary import parse_selection
>>> import pandas as pd
>>> parse_selection(["skin=1,2", "lighting=well_lit"],
...                 pd.DataFrame({"skin": [1, 2], "lighting": ["well_lit", "dimly_lit"]}))
{'skin': [1, 2], 'lighting': 'well_lit'}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .errors import SelectionError

__all__ = ["format_selection", "format_summary", "parse_selection"]

_MAX_LEVELS = 12


def _convert(token: str, dtype: np.dtype) -> Any:
    """Convert one command-line token to a coordinate's dtype."""
    if dtype.kind == "b":
        lowered = token.lower()
        if lowered in ("1", "true", "yes"):
            return True
        if lowered in ("0", "false", "no"):
            return False
        raise SelectionError(f"cannot read {token!r} as a boolean; use true or false")
    if dtype.kind in "iu":
        try:
            return int(token)
        except ValueError:
            raise SelectionError(f"cannot read {token!r} as an integer") from None
    if dtype.kind == "f":
        try:
            return float(token)
        except ValueError:
            raise SelectionError(f"cannot read {token!r} as a number") from None
    return token


def parse_selection(tokens: Sequence[str], coords: pd.DataFrame) -> dict[str, Any]:
    """Parse ``KEY=VALUE[,VALUE...]`` tokens into ``sel`` keyword arguments.

    Values are converted to each coordinate's dtype; a comma-separated value
    becomes a list (rows matching any of them).

    Parameters
    ----------
    tokens : sequence of str
        Tokens such as ``"skin=1"`` or ``"lighting=well_lit,dimly_lit"``.
    coords : pandas.DataFrame
        The store's row coordinates (``Store.coords``), used for dtypes.

    Returns
    -------
    dict
        Keyword arguments for ``Store.sel``.

    Raises
    ------
    SelectionError
        For a token without ``=``, an unknown coordinate or an unreadable value.
    """
    columns = {str(name): coords[name].dtype for name in coords.columns}
    if coords.index.name is not None:
        columns.setdefault(str(coords.index.name), coords.index.dtype)
    labels: dict[str, Any] = {}
    for token in tokens:
        key, sep, raw = token.partition("=")
        if not sep or not key:
            raise SelectionError(f"selection {token!r} is not of the form KEY=VALUE, e.g. skin=1")
        if key not in columns:
            raise SelectionError(
                f"unknown coordinate {key!r}; available coordinates: {', '.join(sorted(columns))}"
            )
        dtype = (
            np.dtype(columns[key])
            if not isinstance(columns[key], pd.api.extensions.ExtensionDtype)
            else np.dtype(object)
        )
        values = [_convert(part, dtype) for part in raw.split(",")]
        labels[key] = values if len(values) > 1 else values[0]
    return labels


def _describe_coordinate(values: pd.Series) -> str:
    counts = values.value_counts(dropna=False)
    if len(counts) > _MAX_LEVELS:
        if values.dtype.kind in "iuf":
            return f"{len(counts)} distinct, range {values.min()}..{values.max()}"
        return f"{len(counts)} distinct"
    try:
        counts = counts.sort_index()
    except TypeError:
        pass
    return ", ".join(f"{level}: {count}" for level, count in counts.items())


def format_summary(store: Any) -> str:
    """Describe a store: backend, rows, variables, coordinates and provenance.

    Parameters
    ----------
    store : embstore.Store
        An open store.

    Returns
    -------
    str
        A multi-line, human-readable summary.
    """
    lines = [
        f"store      {store.path}",
        f"rows       {len(store)} ({store.row_dim}, id {store.id_name})",
    ]
    dataset = store.dataset
    lines.append("variables")
    for name in store.variables:
        array = dataset[name]
        shape = " x ".join(f"{dim}={size}" for dim, size in zip(array.dims, array.shape))
        stored = getattr(store, "dtypes", {}).get(name, str(array.dtype))  # views decode float16
        lines.append(f"  {name:<22} {shape}  {stored}")
    for name, dims in getattr(store, "ragged_variables", {}).items():
        lines.append(f"  {name:<22} ragged ({', '.join(dims)})")
    coords = store.coords
    if len(coords.columns):
        lines.append("coordinates")
        for name in coords.columns:
            lines.append(f"  {name:<22} {_describe_coordinate(coords[name])}")
    attrs: Mapping[str, Any] = store.attrs
    if attrs:
        lines.append("provenance")
        for key in sorted(attrs):
            value = str(attrs[key])
            lines.append(f"  {key:<22} {value if len(value) <= 70 else value[:67] + '...'}")
    return "\n".join(lines)


def format_selection(store: Any, labels: Mapping[str, Any], variable: str | None = None) -> str:
    """Describe the rows a selection matches.

    Parameters
    ----------
    store : embstore.Store
        An open store.
    labels : mapping
        Keyword arguments for ``Store.sel``.
    variable : str, optional
        A dense variable to summarise (shape and mean norm of the selection);
        the first dense variable by default.

    Returns
    -------
    str
        The matching rows' ids and coordinates, and the variable's shape.
    """
    selected = store.sel(**labels)
    name = variable or next(iter(store.variables))
    array = selected[name]
    coords = {
        c: selected[c].values for c in selected.coords if selected[c].dims == (store.row_dim,)
    }
    table = pd.DataFrame(coords)
    text = [
        f"selection {dict(labels)} -> {array.sizes[store.row_dim]} of {len(store)} rows",
        f"{name}: dims {tuple(array.dims)}, shape {tuple(array.shape)}, dtype {array.dtype}",
        table.to_string(index=False, max_rows=20),
    ]
    return "\n".join(text)
