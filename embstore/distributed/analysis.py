"""Larger-than-memory analysis as Dask tasks: statistics, exact k-NN, clustering.

The analyzer's vectors (:meth:`embstore.EmbeddingAnalyzer.vectors`, pooled or
not) are a lazy dask array read chunk by chunk from the store. The functions
here cut them into row blocks of at most ``block_rows`` vectors and run one
task per block (statistics, search against a few queries) or per query block
(self k-NN, clustering):

* Each task reads its blocks from the store itself (the block's own small
  graph, computed inside the task), so no block is kept alive in the
  cluster's memory between tasks. Memory per worker is about one or two
  blocks plus small results, whatever the size of the store.
* Tasks return small results (sums per group, ``(nq, k)`` neighbour
  tables, thresholded edges), combined on the client.
* They run on whatever Dask scheduler is active: the local threads by
  default, or a :class:`dask.distributed.Client` (pass ``client=`` or make
  it the default).

Results equal the local path (:meth:`~embstore.EmbeddingAnalyzer.search`,
:meth:`~embstore.EmbeddingAnalyzer.cluster`, NumPy statistics) up to float
summation order: exact search uses the same faiss block scan and result heap.

Examples
--------
>>> from embstore import EmbeddingAnalyzer                               # doctest: +SKIP
>>> from embstore.distributed import connect                             # doctest: +SKIP
>>> from embstore.distributed.analysis import vector_stats, cluster       # doctest: +SKIP
>>> an = EmbeddingAnalyzer("facet.zarr")                                  # doctest: +SKIP
>>> with connect(address="tcp://scheduler:8786") as client:               # doctest: +SKIP
...     stats = vector_stats(an, pool="mean", by="skin", client=client)
...     groups = cluster(an, threshold=0.7, k=100, client=client)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..analysis.defaults import resolve_variable
from ..errors import SelectionError, ValidationError
from ..search.source import positions_of_ids

__all__ = [
    "VectorBlocks",
    "cluster",
    "knn_search",
    "knn_self",
    "threshold_groups",
    "vector_blocks",
    "vector_stats",
    "write_vectors",
]

logger = logging.getLogger(__name__)

DEFAULT_BLOCK_ROWS = 65536

#: Vectors up to this many bytes (float32) are computed once and kept in the
#: cluster's memory for self k-NN; larger ones are re-read by every task.
DEFAULT_CACHE_BYTES = 256 * 2**20

_MAX_GROUPS = 65536


class VectorBlocks:
    """Picklable, opaque access to the vectors of an analyzer, block by block.

    Dask does not look inside this object, so passing it to many tasks does
    not make their blocks shared graph keys: every task reads its own blocks
    from the store (:meth:`load`) and frees them when it ends.

    Parameters
    ----------
    data : dask.array.Array
        ``(n, D)`` vectors (lazy).
    bounds : list of (int, int)
        Row range of each block.

    Attributes
    ----------
    n : int
        Number of vectors.
    dim : int
        Vector size.
    """

    def __init__(self, data: Any, bounds: Sequence[tuple[int, int]]) -> None:
        self.data = data
        self.bounds = [(int(a), int(b)) for a, b in bounds]
        self.n = int(data.shape[0])
        self.dim = int(data.shape[1])

    def __len__(self) -> int:
        return len(self.bounds)

    def load(self, b: int) -> np.ndarray:
        """Read block ``b`` (synchronously, in the calling task).

        Parameters
        ----------
        b : int
            Block number.

        Returns
        -------
        numpy.ndarray
            C-contiguous float32 ``(rows, D)``.
        """
        a, e = self.bounds[b]
        return np.ascontiguousarray(self.data[a:e].compute(scheduler="sync"), dtype=np.float32)


def vector_blocks(
    analyzer: Any,
    variable: str | None = None,
    pool: str | None = "mean",
    layer: int | None = None,
    block_rows: int | None = None,
    **pool_kwargs: Any,
) -> tuple[VectorBlocks, pd.DataFrame]:
    """The analyzer's vectors as :class:`VectorBlocks` plus their labels.

    Parameters
    ----------
    analyzer : EmbeddingAnalyzer
        Any analyzer (a selection works too).
    variable, pool, layer, **pool_kwargs
        As in :meth:`embstore.EmbeddingAnalyzer.vectors`.
    block_rows : int, optional
        Vectors per block (default 65536): storage chunks are grouped up to
        this size (a larger chunk is split). Memory per task is about
        ``block_rows * D * 4`` bytes per block held.

    Returns
    -------
    blocks : VectorBlocks
    labels : pandas.DataFrame
        One row per vector (:meth:`embstore.EmbeddingAnalyzer.labels`).

    Raises
    ------
    ValidationError
        ``block_rows`` is not a positive int.
    SelectionError
        No vectors.
    """
    variable = resolve_variable(analyzer, variable)
    import dask.array as da

    block_rows = DEFAULT_BLOCK_ROWS if block_rows is None else block_rows
    if (
        isinstance(block_rows, bool)
        or not isinstance(block_rows, (int, np.integer))
        or block_rows < 1
    ):
        raise ValidationError(f"block_rows must be a positive integer, got {block_rows!r}")
    arr = analyzer.vectors(variable, pool=pool, layer=layer, **pool_kwargs)
    data = arr.data
    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data), chunks=(int(block_rows), -1))
    if data.shape[0] == 0:
        raise SelectionError(f"no vectors of {variable!r} to analyse (the selection is empty)")
    data = data.astype(np.float32)
    bounds = analyzer._block_bounds(data.chunks[0], int(block_rows))
    labels = analyzer.labels(variable, pool=pool, layer=layer, **pool_kwargs)
    return VectorBlocks(data, bounds), labels


def _compute(objs: Sequence[Any], client: Any) -> list[Any]:
    import dask

    if client is not None:
        return list(client.gather(client.compute(list(objs))))
    return list(dask.compute(*objs))


# -------------------------------------------------------------- statistics
def _block_sums(
    blocks: VectorBlocks, b: int, codes: np.ndarray, n_groups: int
) -> dict[str, np.ndarray]:
    x = blocks.load(b).astype(np.float64)
    a, e = blocks.bounds[b]
    c = np.asarray(codes[a:e])
    order = np.argsort(c, kind="stable")
    cs = c[order]
    starts = (
        np.flatnonzero(np.r_[True, cs[1:] != cs[:-1]]) if len(cs) else np.zeros(0, dtype=np.int64)
    )
    present = cs[starts]
    xs = x[order]
    norms = np.sqrt((xs * xs).sum(axis=1))
    out = {
        "count": np.zeros(n_groups),
        "sum": np.zeros((n_groups, x.shape[1])),
        "sumsq": np.zeros((n_groups, x.shape[1])),
        "norm": np.zeros(n_groups),
        "norm2": np.zeros(n_groups),
    }
    if len(cs):
        out["count"][present] = np.diff(np.r_[starts, len(cs)])
        out["sum"][present] = np.add.reduceat(xs, starts, axis=0)
        out["sumsq"][present] = np.add.reduceat(xs * xs, starts, axis=0)
        out["norm"][present] = np.add.reduceat(norms, starts)
        out["norm2"][present] = np.add.reduceat(norms * norms, starts)
    return out


def _add_sums(*parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {k: v.copy() for k, v in parts[0].items()}
    for p in parts[1:]:
        for k, v in p.items():
            out[k] += v
    return out


def _tree(delayed_parts: list[Any], combine: Any, fan_in: int = 8) -> Any:
    import dask

    level = list(delayed_parts)
    while len(level) > 1:
        level = [
            dask.delayed(combine, pure=True)(*level[i : i + fan_in])
            for i in range(0, len(level), fan_in)
        ]
    return level[0]


def vector_stats(
    analyzer: Any,
    variable: str | None = None,
    pool: str | None = "mean",
    layer: int | None = None,
    by: str | Sequence[str] | None = None,
    *,
    block_rows: int | None = None,
    client: Any = None,
    **pool_kwargs: Any,
) -> xr.Dataset:
    """Per-group statistics of the vectors, computed block by block as Dask tasks.

    Parameters
    ----------
    analyzer : EmbeddingAnalyzer
        The vectors' analyzer (or a selection of it).
    variable, pool, layer, **pool_kwargs
        Which vectors (:meth:`embstore.EmbeddingAnalyzer.vectors`).
    by : str or list of str, optional
        Label column(s) to group by (``"skin"``, ``["skin", "lighting"]``);
        ``None``: one group of every vector.
    block_rows : int, optional
        Vectors per task (see :func:`vector_blocks`).
    client : dask.distributed.Client, optional
        Run on this cluster (default: the active Dask scheduler).

    Returns
    -------
    xarray.Dataset
        Along ``group`` (with the ``by`` values as coordinates): ``count``,
        ``mean`` and ``std`` (population, per feature: ``(group, <feature>)``),
        ``mean_norm`` (mean L2 norm) and ``dispersion`` (mean squared
        distance to the group mean).

    Raises
    ------
    UnknownVariableError, ValidationError, SelectionError
        Bad variable, pooling, ``by`` column or an empty selection.

    Examples
    --------
    >>> ds = vector_stats(an, pool="mean", by="skin")            # doctest: +SKIP
    >>> ds["mean_norm"].to_series()                              # doctest: +SKIP
    """
    variable = resolve_variable(analyzer, variable)
    import dask

    blocks, labels = vector_blocks(analyzer, variable, pool, layer, block_rows, **pool_kwargs)
    by_cols = [] if by is None else ([by] if isinstance(by, str) else list(by))
    missing = [c for c in by_cols if c not in labels.columns]
    if missing:
        raise ValidationError(
            f"by={missing} are not labels of these vectors; available: {list(labels.columns)}"
        )
    if by_cols:
        keys, codes = _factorize(labels[by_cols])
    else:
        keys, codes = pd.DataFrame(index=[0]), np.zeros(len(labels), dtype=np.int64)
    n_groups = len(keys)
    if n_groups > _MAX_GROUPS:
        raise ValidationError(
            f"by={by_cols} makes {n_groups} groups; statistics are for labels with at most {_MAX_GROUPS} "
            "values (skin, lighting, ...), not for ids: group by a coarser label"
        )
    shared = dask.delayed(blocks, pure=True)
    codes_d = dask.delayed(codes, pure=True)
    parts = [
        dask.delayed(_block_sums, pure=True)(shared, b, codes_d, n_groups)
        for b in range(len(blocks))
    ]
    (tot,) = _compute([_tree(parts, _add_sums)], client)
    count = tot["count"]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = tot["sum"] / count[:, None]
        var = np.maximum(tot["sumsq"] / count[:, None] - mean * mean, 0.0)
        mean_norm = tot["norm"] / count
        dispersion = np.maximum(tot["norm2"] / count - (mean * mean).sum(axis=1), 0.0)
    feat = analyzer.vectors(variable, pool=pool, layer=layer, **pool_kwargs).dims[1]
    coords: dict[str, Any] = {"group": np.arange(n_groups)}
    for c in by_cols:
        coords[c] = ("group", keys[c].to_numpy())
    return xr.Dataset(
        {
            "count": ("group", count.astype(np.int64)),
            "mean": (("group", feat), mean),
            "std": (("group", feat), np.sqrt(var)),
            "mean_norm": ("group", mean_norm),
            "dispersion": ("group", dispersion),
        },
        coords=coords,
        attrs={
            "variable": variable,
            "pool": "none" if pool is None else str(pool),
            "by": ",".join(by_cols),
        },
    )


def _factorize(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Group keys (sorted) and the code of every row."""
    grouped = frame.groupby(list(frame.columns), sort=True, dropna=False).ngroup().to_numpy()
    keys = frame.assign(_code=grouped).drop_duplicates("_code").sort_values("_code")
    return keys.drop(columns="_code").reset_index(drop=True), grouped.astype(np.int64)


# ------------------------------------------------------------------- search
def _block_knn(
    blocks: VectorBlocks, b: int, xq: np.ndarray, k: int, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    from ..search.index import prepare_vectors
    from ..search.knn import _knn_gpu_or_cpu

    a, _e = blocks.bounds[b]
    xb = prepare_vectors(blocks.load(b), metric, xq.shape[1], copy=False)
    kk = min(k, xb.shape[0])
    d, i = _knn_gpu_or_cpu(xq, xb, kk, metric, "cpu")
    return d, np.where(i >= 0, i + a, -1)


def _merge_heap(
    nq: int, k: int, keep_max: bool, *parts: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    from ..search.index import get_faiss

    heap = get_faiss().ResultHeap(nq, k, keep_max=keep_max)
    for d, i in parts:
        heap.add_result(
            np.ascontiguousarray(d, dtype=np.float32), np.ascontiguousarray(i, dtype=np.int64)
        )
    heap.finalize()
    return heap.D, heap.I


def knn_search(
    analyzer: Any,
    queries: Any = None,
    k: int = 10,
    *,
    ids: Any = None,
    variable: str | None = None,
    pool: str | None = "mean",
    layer: int | None = None,
    metric: str = "cosine",
    block_rows: int | None = None,
    client: Any = None,
    **pool_kwargs: Any,
) -> pd.DataFrame:
    """Exact k nearest neighbours of a few queries: one Dask task per database block.

    The distributed form of :meth:`embstore.EmbeddingAnalyzer.search` without
    an index: each task scans one block with faiss, the per-block top-k are
    merged with faiss's result heap in block order (the local scan's order),
    so the result equals the local one.

    Parameters
    ----------
    analyzer : EmbeddingAnalyzer
        The database.
    queries : array_like, optional
        ``(nq, D)`` query vectors.
    k : int, default 10
        Neighbours per query.
    ids : scalar or list, optional
        Row ids whose vectors are the queries (instead of ``queries``).
    variable, pool, layer, **pool_kwargs
        Which vectors.
    metric : {"cosine", "ip", "l2"}
        Score.
    block_rows : int, optional
        Database vectors per task.
    client : dask.distributed.Client, optional
        Cluster to run on (default: the active scheduler).

    Returns
    -------
    pandas.DataFrame
        As :meth:`embstore.EmbeddingAnalyzer.search`: query labels (or
        ``query_index``), ``rank``, ``neighbor``, neighbour labels, ``score``.

    Raises
    ------
    ValidationError
        Neither or both of ``queries``/``ids``; a bad ``k`` or metric.
    SelectionError
        ``ids`` not among the analysed rows.

    Examples
    --------
    >>> knn_search(an, ids=[42], k=5, client=client)              # doctest: +SKIP
    """
    variable = resolve_variable(analyzer, variable)
    import dask

    from ..search.index import check_metric, higher_is_closer, prepare_vectors, scores_from_faiss
    from ..search.results import search_frame

    metric = check_metric(metric)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValidationError(f"k={k!r}; pass a positive number of neighbours")
    blocks, labels = vector_blocks(analyzer, variable, pool, layer, block_rows, **pool_kwargs)
    if (queries is None) == (ids is None):
        raise ValidationError("pass exactly one of queries= (vectors) or ids= (row ids).")
    qlabels = None
    if ids is not None:
        pos = positions_of_ids(labels, analyzer.id_name, ids)
        queries = np.asarray(blocks.data[pos].compute(), dtype=np.float32)
        qlabels = labels.iloc[pos]
    xq = prepare_vectors(queries, metric, blocks.dim)
    kk = min(int(k), blocks.n)
    shared = dask.delayed(blocks, pure=True)
    xq_d = dask.delayed(xq, pure=True)
    parts = [
        dask.delayed(_block_knn, pure=True, nout=2)(shared, b, xq_d, kk, metric)
        for b in range(len(blocks))
    ]
    merged = dask.delayed(_merge_heap, pure=True)(xq.shape[0], kk, higher_is_closer(metric), *parts)
    (res,) = _compute([merged], client)
    d, i = res
    return search_frame(scores_from_faiss(d, metric), i, labels, qlabels)


def _heap_scan(xq: np.ndarray, db: Any, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """k-NN of prepared queries over ``(start, block)`` pairs, one block at a time."""
    from ..search.index import get_faiss, higher_is_closer, prepare_vectors
    from ..search.knn import _knn_gpu_or_cpu

    heap = get_faiss().ResultHeap(xq.shape[0], k, keep_max=higher_is_closer(metric))
    for start, block in db:
        xb = prepare_vectors(block, metric, xq.shape[1])
        d, i = _knn_gpu_or_cpu(xq, xb, min(k, xb.shape[0]), metric, "cpu")
        heap.add_result(d, np.where(i >= 0, i + start, -1))
    heap.finalize()
    return heap.D, heap.I


def _self_result(
    d: np.ndarray, i: np.ndarray, start: int, metric: str, threshold: float | None, keep_knn: bool
) -> dict[str, Any]:
    from ..search.graph import pairs_from_knn
    from ..search.index import scores_from_faiss

    d = scores_from_faiss(d, metric)
    out: dict[str, Any] = {"start": int(start)}
    if threshold is not None:
        out["pairs"] = pairs_from_knn(d, i, threshold, metric, start)
    if keep_knn:
        out["scores"], out["ids"] = d, i
    return out


def _self_knn_block(
    blocks: VectorBlocks, q: int, k: int, metric: str, threshold: float | None, keep_knn: bool
) -> dict[str, Any]:
    """One query block against every database block, each read from the store in turn."""
    from ..search.index import prepare_vectors

    xq = prepare_vectors(blocks.load(q), metric, blocks.dim, copy=False)
    db = ((blocks.bounds[b][0], blocks.load(b)) for b in range(len(blocks)))
    d, i = _heap_scan(xq, db, k, metric)
    return _self_result(d, i, blocks.bounds[q][0], metric, threshold, keep_knn)


def _self_knn_cached(
    q: int,
    starts: list[int],
    k: int,
    metric: str,
    threshold: float | None,
    keep_knn: bool,
    *db: np.ndarray,
) -> dict[str, Any]:
    """One query block against database blocks already in the worker's memory."""
    from ..search.index import prepare_vectors

    xq = prepare_vectors(db[q], metric, db[q].shape[1])
    d, i = _heap_scan(xq, zip(starts, db), k, metric)
    return _self_result(d, i, starts[q], metric, threshold, keep_knn)


def _self_parts(
    blocks: VectorBlocks,
    k: int,
    metric: str,
    threshold: float | None,
    keep_knn: bool,
    client: Any,
    cache_bytes: int | None,
) -> list[dict[str, Any]]:
    import dask

    nbytes = blocks.n * blocks.dim * 4
    if cache_bytes and nbytes <= cache_bytes and len(blocks) > 1:
        # small (e.g. pooled) vectors: compute them once, keep them in cluster memory
        sizes = tuple(b - a for a, b in blocks.bounds)
        dblocks = blocks.data.rechunk({0: sizes, 1: -1}).to_delayed().ravel().tolist()
        dblocks = client.persist(dblocks) if client is not None else list(dask.persist(*dblocks))
        starts = [a for a, _ in blocks.bounds]
        tasks = [
            dask.delayed(_self_knn_cached, pure=True)(
                q, starts, k, metric, threshold, keep_knn, *dblocks
            )
            for q in range(len(blocks))
        ]
    else:
        shared = dask.delayed(blocks, pure=True)
        tasks = [
            dask.delayed(_self_knn_block, pure=True)(shared, q, k, metric, threshold, keep_knn)
            for q in range(len(blocks))
        ]
    return sorted(_compute(tasks, client), key=lambda p: p["start"])


def knn_self(
    analyzer: Any,
    k: int = 100,
    *,
    variable: str | None = None,
    pool: str | None = "mean",
    layer: int | None = None,
    metric: str = "cosine",
    block_rows: int | None = None,
    client: Any = None,
    cache_bytes: int | None = DEFAULT_CACHE_BYTES,
    **pool_kwargs: Any,
) -> Any:
    """Exact k-NN of every vector against all vectors, one Dask task per query block.

    Each task reads its query block, then every database block in turn
    (two blocks in memory), keeping a faiss result heap. Vectors of at most
    ``cache_bytes`` (pooled vectors, typically) are computed once and kept in
    the cluster's memory instead of being re-read by every task. The
    ``(n, k)`` result is gathered on the client: for very large ``n`` use
    :func:`threshold_groups`, which returns only edges.

    Parameters
    ----------
    analyzer : EmbeddingAnalyzer
    k : int, default 100
        Neighbours per vector, itself included.
    variable, pool, layer, metric, block_rows, client, **pool_kwargs
        As in :func:`knn_search`.
    cache_bytes : int or None, default 256 MiB
        Keep vectors up to this size (float32 bytes) in cluster memory;
        ``None`` or 0 re-reads them from the store in every task.

    Returns
    -------
    embstore.search.results.KnnResult
    """
    variable = resolve_variable(analyzer, variable)
    from ..search.index import check_metric
    from ..search.results import KnnResult

    metric = check_metric(metric)
    blocks, _labels = vector_blocks(analyzer, variable, pool, layer, block_rows, **pool_kwargs)
    kk = min(int(k), blocks.n)
    parts = _self_parts(blocks, kk, metric, None, True, client, cache_bytes)
    return KnnResult(
        np.concatenate([p["scores"] for p in parts]),
        np.concatenate([p["ids"] for p in parts]),
        metric,
        True,
    )


def threshold_groups(
    analyzer: Any,
    threshold: float,
    k: int = 100,
    *,
    variable: str | None = None,
    pool: str | None = "mean",
    layer: int | None = None,
    metric: str = "cosine",
    block_rows: int | None = None,
    keep_pairs: bool = False,
    client: Any = None,
    cache_bytes: int | None = DEFAULT_CACHE_BYTES,
    **pool_kwargs: Any,
) -> Any:
    """Connected components of the k-NN graph above ``threshold`` (dedup or clustering).

    Tasks compute each query block's exact k-NN and keep only the edges that
    pass the threshold; the client merges them with a union-find. The same
    as :func:`embstore.search.graph.threshold_clusters` /
    :func:`~embstore.search.graph.find_duplicate_groups` on the local path.

    Parameters
    ----------
    analyzer : EmbeddingAnalyzer
    threshold : float
        Minimum similarity (cosine/ip) or maximum distance (l2) of an edge.
    k : int, default 100
        Neighbours per vector, itself included.
    variable, pool, layer, metric, block_rows, client, **pool_kwargs
        As in :func:`knn_search`.
    keep_pairs : bool, default False
        Keep the edges in the result.
    cache_bytes : int or None, default 256 MiB
        See :func:`knn_self`.

    Returns
    -------
    embstore.search.results.GroupResult
        Deterministic group ids (0 = largest), ``keep`` marks each group's
        first vector.
    """
    variable = resolve_variable(analyzer, variable)
    from ..search.graph import StreamingComponents
    from ..search.index import check_metric
    from ..search.results import GroupResult, Pairs

    metric = check_metric(metric)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValidationError(f"k={k!r}; pass a positive number of neighbours")
    blocks, _labels = vector_blocks(analyzer, variable, pool, layer, block_rows, **pool_kwargs)
    kk = min(int(k), blocks.n)
    parts = _self_parts(blocks, kk, metric, float(threshold), False, client, cache_bytes)
    uf = StreamingComponents(blocks.n)
    for p in parts:
        uf.add(p["pairs"].i, p["pairs"].j)
    return GroupResult(
        labels=uf.labels(),
        threshold=float(threshold),
        metric=metric,
        k=int(k),
        exact=True,
        pairs=Pairs.concat([p["pairs"] for p in parts]) if keep_pairs else None,
    )


def cluster(
    analyzer: Any,
    threshold: float = 0.70,
    k: int = 100,
    **kwargs: Any,
) -> pd.DataFrame:
    """Identity clusters (union-find above ``threshold``) as a labeled table.

    Parameters
    ----------
    analyzer : EmbeddingAnalyzer
    threshold : float, default 0.70
        Minimum cosine similarity of an edge.
    k : int, default 100
        Neighbours per vector, itself included.
    **kwargs
        As in :func:`threshold_groups`.

    Returns
    -------
    pandas.DataFrame
        The vectors' labels plus a ``cluster`` column (0 = largest cluster).

    Examples
    --------
    >>> cluster(an, 0.7, k=100, variable="embedding", client=client)   # doctest: +SKIP
    """
    res = threshold_groups(analyzer, threshold, k, **kwargs)
    labels = analyzer.labels(
        kwargs.get("variable"), pool=kwargs.get("pool", "mean"), layer=kwargs.get("layer")
    )
    out = labels.copy()
    out["cluster"] = res.labels
    return out


# ------------------------------------------------------------------- output
def write_vectors(
    analyzer: Any,
    path: str,
    variable: str | None = None,
    pool: str | None = "mean",
    layer: int | None = None,
    *,
    block_rows: int | None = None,
    dtype: str = "float32",
    client: Any = None,
    overwrite: bool = False,
    **pool_kwargs: Any,
) -> Any:
    """Compute the (pooled) vectors on the cluster and write them to a Zarr array.

    Nothing is gathered on the client: each task pools its block and writes
    it, so pooling a store larger than memory (or than the whole cluster's
    memory) works.

    Parameters
    ----------
    analyzer : EmbeddingAnalyzer
    path : str
        Zarr v3 array path (directory or fsspec URL).
    variable, pool, layer, **pool_kwargs
        Which vectors.
    block_rows : int, optional
        Vectors per task and per Zarr chunk.
    dtype : str, default "float32"
        Stored dtype.
    client : dask.distributed.Client, optional
        Cluster to run on.
    overwrite : bool, default False
        Replace an existing array.

    Returns
    -------
    zarr.Array
        The written array, ``(n, D)``.
    """
    variable = resolve_variable(analyzer, variable)
    import dask.array as da
    import zarr

    blocks, _labels = vector_blocks(analyzer, variable, pool, layer, block_rows, **pool_kwargs)
    sizes = tuple(b - a for a, b in blocks.bounds)
    data = blocks.data.rechunk({0: sizes, 1: -1}).astype(dtype)
    target = zarr.create_array(
        path,
        shape=data.shape,
        chunks=(max(sizes), data.shape[1]),
        dtype=dtype,
        compressors=None,
        overwrite=overwrite,
    )
    # chunk grid of the target is uniform; write in blocks aligned to it
    aligned = data.rechunk({0: max(sizes)})
    stored = da.store(aligned, target, lock=False, compute=False)
    _compute([stored], client)
    return target
