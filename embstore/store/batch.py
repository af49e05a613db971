"""Validation of an ``append`` batch against a writer's schema and what it has stored.

:func:`validate_batch` checks ids, variables, ragged rows and coordinates of
one batch and raises (writing nothing) on the first problem; the writer
(:mod:`embstore.store.writer`) then buffers the result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import (
    DTypeMismatchError,
    DuplicateIdError,
    ShapeMismatchError,
    UnknownVariableError,
    ValidationError,
)
from .ragged import flat_dims, to_tokens
from .schema import Schema, check_numeric, coerce_coord, ragged_layout
from .validation import check_ids, check_name

if TYPE_CHECKING:
    from .writer import StoreWriter

__all__ = ["dim_sizes", "kind_compatible", "validate_batch"]


def kind_compatible(stored: np.dtype, new: np.dtype) -> bool:
    """Whether values of dtype ``new`` may go into a stored array of dtype ``stored``.

    Examples
    --------
    >>> kind_compatible(np.dtype("float64"), np.dtype("int64"))
    True
    >>> kind_compatible(np.dtype("int64"), np.dtype("<U1"))
    False
    """
    if stored.kind == new.kind:
        return True
    return stored.kind == "f" and new.kind in "iu"


def dim_sizes(schema: Schema, trailing: Mapping[str, tuple[int, ...]]) -> dict[str, int]:
    """Size of every named dimension known from stored trailing shapes."""
    sizes: dict[str, int] = {}
    for name, dims in schema.variables.items():
        t = trailing.get(name)
        if t is not None:
            sizes.update(zip(dims, t))
    for var, dims in schema.ragged.items():
        t = trailing.get(var)
        if t is not None:
            sizes.update(zip(flat_dims(var, dims, ragged_layout(dims))[1:], t))
    return sizes


def validate_batch(
    writer: StoreWriter,
    ids: Any,
    data: Mapping[str, Any],
    coords: Mapping[str, Any] | None,
    ragged_hw: Mapping[str, Sequence[tuple[int, int]]] | None,
    allow_nonfinite: bool,
) -> tuple[
    np.ndarray, dict[str, np.ndarray], dict[str, list[np.ndarray]], dict[str, tuple[int, ...]]
]:
    """Check a batch for ``writer``; nothing is cast or copied yet.

    Returns ``(ids, row arrays, ragged token rows, new trailing shapes)``.

    Dense variables and ragged token rows come back validated but in
    their input dtype: :meth:`StoreWriter.append` casts them straight into the
    append buffers (one pass over the data). Ragged variables come back
    as the list of per-row token arrays.
    """
    sch = writer.schema
    id_arr = check_ids(ids)  # a new int64 or str array: no reference to the caller's
    n = len(id_arr)
    stored_id = writer.trailing_dtype(sch.id_name)
    if stored_id is not None and (stored_id.kind in "iu") != (id_arr.dtype.kind in "iu"):
        raise DTypeMismatchError(
            f"ids of this store are {'ints' if stored_id.kind in 'iu' else 'strings'}; got {id_arr.dtype} "
            f"(e.g. {id_arr[:2].tolist()!r}); convert them"
        )
    uniq, counts = np.unique(id_arr, return_counts=True)
    if (counts > 1).any():
        raise DuplicateIdError(
            f"ids repeat within the batch: {uniq[counts > 1][:5].tolist()}; each row needs a unique {sch.id_name}"
        )
    present = [i for i in id_arr.tolist() if i in writer.id_set()]
    if present:
        raise DuplicateIdError(
            f"{len(present)} ids are already in the store (e.g. {present[:5]}); skip them "
            f"(use store.missing(ids)) or create a new store"
        )
    if not isinstance(data, Mapping):
        raise ValidationError(f"data must be a dict {{variable: array}}; got {type(data).__name__}")
    declared = set(sch.variables) | set(sch.ragged)
    unknown = sorted(set(data) - declared)
    if unknown:
        raise UnknownVariableError(
            f"unknown variables {unknown}; this store declares {sorted(declared)} "
            "(declare new variables in a new store)"
        )
    absent = sorted(declared - set(data))
    if absent:
        raise ValidationError(
            f"append is missing variables {absent}; every row needs every variable of {sorted(declared)}"
        )
    rows: dict[str, np.ndarray] = {}
    flats: dict[str, list[np.ndarray]] = {}
    new_trailing: dict[str, tuple[int, ...]] = {}
    sizes = dim_sizes(sch, writer.trailing)

    def check_dims(name: str, dims: Sequence[str], trailing: tuple[int, ...]) -> None:
        for d, s in zip(dims, trailing):
            if sizes.get(d, s) != s:
                raise ShapeMismatchError(
                    f"variable {name!r} has {d}={s} but dimension {d!r} has size {sizes[d]} in another "
                    "variable; use distinct dimension names for different sizes"
                )
            sizes[d] = s

    for name, dims in sch.variables.items():
        arr = np.asarray(data[name])
        if arr.ndim != 1 + len(dims) or arr.shape[0] != n:
            raise ShapeMismatchError(
                f"variable {name!r} has shape {arr.shape}; expected ({n}, ...) with {len(dims)} trailing "
                f"dims {dims} ({n} = number of ids)"
            )
        known = writer.trailing.get(name)
        if known is not None and tuple(arr.shape[1:]) != known:
            raise ShapeMismatchError(
                f"variable {name!r} has shape {arr.shape}; this store holds rows of shape {known}, "
                f"so expected {(n,) + known}"
            )
        if known is None:
            check_dims(name, dims, tuple(arr.shape[1:]))
            new_trailing[name] = tuple(arr.shape[1:])
        rows[name] = check_numeric(name, arr, sch.dtypes[name], allow_nonfinite, cast=False)
    for var, dims in sch.ragged.items():
        layout = ragged_layout(dims)
        items = data[var]
        if isinstance(items, np.ndarray) and items.dtype != object:
            items = list(items)
        items = list(items)
        if len(items) != n:
            raise ShapeMismatchError(
                f"ragged variable {var!r} has {len(items)} rows; expected {n} (one array per id)"
            )
        hw = None if ragged_hw is None else ragged_hw.get(var)
        if hw is not None and (layout == "map" or len(hw) != n):
            raise ShapeMismatchError(
                f"ragged_hw[{var!r}] must give one (h, w) per row ({n}) for a ('token', ...) variable"
            )
        toks, offs, ns, hs, ws = [], [], [], [], []
        known = writer.trailing.get(var)
        start = (
            writer.flat_bufs[var].end
            if var in writer.flat_bufs
            else int(writer.own.ragged.get(var, 0))
        )
        for i, item in enumerate(items):
            a = np.asarray(item)
            if a.ndim != len(dims) or (layout == "map" and a.ndim != 3):
                raise ShapeMismatchError(
                    f"row {i} of ragged variable {var!r} has shape {a.shape}; expected {len(dims)} dims {dims}"
                )
            t, h, w = to_tokens(a, layout)
            if hw is not None:
                h, w = (int(hw[i][0]), int(hw[i][1]))
                if h * w != t.shape[0]:
                    raise ShapeMismatchError(
                        f"ragged_hw[{var!r}][{i}] = ({h}, {w}) but the row has {t.shape[0]} tokens != h*w"
                    )
            if known is None:
                known = tuple(t.shape[1:])
                check_dims(var, flat_dims(var, dims, layout)[1:], known)
                new_trailing[var] = known
            elif tuple(t.shape[1:]) != known:
                raise ShapeMismatchError(
                    f"row {i} of ragged variable {var!r} has feature shape {t.shape[1:]}; expected {known}"
                )
            toks.append(check_numeric(var, t, sch.dtypes[var], allow_nonfinite, cast=False))
            offs.append(start)
            start += t.shape[0]
            ns.append(t.shape[0])
            hs.append(h)
            ws.append(w)
        flats[var] = toks
        rows[var + "_offset"] = np.asarray(offs, dtype=np.int64)
        rows[var + "_n"] = np.asarray(ns, dtype=np.int64)
        rows[var + "_h"] = np.asarray(hs, dtype=np.int64)
        rows[var + "_w"] = np.asarray(ws, dtype=np.int64)
    reserved = set(writer.row_array_names()) | declared | {sch.row_dim}
    if coords is not None and not isinstance(coords, Mapping):
        raise ValidationError(
            f"coords must be a dict {{name: values}}; got {type(coords).__name__}"
        )
    for cname, values in (coords or {}).items():
        check_name("coordinate", cname, reserved - set(writer.coords_known))
        arr = coerce_coord(cname, values, n)
        stored = writer.trailing_dtype(cname)
        if stored is not None and not kind_compatible(stored, arr.dtype):
            raise DTypeMismatchError(
                f"coordinate {cname!r} holds {stored} values; got {arr.dtype} (e.g. {arr[:2].tolist()!r})"
            )
        if stored is not None and stored.kind == "f":
            arr = arr.astype(np.float64)
        rows[cname] = arr
    rows[sch.id_name] = id_arr
    return id_arr, rows, flats, new_trailing
