"""The default variable of a store: what analyzer methods and CLI commands use without ``variable=``.

A store records it in its attributes (``default_variable``; the extractors
set ``query_embeddings`` for DETR, ``embedding`` for face and SigLIP). A
store with a single dense variable uses that one. Stores written before the
attribute existed fall back to ``query_embeddings`` when they have it.

Examples
--------
>>> import numpy as np, os, tempfile
>>> from embstore import Store
>>> st = Store.create(os.path.join(tempfile.mkdtemp(), "f.zarr"), variables={"embedding": ("hidden",)})
>>> resolve_variable(st, None)
'embedding'
>>> resolve_variable(st, "embedding")
'embedding'
"""

from __future__ import annotations

from typing import Any

from ..errors import UnknownVariableError

__all__ = ["DEFAULT_VARIABLE_ATTR", "PREFERRED_VARIABLES", "default_variable", "resolve_variable"]

#: store attribute naming the default variable
DEFAULT_VARIABLE_ATTR = "default_variable"

#: tried in order when the store records no default and has several variables
PREFERRED_VARIABLES = ("query_embeddings", "embedding", "embeddings")


def _attrs(obj: Any) -> dict[str, Any]:
    for holder in (obj, getattr(obj, "store", None), getattr(obj, "_source", None)):
        if holder is None:
            continue
        try:
            attrs = holder.attrs
        except (AttributeError, KeyError, OSError, ValueError):
            continue
        if isinstance(attrs, dict):
            return attrs
    return {}


def default_variable(obj: Any) -> str | None:
    """The default dense variable of a store or analyzer, or None when it is ambiguous.

    Parameters
    ----------
    obj : embstore.Store or embstore.EmbeddingAnalyzer
        Anything with ``variables`` (and usually ``attrs``).

    Returns
    -------
    str or None
        The recorded ``default_variable`` when it is a dense variable, else
        the only dense variable, else the first of
        :data:`PREFERRED_VARIABLES` present, else the only variable holding
        one vector per row.
    """
    variables = dict(getattr(obj, "variables", {}) or {})
    dense = list(variables)
    recorded = _attrs(obj).get(DEFAULT_VARIABLE_ATTR)
    if isinstance(recorded, str) and recorded in dense:
        return recorded
    if len(dense) == 1:
        return dense[0]
    for name in PREFERRED_VARIABLES:
        if name in dense:
            return name
    per_row = [v for v, dims in variables.items() if len(dims) == 1]
    if len(per_row) == 1:
        return per_row[0]
    return None


def resolve_variable(obj: Any, variable: str | None) -> str:
    """``variable`` itself, or the default variable of ``obj`` when it is None.

    Parameters
    ----------
    obj : embstore.Store or embstore.EmbeddingAnalyzer
        The store or analyzer the variable belongs to.
    variable : str or None
        The name the caller passed (None: use the default).

    Returns
    -------
    str

    Raises
    ------
    UnknownVariableError
        ``variable`` is None and the store has no default; the message lists
        the dense variables present.
    """
    if variable is not None:
        return variable
    found = default_variable(obj)
    if found is None:
        dense = sorted(getattr(obj, "variables", {}) or {})
        ragged = sorted(getattr(obj, "ragged_variables", {}) or {})
        raise UnknownVariableError(
            f"no default variable: the store has dense variables {dense} (ragged: {ragged}) "
            f"and records no {DEFAULT_VARIABLE_ATTR!r}; pass variable=... (--variable on the "
            "command line)."
        )
    return found
