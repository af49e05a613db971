"""Small example stores for doctests, tests and downstream projects.

:func:`detr_store` writes a FACET-like DETR store (synthetic queries with a
planted skin-tone shift, boxes, logits, ``skin``/``lighting`` coordinates and a
``persons`` table); :func:`face_store` writes a face-embedding store with
planted near-duplicates. Both are deterministic for a given ``seed``.
:func:`vector_store` (closed, returns the path) and :func:`create_vector_store`
(left open for appending) write one ``(row, hidden)`` variable from an array,
the store most search, duplicate and cluster tests need.

The repository's ``conftest.py`` builds them once per test session and puts
their paths in the doctest namespace as ``demo_path`` and ``face_path`` (plus
``out_dir``, an empty folder for outputs), so docstring examples run against
real stores instead of being skipped.

Examples
--------
>>> from embstore import Store
>>> with Store.open(demo_path) as st:
...     print(len(st), sorted(st.variables))
120 ['pred_boxes', 'pred_logits', 'query_embeddings']
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .synthetic import face_vectors

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["attention_store", "create_vector_store", "detr_store", "face_store", "vector_store"]


def detr_store(path: str | os.PathLike[str], *, n_images: int = 120, seed: int = 0) -> str:
    """Write a synthetic DETR store (``query_embeddings`` 8 queries x 16 dims).

    Parameters
    ----------
    path : str or os.PathLike
        Where to write the store (``.zarr`` directory or ``.h5`` file).
    n_images : int, optional
        Number of images (rows).
    seed : int, optional
        Random seed.

    Returns
    -------
    str
        The store path.
    """
    from ..fairness.synthetic import make_synthetic_facet, write_synthetic_store

    data = make_synthetic_facet(n_images, seed=seed)
    write_synthetic_store(data, path)
    with _open_append(path) as st:
        st.update_attrs(default_variable="query_embeddings", extract_type="all")
    return os.fspath(path)


def face_store(
    path: str | os.PathLike[str],
    *,
    n_people: int = 40,
    per_person: int = 2,
    dim: int = 32,
    seed: int = 0,
) -> str:
    """Write a face-embedding store with ``per_person`` near-duplicate rows per person.

    Rows are ids ``0 .. n_people * per_person - 1``; rows of one person are
    consecutive, with cosine similarity above 0.99 to each other and about 0
    to other people. The variable is ``embedding`` (``image x hidden``,
    float32) and the coordinate ``person`` holds the person's number.

    Parameters
    ----------
    path : str or os.PathLike
        Where to write the store.
    n_people, per_person, dim : int, optional
        Number of people, rows per person and embedding size.
    seed : int, optional
        Random seed.

    Returns
    -------
    str
        The store path.
    """
    from ..store import Store

    rows, person = face_vectors(n_people, per_person, dim, seed=seed)
    ids = np.arange(len(rows), dtype=np.int64)
    st = Store.create(
        os.fspath(path),
        row_dim="image",
        id_name="image_id",
        variables={"embedding": ("hidden",)},
        dtypes={"embedding": "float32"},
        attrs={"model": "synthetic-face", "default_variable": "embedding"},
    )
    try:
        st.append(ids, {"embedding": rows}, coords={"person": person})
    finally:
        st.close()
    return os.fspath(path)


def attention_store(
    path: str | os.PathLike[str],
    *,
    n_images: int = 3,
    n_layers: int = 2,
    n_queries: int = 4,
    n_classes: int = 5,
    seed: int = 0,
) -> str:
    """Write a DETR-like store with ``decoder_attention`` maps and the photos they cover.

    Image ``i`` (ids ``0 .. n_images - 1``) is a small gradient picture saved
    next to the store (``<path>_images/<i>.png``, coordinate ``path``); its
    ``decoder_attention`` is a ragged ``(token, layer, query)`` variable on an
    ``h x w`` grid (``h = 3 + i``, ``w = 4``), each query's map summing to 1,
    as ``embstore extract detr --extract-type attention`` stores it. Query
    ``q`` of every layer peaks at token ``q``. ``pred_logits`` (last class:
    no object) and ``pred_boxes`` (``cx, cy, w, h`` in [0, 1]) come with it.

    Parameters
    ----------
    path : str or os.PathLike
        Where to write the store.
    n_images, n_layers, n_queries, n_classes : int, optional
        Sizes (``n_classes`` counts the no-object class).
    seed : int, optional
        Random seed.

    Returns
    -------
    str
        The store path.
    """
    from PIL import Image

    from ..store import Store

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:48, 0:64]
    photo = np.stack([4 * xx, 5 * yy, 2 * (xx + yy)], axis=-1).astype(np.uint8)  # a gradient
    root = os.fspath(path).rstrip("/\\") + "_images"
    os.makedirs(root, exist_ok=True)
    paths, maps, grid = [], [], []
    for i in range(n_images):
        h, w = 3 + i, 4
        a = rng.random((h * w, n_layers, n_queries)).astype(np.float32)
        a[np.arange(n_queries) % (h * w), :, np.arange(n_queries)] += 10.0
        maps.append(a / a.sum(axis=0, keepdims=True))
        grid.append((h, w))
        p = os.path.join(root, f"{i}.png")
        Image.fromarray(photo).save(p)
        paths.append(os.path.abspath(p))
    boxes = np.concatenate(
        [
            rng.uniform(0.3, 0.7, (n_images, n_queries, 2)),
            rng.uniform(0.1, 0.3, (n_images, n_queries, 2)),
        ],
        axis=-1,
    ).astype(np.float32)
    st = Store.create(
        os.fspath(path),
        variables={"pred_logits": ("query", "class"), "pred_boxes": ("query", "coord")},
        ragged={"decoder_attention": ("token", "layer", "query")},
        dtypes=dict.fromkeys(["pred_logits", "pred_boxes", "decoder_attention"], "float32"),
        attrs={"model": "synthetic-detr-attention", "default_variable": "pred_logits"},
    )
    try:
        st.append(
            np.arange(n_images),
            {
                "pred_logits": rng.normal(size=(n_images, n_queries, n_classes)).astype(np.float32),
                "pred_boxes": boxes,
                "decoder_attention": maps,
            },
            coords={"path": paths},
            ragged_hw={"decoder_attention": grid},
        )
    finally:
        st.close()
    return os.fspath(path)


def create_vector_store(
    path: str | os.PathLike[str],
    vectors: Any,
    *,
    ids: Sequence[Any] | np.ndarray | None = None,
    coords: Mapping[str, Any] | None = None,
    variable: str = "embedding",
    dim: str = "hidden",
    dtype: str | None = "float32",
    chunk_rows: int | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> Store:
    """Create a store of one ``(image, dim)`` variable, append ``vectors`` and flush.

    The store is left open for appending (close it, or use it as a context
    manager); :func:`vector_store` is the same but closes it and returns the path.

    Parameters
    ----------
    path : str or os.PathLike
        Where to create the store (``.zarr`` or ``.h5``).
    vectors : array_like
        ``(n, d)`` rows.
    ids : sequence, optional
        Row ids (default ``0 .. n - 1``).
    coords : mapping, optional
        Per-row coordinates.
    variable, dim : str, optional
        Names of the variable and of its vector dimension.
    dtype : str or None, optional
        Stored dtype; None keeps the store's default (float16).
    chunk_rows : int, optional
        Rows per chunk (store default if None).
    attrs : mapping, optional
        Store attributes.

    Returns
    -------
    Store
        The open, flushed store (row dimension ``image``, ids ``image_id``).

    Examples
    --------
    >>> import numpy as np, os
    >>> with create_vector_store(os.path.join(out_dir, "v.zarr"), np.eye(3), ids=[7, 8, 9]) as st:
    ...     print(st.ids.tolist(), st.variables)
    [7, 8, 9] {'embedding': ('hidden',)}
    """
    from ..store import Store

    x = np.asarray(vectors)
    st = Store.create(
        os.fspath(path),
        row_dim="image",
        id_name="image_id",
        variables={variable: (dim,)},
        dtypes=None if dtype is None else {variable: dtype},
        chunk_rows=chunk_rows,
        attrs=attrs,
    )
    try:
        st.append(np.arange(len(x)) if ids is None else ids, {variable: x}, coords=coords)
        st.flush()
    except BaseException:
        st.close()
        raise
    return st


def vector_store(path: str | os.PathLike[str], vectors: Any, **kwargs: Any) -> str:
    """Write a closed store of one vector variable (see :func:`create_vector_store`).

    Parameters
    ----------
    path : str or os.PathLike
        Where to write the store.
    vectors : array_like
        ``(n, d)`` rows.
    **kwargs
        ``ids``, ``coords``, ``variable``, ``dim``, ``dtype``, ``chunk_rows``,
        ``attrs`` of :func:`create_vector_store`.

    Returns
    -------
    str
        The store path.
    """
    create_vector_store(path, vectors, **kwargs).close()
    return os.fspath(path)


def _open_append(path: str | os.PathLike[str]) -> Store:
    from ..store import Store

    return Store.open(os.fspath(path), mode="a")
