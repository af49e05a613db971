"""Synthetic data builders for tests: DETR-like batches, planted duplicates, ragged maps.

Every builder is deterministic for a given seed (or ``numpy.random.Generator``)
and returns plain NumPy arrays, lists and dicts in the shapes that
:meth:`embstore.Store.append` takes, so a test states what it plants and a
reference computation checks what the library finds.

Examples
--------
>>> import numpy as np
>>> data, coords, hw = detr_batch([0, 1, 2], np.random.default_rng(0))
>>> data["query_embeddings"].shape, len(data["encoder_output"]), sorted(coords)
((3, 3, 8), 3, ['is_person', 'lighting', 'score', 'skin'])
>>> x, person = face_vectors(n_people=4, per_person=2, dim=8)
>>> x.shape, person.tolist()
((8, 8), [0, 0, 1, 1, 2, 2, 3, 3])
>>> bool((x[0] @ x[1]) > 0.99)
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "DETR_RAGGED",
    "DETR_VARIABLES",
    "blobs",
    "detr_batch",
    "face_vectors",
    "planted_duplicates",
    "ragged_maps",
]

#: Fixed-shape variables of :func:`detr_batch` and their non-row dimensions.
DETR_VARIABLES: dict[str, tuple[str, ...]] = {
    "query_embeddings": ("query", "hidden"),
    "pred_logits": ("query", "class"),
}
#: Ragged variables of :func:`detr_batch` (with ``ragged=True``).
DETR_RAGGED: dict[str, tuple[str, ...]] = {
    "encoder_output": ("token", "hidden"),
    "backbone_features": ("channel", "y", "x"),
}


def ragged_maps(
    ids: Sequence[Any],
    rng: np.random.Generator,
    *,
    hidden: int = 8,
    channels: int = 4,
    width: int = 2,
) -> tuple[list[np.ndarray], list[np.ndarray], list[tuple[int, int]]]:
    """Per-row feature maps whose height varies with the id (``int(id) % 3 + 1``).

    Parameters
    ----------
    ids : sequence
        Row ids (integers or integer-like).
    rng : numpy.random.Generator
        Source of the values.
    hidden, channels, width : int, optional
        Token size, channels of the maps and the grid width.

    Returns
    -------
    tokens : list of ndarray
        ``(h * width, hidden)`` float32 token rows per id (an encoder output).
    maps : list of ndarray
        ``(channels, h, width)`` float32 maps per id (backbone features).
    grid : list of (int, int)
        ``(h, width)`` per id, the ``ragged_hw`` of ``tokens``.
    """
    hs = [int(i) % 3 + 1 for i in ids]
    tokens = [rng.normal(size=(h * width, hidden)).astype(np.float32) for h in hs]
    maps = [rng.normal(size=(channels, h, width)).astype(np.float32) for h in hs]
    return tokens, maps, [(h, width) for h in hs]


def detr_batch(
    ids: Sequence[Any],
    rng: np.random.Generator,
    ragged: bool = True,
    *,
    n_queries: int = 3,
    hidden: int = 8,
    n_classes: int = 5,
) -> tuple[dict[str, Any], dict[str, list[Any]], dict[str, list[tuple[int, int]]] | None]:
    """One DETR-like batch for :meth:`embstore.Store.append`.

    Variables are those of :data:`DETR_VARIABLES` (plus :data:`DETR_RAGGED`
    when ``ragged``); the coordinates ``skin`` (1-4), ``lighting``,
    ``is_person`` and ``score`` are functions of the id, so a test can
    recompute them.

    Parameters
    ----------
    ids : sequence of int
        Row ids of the batch.
    rng : numpy.random.Generator
        Source of the values.
    ragged : bool, optional
        Add ``encoder_output`` and ``backbone_features`` (see :func:`ragged_maps`).
    n_queries, hidden, n_classes : int, optional
        Sizes of the ``query``, ``hidden`` and ``class`` dimensions.

    Returns
    -------
    data : dict
        Variable name to values (first axis: rows).
    coords : dict
        Coordinate name to per-row values.
    ragged_hw : dict or None
        ``{"encoder_output": [(h, w), ...]}`` when ``ragged``, else None.
    """
    n = len(ids)
    data: dict[str, Any] = {
        "query_embeddings": rng.normal(size=(n, n_queries, hidden)).astype(np.float32),
        "pred_logits": rng.normal(size=(n, n_queries, n_classes)).astype(np.float32),
    }
    hw = None
    if ragged:
        tokens, maps, grid = ragged_maps(ids, rng, hidden=hidden)
        data["encoder_output"] = tokens
        data["backbone_features"] = maps
        hw = {"encoder_output": grid}
    coords: dict[str, list[Any]] = {
        "skin": [int(i) % 4 + 1 for i in ids],
        "lighting": ["well_lit" if int(i) % 2 else "dimly_lit" for i in ids],
        "is_person": [bool(int(i) % 3) for i in ids],
        "score": [float(i) / 10 for i in ids],
    }
    return data, coords, hw


def face_vectors(
    n_people: int = 40,
    per_person: int = 2,
    dim: int = 32,
    *,
    noise: float = 0.01,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Unit face-like vectors, ``per_person`` near-duplicates of each person in a row.

    Parameters
    ----------
    n_people, per_person, dim : int, optional
        Number of people, rows per person and vector size.
    noise : float, optional
        Standard deviation of the noise added to a person's centre (0.01 gives
        cosine similarity above 0.99 within a person for ``dim`` up to a few
        hundred; random centres are about orthogonal).
    seed : int, optional
        Random seed.

    Returns
    -------
    x : ndarray
        ``(n_people * per_person, dim)`` float32, rows of unit norm.
    person : ndarray
        The person number of each row (``0, 0, 1, 1, ...``).
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_people, dim)).astype(np.float32)
    rows = np.repeat(centres, per_person, axis=0)
    rows += noise * rng.standard_normal(rows.shape).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows, np.repeat(np.arange(n_people), per_person)


def planted_duplicates(n_base: int, n_dup: int, d: int, noise: float, seed: int) -> np.ndarray:
    """Random base vectors plus noisy copies of some of them (the planted duplicates).

    Parameters
    ----------
    n_base : int
        Number of independent normal vectors.
    n_dup : int
        Number of copies, each of a random base vector plus ``noise``.
    d : int
        Vector size.
    noise : float
        Standard deviation of the noise added to each copy.
    seed : int
        Random seed.

    Returns
    -------
    ndarray
        ``(n_base + n_dup, d)`` float32, rows in random order.
    """
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n_base, d))
    src = rng.integers(0, n_base, n_dup)
    dups = base[src] + noise * rng.normal(size=(n_dup, d))
    x = np.concatenate([base, dups])
    perm = rng.permutation(len(x))
    return x[perm].astype(np.float32)


def blobs(
    n: int = 600, d: int = 24, centers: int = 30, spread: float = 0.15, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Points around ``centers`` random normal centres (clusters with known labels).

    Parameters
    ----------
    n, d : int, optional
        Number of points and their size.
    centers : int, optional
        Number of centres.
    spread : float, optional
        Standard deviation of the points around their centre.
    seed : int, optional
        Random seed.

    Returns
    -------
    x : ndarray
        ``(n, d)`` float32 points.
    truth : ndarray
        The centre of each point.
    """
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, d))
    truth = rng.integers(0, centers, n)
    return (c[truth] + spread * rng.normal(size=(n, d))).astype(np.float32), truth
