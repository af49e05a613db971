"""The store an importer of one-vector-per-row files writes (face npy, SigLIP cache)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

__all__ = ["open_store", "vector_store"]


def open_store(store: Any, mode: str = "r") -> tuple[Any, bool]:
    """Open ``store`` when it is a path; return it with whether the caller must close it.

    Parameters
    ----------
    store : path or embstore.Store
        A path is opened; an open :class:`~embstore.Store` is returned as is.
    mode : {"r", "a"}, optional
        Open mode for a path.

    Returns
    -------
    store : embstore.Store
    own : bool
        True when this call opened it.

    Examples
    --------
    >>> st, own = open_store(demo_path)
    >>> own, len(st)
    (True, 120)
    >>> st.close()
    """
    if isinstance(store, (str, os.PathLike)):
        from ..store import Store

        return Store.open(os.fspath(store), mode=mode), True
    return store, False


def vector_store(
    store: Any,
    directory: str | os.PathLike,
    *,
    source: str,
    row_dim: str,
    id_name: str,
    dtype: str,
    chunk_rows: int | None,
    overwrite: bool,
    attrs: Mapping[str, Any],
) -> Any:
    """The target of an import: an ``embedding (hidden,)`` store created at a path, or ``store``.

    Parameters
    ----------
    store : path or embstore.Store
        A path is created; an open :class:`~embstore.Store` is returned as is.
    directory : path
        The legacy folder (recorded as ``legacy_dir``).
    source : str
        What was imported (recorded as ``source``).
    row_dim, id_name : str
        The row dimension and id name of the new store.
    dtype : str
        Storage dtype of ``embedding``.
    chunk_rows : int or None
        Passed to :meth:`embstore.Store.create`.
    overwrite : bool
        Replace an existing store.
    attrs : mapping
        More attributes (they win over ``source``/``legacy_dir``).

    Returns
    -------
    embstore.Store

    Examples
    --------
    >>> import os
    >>> st = vector_store(os.path.join(out_dir, "v.zarr"), "old", source="demo", row_dim="image",
    ...                   id_name="index", dtype="float32", chunk_rows=None, overwrite=False,
    ...                   attrs={})
    >>> st.variables, st.attrs["legacy_dir"]
    ({'embedding': ('hidden',)}, 'old')
    >>> st.close()
    """
    if not isinstance(store, (str, os.PathLike)):
        return store
    from ..store import Store

    return Store.create(
        os.fspath(store),
        row_dim=row_dim,
        id_name=id_name,
        variables={"embedding": ("hidden",)},
        dtypes={"embedding": dtype},
        chunk_rows=chunk_rows,
        overwrite=overwrite,
        attrs={"source": source, "legacy_dir": os.fspath(directory), **dict(attrs)},
    )
