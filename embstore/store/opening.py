"""Creating and opening a store on disk: the backend and schema behind :meth:`Store.create` and :meth:`Store.open`.

:func:`create_backend` validates the create arguments, writes the group
attributes (schema and provenance) and the first, empty commit record;
:func:`open_backend` opens an existing store, reads and checks its schema
(against the create arguments of ``mode="a"``) and its ``region=``. The
:class:`~embstore.Store` facade then builds its reader (and writer) on the
result.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import NotAStoreError, ShapeMismatchError, UnknownVariableError, ValidationError
from .backends import Backend, backend_class
from .commit import MAIN_REGION, CommitRecord
from .schema import FORMAT_VERSION, Schema
from .validation import check_attrs
from .writer import now

__all__ = ["create_backend", "open_backend", "should_create"]


def _embstore_version() -> str:
    from .. import __version__

    return __version__


def create_backend(
    path: str,
    row_dim: str,
    id_name: str,
    variables: Mapping[str, Sequence[str]] | None,
    dtypes: Mapping[str, Any] | None,
    ragged: Mapping[str, Sequence[str]] | None,
    chunk_rows: int | None,
    overwrite: bool,
    attrs: Mapping[str, Any] | None,
    storage_options: dict[str, Any] | None,
    n_rows: int,
    shapes: Mapping[str, Sequence[int]] | None,
    inner_chunk_rows: int | None,
    compressor: str | None,
) -> tuple[Backend, Schema, dict[str, tuple[int, ...]]]:
    """Create an empty store; return its backend, schema and the checked ``shapes``.

    Arguments are those of :meth:`embstore.Store.create`.
    """
    schema = Schema.build(
        row_dim,
        id_name,
        variables,
        ragged,
        dtypes,
        chunk_rows,
        inner_chunk_rows,
        n_rows,
        compressor,
    )
    bcls = backend_class(path)
    if n_rows and not bcls.supports_regions:
        raise ValidationError(
            f"n_rows={n_rows}: the {bcls.kind} backend does not support parallel region writers; "
            "use a Zarr store (a path ending in .zarr)"
        )
    shp = {k: tuple(int(s) for s in v) for k, v in (shapes or {}).items()}
    for name, t in shp.items():
        if name not in schema.variables:
            raise UnknownVariableError(
                f"shapes names {name!r}, which is not a dense variable; declared: {sorted(schema.variables)}"
            )
        if len(t) != len(schema.variables[name]):
            raise ShapeMismatchError(
                f"shapes[{name!r}] = {t} has {len(t)} dims but {name!r} declares dims "
                f"{schema.variables[name]}"
            )
    if schema.chunk_rows is None and shp:
        schema.chunk_rows = schema.pick_chunk_rows(
            max(int(np.prod(s)) * np.dtype(schema.dtypes[k]).itemsize for k, s in shp.items())
        )
    if n_rows:
        if schema.chunk_rows is None:
            raise ValidationError(
                f"n_rows={n_rows} needs chunk_rows=... (regions must align to chunks) or shapes=..."
            )
        if n_rows % schema.chunk_rows:
            raise ValidationError(
                f"n_rows={n_rows} must be a multiple of chunk_rows={schema.chunk_rows}"
            )
    check_attrs(dict(attrs or {}))
    stamp = now()
    all_attrs: dict[str, Any] = dict(attrs or {})
    all_attrs.update(
        {
            "embstore": schema.to_json(),
            "embstore_version": _embstore_version(),
            "format_version": FORMAT_VERSION,
            "store_uuid": uuid.uuid4().hex,
            "created": stamp,
            "updated": stamp,
        }
    )
    backend = bcls.create(path, overwrite, storage_options, all_attrs)
    rec = CommitRecord(MAIN_REGION, 0, schema.n_prealloc, 0, {}, [], CommitRecord.now())
    backend.write_record(MAIN_REGION, 0, rec.encode())
    return backend, schema, shp


def should_create(
    path: str, mode: str, storage_options: dict[str, Any] | None, create_kw: Mapping[str, Any]
) -> bool:
    """Whether :meth:`embstore.Store.open` creates the store (``"w"``, ``"w-"``, or ``"a"`` on nothing)."""
    if mode in ("w", "w-"):
        return True
    return mode == "a" and bool(create_kw) and not backend_class(path).exists(path, storage_options)


def open_backend(
    path: str,
    mode: str,
    storage_options: dict[str, Any] | None,
    region: tuple[int, int] | None,
    create_kw: Mapping[str, Any],
) -> tuple[Backend, Schema, str, tuple[int, int] | None]:
    """Open an existing store: ``(backend, schema, "r" or "a", region)``.

    Raises
    ------
    StoreNotFoundError, NotAStoreError, FormatVersionError
        As :meth:`embstore.Store.open`.
    ValidationError
        The schema differs from the create arguments, or a bad ``region``.
    """
    from .modes import schema_mismatch
    from .regions import check_region

    if create_kw and mode != "a":
        raise ValidationError(
            f"create arguments {sorted(create_kw)} are for mode 'a', 'w' or 'w-'; got mode={mode!r}"
        )
    mode = "a" if mode == "r+" else mode
    backend = backend_class(path).open(path, mode, storage_options)
    try:
        attrs = backend.read_attrs()
        if "embstore" not in attrs:
            raise NotAStoreError(
                f"{path!r} has no embstore schema in its attributes; it was not made by Store.create"
            )
        schema = Schema.from_json(attrs["embstore"], repr(path))
        diff = schema_mismatch(schema, dict(create_kw)) if create_kw else []
        if diff:
            raise ValidationError(
                f"{path!r} exists with another schema ({'; '.join(diff)}); resume with the same arguments, "
                "or pass mode='w' to replace it"
            )
        if region is not None:
            region = check_region(schema, backend, region, mode)
        return backend, schema, mode, region
    except BaseException:
        backend.close()
        raise
