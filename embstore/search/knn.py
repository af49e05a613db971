"""Exact k-NN and range search in blocks, with bounded memory.

The database is streamed block by block (faiss ``contrib/exhaustive_search``
style): for a batch of query rows, every database block is searched with
``faiss.knn`` and the best ``k`` are kept in a ``faiss.ResultHeap``. Memory is
one query batch + one database block + the heaps, whatever the size of the
data; the price is one pass over the database per query batch (so pick
``row_batch`` as large as memory allows, or give ``memory_budget``).

:func:`iter_knn_self` yields results batch by batch so callers (clustering,
duplicate detection) never hold the full ``(n, k)`` neighbour table. When the
whole database, as float32, is no larger than the streaming working set (a
query batch and a database block with their normalised copies; or half of
``memory_budget``), it is read once into one normalised matrix instead and
every query batch is a view of it: one read instead of one per batch, and
peak memory about that of faiss's own exact search (measured at 50k x 512:
see ``bench/peers.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ..analysis.spec import Blocks, VectorSpec
from ..errors import ValidationError
from .index import (
    SearchIndex,
    _check_k,
    _progress,
    check_metric,
    get_faiss,
    higher_is_closer,
    prepare_vectors,
    resolve_device,
    scores_from_faiss,
    threshold_to_faiss,
)
from .results import KnnResult, Pairs
from .source import DEFAULT_BLOCK_ROWS, BlockSource, as_block_source

__all__ = [
    "block_knn",
    "heap_scan",
    "iter_knn_self",
    "iter_range_pairs",
    "knn_search",
    "knn_self",
    "merge_heap",
    "plan_batches",
    "range_search_blocks",
]

logger = logging.getLogger(__name__)


def plan_batches(dim: int, k: int, memory_budget: int) -> tuple[int, int]:
    """Choose ``(row_batch, block_rows)`` that fit a memory budget.

    The budget covers a query batch and a database block (float32, plus one
    normalised copy each), the result heaps (12 bytes per neighbour, twice
    during merging) and faiss's fixed BLAS tile (~20 MB).

    Parameters
    ----------
    dim : int
        Vector dimension.
    k : int
        Neighbours per query.
    memory_budget : int
        Bytes.

    Returns
    -------
    (int, int)

    Examples
    --------
    >>> plan_batches(512, 100, 256 * 2**20)
    (24966, 19797)
    """
    usable = int(memory_budget) - 24 * 2**20
    if usable <= 0:
        raise ValidationError(
            f"memory_budget={memory_budget} bytes is too small; give at least 32 MiB."
        )
    per_query = 2 * 4 * dim + 2 * 12 * k  # query copy + normalised copy + heaps
    per_db = 2 * 4 * dim
    # two thirds for queries, one third for the database block
    row_batch = max(1, (2 * usable // 3) // per_query)
    block_rows = max(1, (usable // 3) // per_db)
    return int(row_batch), int(block_rows)


def _knn_gpu_or_cpu(xq: np.ndarray, xb: np.ndarray, k: int, metric: str, dev: str) -> tuple:
    faiss = get_faiss()
    fm = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    if dev == "cuda":
        res = _gpu_resources()
        return faiss.knn_gpu(res, xq, xb, k, metric=fm)
    return faiss.knn(xq, xb, k, metric=fm)


_GPU_RES: list[Any] = []


def _gpu_resources() -> Any:
    if not _GPU_RES:
        _GPU_RES.append(get_faiss().StandardGpuResources())
    return _GPU_RES[0]


def block_knn(
    xq: np.ndarray,
    start: int,
    block: np.ndarray,
    k: int,
    metric: str,
    dev: str,
    copy: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """k-NN of prepared queries in one database block (the step every scan repeats).

    Parameters
    ----------
    xq : numpy.ndarray
        Prepared (normalised for cosine) float32 queries.
    start : int
        Position of the block's first vector.
    block : numpy.ndarray
        ``(m, dim)`` database vectors (prepared here).
    k : int
        Neighbours wanted (at most ``m`` are returned).
    metric : str
        Checked metric.
    dev : {"cpu", "cuda"}
        Where faiss computes.
    copy : bool
        Copy ``block`` before normalising it (False: it may be overwritten).

    Returns
    -------
    distances, ids : numpy.ndarray
        Raw faiss distances and positions (``start`` added; ``-1`` pads).

    Examples
    --------
    >>> x = np.eye(3, dtype=np.float32)
    >>> d, i = block_knn(x[:1], 10, x, 2, "ip", "cpu")
    >>> i.tolist()
    [[10, 11]]
    """
    xb = prepare_vectors(block, metric, xq.shape[1], copy=copy)
    d, i = _knn_gpu_or_cpu(xq, xb, min(k, xb.shape[0]), metric, dev)
    return d, np.where(i >= 0, i + start, -1)


def merge_heap(
    nq: int, k: int, metric: str, parts: Iterable[tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-block k-NN results, in block order, in a faiss ``ResultHeap``.

    Parameters
    ----------
    nq, k : int
        Queries and neighbours kept.
    metric : str
        Checked metric (sets which end of the heap is kept).
    parts : iterable of (distances, ids)
        Results of :func:`block_knn`.

    Returns
    -------
    distances, ids : numpy.ndarray
        Raw faiss distances and ids, best first; heaps start at the worst
        distance with id ``-1``, which stays as padding.
    """
    heap = get_faiss().ResultHeap(nq, k, keep_max=higher_is_closer(metric))
    for d, i in parts:
        heap.add_result(
            np.ascontiguousarray(d, dtype=np.float32), np.ascontiguousarray(i, dtype=np.int64)
        )
    heap.finalize()
    return heap.D, heap.I


def heap_scan(
    xq: np.ndarray, blocks: Blocks, k: int, metric: str, dev: str, copy: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k-NN of prepared queries over a block stream, one block at a time.

    The faiss ``knn_ground_truth(xq, db_iterator, k)`` loop: memory is the
    queries, one block and the heaps.

    Parameters
    ----------
    xq : numpy.ndarray
        Prepared float32 queries.
    blocks : Blocks
        ``(start, block)`` pairs in row order.
    k : int
        Neighbours per query.
    metric : str
        Checked metric.
    dev : {"cpu", "cuda"}
        Where faiss computes.
    copy : bool
        Copy blocks before normalising them.

    Returns
    -------
    scores, ids : numpy.ndarray
        ``(nq, k)`` scores (see :func:`~embstore.search.index.scores_from_faiss`) and positions.

    Examples
    --------
    >>> x = np.eye(4, dtype=np.float32)
    >>> s, i = heap_scan(x[:1], [(0, x[:2]), (2, x[2:])], 2, "ip", "cpu")
    >>> i.tolist()
    [[0, 1]]
    """
    parts = (block_knn(xq, start, block, k, metric, dev, copy) for start, block in blocks)
    d, i = merge_heap(xq.shape[0], k, metric, parts)
    return scores_from_faiss(d, metric), i


def _search_block_heap(
    xq: np.ndarray, src: BlockSource, k: int, metric: str, block_rows: int, dev: str
) -> tuple[np.ndarray, np.ndarray]:
    return heap_scan(xq, src.blocks(block_rows), k, metric, dev, copy=not src.fresh)


def knn_search(
    data: Any,
    queries: Any,
    k: int,
    metric: str = "cosine",
    *,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    device: str = "auto",
    spec: VectorSpec | None = None,
    client: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k-NN of ``queries`` in ``data``, streaming ``data`` once.

    Parameters
    ----------
    data : array_like, callable, BlockSource, VectorBlocks or vector source
        The database (see :func:`~embstore.search.source.as_block_source`):
        also an analyzer, store or store path read with ``spec``.
    queries : array_like
        ``(nq, dim)`` query vectors (held in memory).
    k : int
        Neighbours per query.
    metric : {"cosine", "ip", "l2"}
        Scores are cosine similarity, inner product or Euclidean distance.
    block_rows : int
        Database rows per block.
    device : {"auto", "cpu", "cuda"}
        Where faiss computes.
    spec : VectorSpec, optional
        Which vectors of a vector source ``data``.
    client : dask.distributed.Client or "dask", optional
        Scan the blocks as Dask tasks (one per block) on this cluster
        (``"dask"``: the active scheduler); the result is the same.

    Returns
    -------
    scores : numpy.ndarray
        ``(nq, k)`` float32, best first.
    ids : numpy.ndarray
        ``(nq, k)`` int64 positions in ``data``; ``-1`` pads.

    Examples
    --------
    >>> x = np.eye(4, dtype=np.float32)
    >>> s, i = knn_search(x, x[:1], k=1, device="cpu")
    >>> int(i[0, 0]), float(s[0, 0])
    (0, 1.0)
    """
    k = _check_k(k)
    metric = check_metric(metric)
    if client is not None:
        from .tasks import as_vector_blocks, dask_device, knn_search_blocks

        blocks = as_vector_blocks(data, block_rows, spec)
        xq = prepare_vectors(queries, metric, blocks.dim)
        d, i = knn_search_blocks(blocks, xq, k, metric, dask_device(device), client)
        if d.shape[1] < k:  # fewer vectors than k: pad as the local heap does
            d, i = _pad(d, i, k, metric)
        return scores_from_faiss(d, metric), i
    src = as_block_source(data, spec=spec)
    dim = src.peek_dim()
    xq = prepare_vectors(queries, metric, dim)
    dev, _ = resolve_device(device)
    return _search_block_heap(xq, src, k, metric, block_rows, dev)


def _pad(d: np.ndarray, i: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Pad raw results to ``k`` columns: id -1 at the worst possible distance."""
    worst = -np.finfo(np.float32).max if higher_is_closer(metric) else np.finfo(np.float32).max
    extra = k - d.shape[1]
    d = np.hstack([d, np.full((d.shape[0], extra), worst, np.float32)])
    i = np.hstack([i, np.full((i.shape[0], extra), -1, i.dtype)])
    return d, i


def iter_knn_self(
    data: Any,
    k: int,
    metric: str = "cosine",
    *,
    index: SearchIndex | None = None,
    row_batch: int | None = None,
    block_rows: int | None = None,
    memory_budget: int | None = None,
    device: str = "auto",
    progress: bool | None = None,
    spec: VectorSpec | None = None,
    client: Any = None,
    cache_bytes: int | None = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield the k-NN of every vector of ``data`` against ``data``, batch by batch.

    Parameters
    ----------
    data : array_like, callable, BlockSource, VectorBlocks or vector source
        The vectors (see :func:`~embstore.search.source.as_block_source`);
        an analyzer, store or store path is read with ``spec``.
    k : int
        Neighbours per vector, the vector itself included (as in ``topK``).
    metric : {"cosine", "ip", "l2"}
        Metric (ignored when ``index`` is given: the index's metric is used).
    index : SearchIndex, optional
        Search this index (flat, IVF, HNSW...) instead of the exact
        block-wise scan; it must hold ``data`` in the same order.
    row_batch : int, optional
        Query rows per batch (default 65536, like the face pipeline's ``--batch``).
    block_rows : int, optional
        Database rows per block (default 65536).
    memory_budget : int, optional
        Bytes; sets ``row_batch`` and ``block_rows`` (see :func:`plan_batches`).
    device : {"auto", "cpu", "cuda"}
        Where the exact scan runs.
    progress : bool, optional
        tqdm bar (default: when stderr is a terminal).
    spec : VectorSpec, optional
        Which vectors of a vector source ``data``.
    client : dask.distributed.Client or "dask", optional
        Run one Dask task per query block (of ``block_rows`` vectors, or the
        blocks of a ``VectorBlocks``) on this cluster; same results.
    cache_bytes : int, optional
        With ``client``: keep vectors up to this many float32 bytes in the
        cluster's memory (default 256 MiB; 0 re-reads them in every task).

    Yields
    ------
    start : int
        Position of the batch's first query.
    scores, ids : numpy.ndarray
        ``(m, k)`` results for rows ``start .. start + m``.
    """
    k = _check_k(k)
    if client is not None:
        yield from _iter_knn_self_dask(
            data, k, metric, index, block_rows, device, spec, client, cache_bytes
        )
        return
    src = as_block_source(data, spec=spec)
    dim = src.peek_dim() if src.reiterable or src.dim is not None else None
    if index is not None:
        metric = index.metric
    metric = check_metric(metric)
    explicit_batch = row_batch is not None
    if memory_budget is not None:
        rb, br = plan_batches(int(dim or 512), k, memory_budget)
        row_batch = row_batch or rb
        block_rows = block_rows or br
    row_batch = int(row_batch or DEFAULT_BLOCK_ROWS)
    block_rows = int(block_rows or DEFAULT_BLOCK_ROWS)
    if index is None and not src.reiterable:
        raise ValidationError(
            "exact self-kNN reads the data once per query batch; pass an array or a callable "
            "returning a fresh iterator of blocks, not a one-shot iterator."
        )
    dev = resolve_device(device)[0] if index is None else index.device
    if index is None and _fits_in_memory(src.n, dim, row_batch, block_rows, memory_budget):
        yield from _knn_self_in_memory(
            src, k, metric, int(dim or 0), row_batch if explicit_batch else None, dev, progress
        )
        return
    bar = _progress(src.n, "kNN exact" if index is None else f"kNN {index.factory}", progress)
    for start, xq in src.blocks(row_batch):
        if index is not None:
            d, i = index.search(xq, k)
        else:
            xqn = prepare_vectors(xq, metric, dim, copy=not src.fresh)
            d, i = _search_block_heap(xqn, src, k, metric, block_rows, dev)
        bar.update(xq.shape[0])
        yield start, d, i
    bar.close()


def _iter_knn_self_dask(
    data: Any,
    k: int,
    metric: str,
    index: SearchIndex | None,
    block_rows: int | None,
    device: str,
    spec: VectorSpec | None,
    client: Any,
    cache_bytes: int | None,
    post: Any = None,
) -> Iterator[Any]:
    """:func:`iter_knn_self` as Dask tasks (``post`` runs on the workers)."""
    from .tasks import DEFAULT_CACHE_BYTES, as_vector_blocks, dask_device, iter_self_knn

    if index is not None:
        raise ValidationError(
            "client= runs the exact block scan; an index cannot be sent to the workers. "
            "Drop index= (or client=)."
        )
    metric = check_metric(metric)
    blocks = as_vector_blocks(data, block_rows, spec)
    kk = min(k, blocks.n)
    if cache_bytes is None:
        cache_bytes = DEFAULT_CACHE_BYTES
    for res in iter_self_knn(
        blocks,
        kk,
        metric,
        client=client,
        dev=dask_device(device),
        cache_bytes=cache_bytes,
        post=post,
    ):
        if post is None and kk < k:
            start, d, i = res
            res = (start, *_pad_scores(d, i, k, metric))
        yield res


def _pad_scores(d: np.ndarray, i: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Pad scores (not raw distances) to ``k`` columns as the local path does."""
    worst = -np.finfo(np.float32).max if higher_is_closer(metric) else np.finfo(np.float32).max
    raw = np.full((d.shape[0], k - d.shape[1]), worst, np.float32)
    extra = scores_from_faiss(raw, metric)
    d = np.hstack([d, extra.astype(d.dtype)])
    i = np.hstack([i, np.full((i.shape[0], k - i.shape[1]), -1, i.dtype)])
    return d, i


#: Query rows per batch of the in-memory self-kNN: results take 12 * k bytes per
#: row (about 20 MB at k=100), and faiss's BLAS path tiles queries by 4096 anyway.
IN_MEMORY_QUERY_ROWS = 16384


def _fits_in_memory(
    n: int | None, dim: int | None, row_batch: int, block_rows: int, memory_budget: int | None
) -> bool:
    """Whether the exact self-kNN should hold the whole database once, as float32.

    Streaming holds a query batch and a database block, each with a
    normalised copy, and re-reads the database for every query batch. When
    the whole database takes no more than that (or, with ``memory_budget``,
    half of the budget), reading it once is both faster and smaller.
    """
    if n is None or dim is None or n == 0:
        return False
    need = int(n) * int(dim) * 4
    if memory_budget is not None:
        return need <= (int(memory_budget) - 24 * 2**20) // 2
    return need <= 2 * 4 * int(dim) * (int(row_batch) + int(block_rows))


def _knn_self_in_memory(
    src: BlockSource,
    k: int,
    metric: str,
    dim: int,
    row_batch: int | None,
    dev: str,
    progress: bool | None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Exact self-kNN with the database read once into one normalised float32 matrix.

    Peak memory is the matrix, one streamed read and one batch of results
    (the queries are views of the matrix): about the floor of faiss's own
    exact search, which also holds every vector once, in its index.
    """
    n = int(src.n)  # type: ignore[arg-type]
    db = np.empty((n, dim), dtype=np.float32)
    filled = 0
    # small reads: each is copied into the matrix at once, so a read's float32
    # block (and the stored rows behind it) is the only transient (~8 MiB)
    load_rows = max(256, min(int(src.max_read_rows or DEFAULT_BLOCK_ROWS), 2**23 // (4 * dim)))
    for start, block in src.blocks(load_rows):
        part = db[start : start + block.shape[0]]
        part[...] = block
        del block
        prepare_vectors(part, metric, dim, copy=False)  # normalised in place (cosine)
        filled += part.shape[0]
    if filled != n:
        raise ValidationError(f"the vector source yielded {filled} rows, expected {n}.")
    kk = min(k, n)
    batch = int(row_batch or IN_MEMORY_QUERY_ROWS)
    bar = _progress(n, "kNN exact", progress)
    for start in range(0, n, batch):
        xq = db[start : start + batch]
        d, i = _knn_gpu_or_cpu(xq, db, kk, metric, dev)
        if kk < k:  # pad as the streaming heap does: id -1, worst possible distance
            d, i = _pad(d, i, k, metric)
        bar.update(xq.shape[0])
        yield start, scores_from_faiss(d, metric), i
    bar.close()


def knn_self(data: Any, k: int, metric: str = "cosine", **kwargs: Any) -> KnnResult:
    """k-NN of every vector against all vectors, collected in one :class:`KnnResult`.

    Parameters
    ----------
    data : array_like, callable or BlockSource
        The vectors.
    k : int
        Neighbours per vector (itself included).
    metric : {"cosine", "ip", "l2"}
        Metric.
    **kwargs
        Passed to :func:`iter_knn_self` (``index``, ``row_batch``,
        ``block_rows``, ``memory_budget``, ``device``, ``progress``).

    Returns
    -------
    KnnResult

    Examples
    --------
    >>> x = np.array([[1, 0], [0.99, 0.1], [0, 1]], dtype=np.float32)
    >>> knn_self(x, k=2, device="cpu").ids[:, 1].tolist()
    [1, 0, 1]
    """
    parts_d, parts_i = [], []
    index = kwargs.get("index")
    for _, d, i in iter_knn_self(data, k, metric, **kwargs):
        parts_d.append(d)
        parts_i.append(i)
    metric = index.metric if index is not None else check_metric(metric)
    if not parts_d:
        return KnnResult(np.empty((0, k), np.float32), np.empty((0, k), np.int64), metric)
    return KnnResult(
        np.concatenate(parts_d),
        np.concatenate(parts_i),
        metric,
        exact=index is None or index.exact,
    )


def iter_range_pairs(
    data: Any,
    threshold: float,
    metric: str = "cosine",
    *,
    row_batch: int | None = None,
    block_rows: int | None = None,
    progress: bool | None = None,
) -> Iterator[Pairs]:
    """Yield every pair ``i < j`` whose score passes ``threshold``, exhaustively.

    Only the upper triangle is computed (database blocks at or after the
    query batch), so this costs about half a self-kNN and needs no ``k``:
    the result is exact however many neighbours a vector has.

    Parameters
    ----------
    data : array_like, callable or BlockSource
        The vectors (re-iterable).
    threshold : float
        Minimum score (cosine/ip) or maximum distance (l2).
    metric : {"cosine", "ip", "l2"}
        Metric.
    row_batch, block_rows : int, optional
        Query rows per batch and database rows per block (default 65536).
    progress : bool, optional
        tqdm bar.

    Yields
    ------
    Pairs
        Pairs found for one query batch.
    """
    faiss = get_faiss()
    metric = check_metric(metric)
    src = as_block_source(data)
    if not src.reiterable:
        raise ValidationError("range pairs need a re-iterable source (an array or a callable).")
    dim = src.peek_dim()
    row_batch = int(row_batch or DEFAULT_BLOCK_ROWS)
    block_rows = int(block_rows or DEFAULT_BLOCK_ROWS)
    fm = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    higher = higher_is_closer(metric)
    # faiss keeps d > radius (ip) / d < radius (l2): widen by one ulp, filter exactly below
    radius = float(
        np.nextafter(
            np.float32(threshold_to_faiss(threshold, metric)),
            np.float32(-np.inf if higher else np.inf),
        )
    )
    bar = _progress(src.n, "range pairs", progress)
    for qstart, xq in src.blocks(row_batch):
        xq = prepare_vectors(xq, metric, dim)
        qend = qstart + xq.shape[0]
        parts = []
        for bstart, xb in src.blocks(block_rows):
            if bstart + xb.shape[0] <= qstart:
                continue  # lower triangle: found when that block was the query batch
            xb = prepare_vectors(xb, metric, dim)
            idx = faiss.IndexFlat(dim, fm)
            idx.add(xb)
            lims, d, i = idx.range_search(xq, radius)
            rows = np.repeat(np.arange(qstart, qend), np.diff(lims.astype(np.int64)))
            cols = i + bstart
            d = scores_from_faiss(d, metric)
            keep = rows < cols
            parts.append(Pairs(rows[keep], cols[keep], d[keep].astype(np.float32)))
            del idx
        bar.update(xq.shape[0])
        out = Pairs.concat(parts)
        if len(out):
            ok = out.score >= threshold if higher else out.score <= threshold
            out = Pairs(out.i[ok], out.j[ok], out.score[ok])
        yield out
    bar.close()


def range_search_blocks(
    data: Any,
    queries: Any,
    threshold: float,
    metric: str = "cosine",
    *,
    block_rows: int = DEFAULT_BLOCK_ROWS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact range search of ``queries`` in ``data``, streaming ``data`` once.

    Parameters
    ----------
    data : array_like, callable or BlockSource
        The database.
    queries : array_like
        ``(nq, dim)`` query vectors.
    threshold : float
        Minimum score (cosine/ip, ``>=``) or maximum distance (l2, ``<=``).
    metric : {"cosine", "ip", "l2"}
        Metric.
    block_rows : int
        Database rows per block.

    Returns
    -------
    lims : numpy.ndarray
        ``(nq + 1,)`` offsets; hits of query ``q`` are ``[lims[q]:lims[q+1]]``.
    scores, ids : numpy.ndarray
        Flat scores and database positions (ascending position per query).

    Examples
    --------
    >>> x = np.array([[1, 0], [1, 0.1], [0, 1]], dtype=np.float32)
    >>> lims, s, i = range_search_blocks(x, x[:1], 0.9)
    >>> lims.tolist(), i.tolist()
    ([0, 2], [0, 1])
    """
    faiss = get_faiss()
    metric = check_metric(metric)
    src = as_block_source(data)
    dim = src.peek_dim() if src.reiterable else src.dim
    xq = prepare_vectors(queries, metric, dim)
    higher = higher_is_closer(metric)
    fm = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    radius = float(
        np.nextafter(
            np.float32(threshold_to_faiss(threshold, metric)),
            np.float32(-np.inf if higher else np.inf),
        )
    )
    qs, ds, ids = [], [], []
    for start, xb in src.blocks(block_rows):
        idx = faiss.IndexFlat(xq.shape[1], fm)
        idx.add(prepare_vectors(xb, metric, xq.shape[1]))
        lims, d, i = idx.range_search(xq, radius)
        qs.append(np.repeat(np.arange(xq.shape[0]), np.diff(lims.astype(np.int64))))
        ds.append(scores_from_faiss(d, metric))
        ids.append(i + start)
    if not qs:
        return np.zeros(xq.shape[0] + 1, np.int64), np.empty(0, np.float32), np.empty(0, np.int64)
    q, d, i = np.concatenate(qs), np.concatenate(ds), np.concatenate(ids)
    ok = d >= threshold if higher else d <= threshold
    q, d, i = q[ok], d[ok], i[ok]
    order = np.lexsort((i, q))
    q, d, i = q[order], d[order], i[order]
    lims = np.concatenate([[0], np.cumsum(np.bincount(q, minlength=xq.shape[0]))]).astype(np.int64)
    return lims, d.astype(np.float32), i.astype(np.int64)
