"""Small example stores for doctests, tests and downstream projects.

:func:`detr_store` writes a FACET-like DETR store (synthetic queries with a
planted skin-tone shift, boxes, logits, ``skin``/``lighting`` coordinates and a
``persons`` table); :func:`face_store` writes a face-embedding store with
planted near-duplicates. Both are deterministic for a given ``seed``.

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

import numpy as np

__all__ = ["detr_store", "face_store"]


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

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_people, dim)).astype(np.float32)
    rows = np.repeat(centres, per_person, axis=0)
    rows += 0.01 * rng.standard_normal(rows.shape).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
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
        st.append(
            ids, {"embedding": rows}, coords={"person": np.repeat(np.arange(n_people), per_person)}
        )
    finally:
        st.close()
    return os.fspath(path)


def _open_append(path: str | os.PathLike[str]):  # type: ignore[no-untyped-def]
    from ..store import Store

    return Store.open(os.fspath(path), mode="a")
