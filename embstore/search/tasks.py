"""Dask execution of the block algorithms of :mod:`embstore.search.knn`.

The search functions take ``client=``: with it, the *same* per-block steps
(:func:`embstore.search.knn.block_knn`, :func:`~embstore.search.knn.heap_scan`,
:func:`~embstore.search.graph.pairs_from_knn`) run as Dask tasks instead of
in this process. This module only builds those tasks and gathers their small
results; it holds no search logic of its own.

* Blocks travel as one :class:`~embstore.analysis.blocks.VectorBlocks`
  (picklable, opaque to Dask): every task reads its own blocks from the
  store and frees them when it ends, so memory per worker is one or two
  blocks whatever the size of the store.
* Vectors of at most ``cache_bytes`` (pooled vectors, typically) are
  computed once and kept in the cluster's memory instead.

``client`` is a :class:`dask.distributed.Client`, or ``"dask"`` for Dask's
active scheduler (the default client if there is one, else local threads).

Examples
--------
>>> import numpy as np
>>> from embstore.search.knn import knn_self
>>> x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
>>> dask = knn_self(x, k=3, client="dask", block_rows=16)
>>> local = knn_self(x, k=3, device="cpu")
>>> bool((dask.ids == local.ids).all())
True
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ..analysis.blocks import DEFAULT_BLOCK_ROWS, VectorBlocks
from ..analysis.spec import VectorSpec
from ..errors import ValidationError

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "as_vector_blocks",
    "compute",
    "dask_device",
    "iter_self_knn",
    "knn_search_blocks",
]

#: Vectors up to this many bytes (float32) are computed once and kept in the
#: cluster's memory for self k-NN; larger ones are re-read by every task.
DEFAULT_CACHE_BYTES = 256 * 2**20

#: ``post(scores, ids, start)`` turns one query block's k-NN into its result.
Post = Callable[[np.ndarray, np.ndarray, int], Any]


def _dask() -> Any:
    """The ``dask`` module, typed as Any (its ``compute``/``persist`` are untyped)."""
    return importlib.import_module("dask")


def _is_source(data: Any) -> bool:
    import os

    from ..analysis.sources import _looks_like_store

    return (
        isinstance(data, (str, os.PathLike))
        or (hasattr(data, "vectors") and hasattr(data, "labels"))
        or _looks_like_store(data)
    )


def as_vector_blocks(
    data: Any, block_rows: int | None = None, spec: VectorSpec | None = None
) -> VectorBlocks:
    """The vectors of ``data`` as :class:`VectorBlocks`, for Dask tasks.

    Parameters
    ----------
    data : VectorBlocks, array_like, EmbeddingAnalyzer, Store or str
        Blocks, a NumPy / dask / xarray ``(n, dim)`` array, or a vector
        source read with ``spec``.
    block_rows : int, optional
        Vectors per block (default 65536; ignored for ``VectorBlocks``).
    spec : VectorSpec, optional
        Which vectors of a vector source.

    Returns
    -------
    VectorBlocks

    Raises
    ------
    ValidationError
        ``data`` cannot be split into blocks for workers (an iterator or a
        callable).
    """
    if isinstance(data, VectorBlocks):
        return data
    rows = DEFAULT_BLOCK_ROWS if block_rows is None else block_rows
    if spec is not None or _is_source(data):
        from ..analysis.blocks import vector_blocks

        return vector_blocks(data, spec, rows)[0]
    if hasattr(data, "shape") and hasattr(data, "__getitem__"):
        return VectorBlocks.from_array(data, rows)
    raise ValidationError(
        f"client= runs on blocks that workers read themselves; {type(data).__name__} cannot be "
        "split that way. Pass an array, VectorBlocks, or an analyzer/store with spec=."
    )


def dask_device(device: str) -> str:
    """The faiss device of Dask tasks: ``"cuda"`` only when asked for explicitly."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValidationError(f"device={device!r}; use 'auto', 'cpu' or 'cuda'")
    return "cuda" if device == "cuda" else "cpu"


def compute(objs: Sequence[Any], client: Any) -> list[Any]:
    """Compute dask objects on ``client`` (``"dask"``: the active scheduler)."""
    dask = _dask()

    if client is not None and client != "dask":
        return list(client.gather(client.compute(list(objs))))
    return list(dask.compute(*objs))


def _tree(delayed_parts: list[Any], combine: Callable[..., Any], fan_in: int = 8) -> Any:
    """Combine delayed results pairwise-ish, ``fan_in`` at a time, into one."""
    dask = _dask()

    level = list(delayed_parts)
    while len(level) > 1:
        level = [
            dask.delayed(combine, pure=True)(*level[i : i + fan_in])
            for i in range(0, len(level), fan_in)
        ]
    return level[0]


def reduce_blocks(
    blocks: VectorBlocks,
    task: Callable[..., Any],
    combine: Callable[..., Any],
    *args: Any,
    client: Any = "dask",
) -> Any:
    """Run ``task(blocks, b, *args)`` for every block and ``combine`` the results in a tree.

    Parameters
    ----------
    blocks : VectorBlocks
        The vectors.
    task : callable
        Worker-side function of one block.
    combine : callable
        ``combine(*results)`` -> one result (associative).
    *args
        More task arguments (sent once).
    client : Client or "dask"
        Where to run.

    Returns
    -------
    The combined result.
    """
    dask = _dask()

    shared = dask.delayed(blocks, pure=True)
    dargs = [dask.delayed(a, pure=True) for a in args]
    parts = [dask.delayed(task, pure=True)(shared, b, *dargs) for b in range(len(blocks))]
    (out,) = compute([_tree(parts, combine)], client)
    return out


# ---------------------------------------------------------------- worker side
def _knn_task(
    blocks: VectorBlocks, b: int, xq: np.ndarray, k: int, metric: str, dev: str
) -> tuple[np.ndarray, np.ndarray]:
    from .knn import block_knn

    return block_knn(xq, blocks.bounds[b][0], blocks.load(b), k, metric, dev, copy=False)


def _merge_task(
    nq: int, k: int, metric: str, *parts: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    from .knn import merge_heap

    return merge_heap(nq, k, metric, parts)


def _self_task(
    blocks: VectorBlocks, q: int, k: int, metric: str, dev: str, post: Post | None
) -> Any:
    """One query block against every database block, each read from the store in turn."""
    from .index import prepare_vectors
    from .knn import heap_scan

    xq = prepare_vectors(blocks.load(q), metric, blocks.dim, copy=False)
    db = ((blocks.bounds[b][0], blocks.load(b)) for b in range(len(blocks)))
    d, i = heap_scan(xq, db, k, metric, dev)
    start = blocks.bounds[q][0]
    return (start, d, i) if post is None else post(d, i, start)


def _self_task_cached(
    q: int,
    starts: list[int],
    k: int,
    metric: str,
    dev: str,
    post: Post | None,
    *db: np.ndarray,
) -> Any:
    """One query block against database blocks already in the worker's memory."""
    from .index import prepare_vectors
    from .knn import heap_scan

    xq = prepare_vectors(db[q], metric, db[q].shape[1])
    d, i = heap_scan(xq, zip(starts, db), k, metric, dev)
    return (starts[q], d, i) if post is None else post(d, i, starts[q])


# ---------------------------------------------------------------- client side
def knn_search_blocks(
    blocks: VectorBlocks, xq: np.ndarray, k: int, metric: str, dev: str, client: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k-NN of prepared queries: one task per database block, one heap merge.

    Returns raw faiss distances and ids (see :func:`embstore.search.knn.merge_heap`).
    """
    dask = _dask()

    kk = min(int(k), blocks.n)
    shared = dask.delayed(blocks, pure=True)
    xq_d = dask.delayed(xq, pure=True)
    parts = [
        dask.delayed(_knn_task, pure=True, nout=2)(shared, b, xq_d, kk, metric, dev)
        for b in range(len(blocks))
    ]
    merged = dask.delayed(_merge_task, pure=True)(xq.shape[0], kk, metric, *parts)
    (res,) = compute([merged], client)
    return res


def iter_self_knn(
    blocks: VectorBlocks,
    k: int,
    metric: str,
    *,
    client: Any,
    dev: str = "cpu",
    cache_bytes: int | None = DEFAULT_CACHE_BYTES,
    post: Post | None = None,
) -> Iterator[Any]:
    """Self k-NN of every query block as a Dask task, results in block order.

    Parameters
    ----------
    blocks : VectorBlocks
        The vectors (queries and database).
    k : int
        Neighbours per vector.
    metric : str
        Checked metric.
    client : Client or "dask"
        Where to run.
    dev : str
        faiss device of the tasks.
    cache_bytes : int or None
        Keep vectors up to this size in cluster memory (0/None: re-read them).
    post : callable, optional
        ``post(scores, ids, start)`` run on the worker (e.g. thresholding to
        edges, so that only edges travel back).

    Yields
    ------
    ``(start, scores, ids)`` per query block, or ``post``'s result.
    """
    dask = _dask()

    nbytes = blocks.n * blocks.dim * 4
    if cache_bytes and nbytes <= cache_bytes and len(blocks) > 1:
        dblocks = blocks.to_delayed()
        if client is not None and client != "dask":
            dblocks = client.persist(dblocks)
        else:
            dblocks = list(dask.persist(*dblocks))
        tasks = [
            dask.delayed(_self_task_cached, pure=True)(
                q, blocks.starts, k, metric, dev, post, *dblocks
            )
            for q in range(len(blocks))
        ]
    else:
        shared = dask.delayed(blocks, pure=True)
        tasks = [
            dask.delayed(_self_task, pure=True)(shared, q, k, metric, dev, post)
            for q in range(len(blocks))
        ]
    if client is None or client == "dask":
        yield from compute(tasks, client)
        return
    futures = client.compute(tasks)
    for fut in futures:  # in block order; each result is released once read
        yield fut.result()
        fut.release()
