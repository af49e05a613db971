"""Larger-than-memory analysis of an analyzer's vectors as Dask tasks.

These are thin wrappers: they name the vectors (an analyzer plus a
:class:`~embstore.analysis.spec.VectorSpec` or the flat ``variable=, pool=,
layer=`` keywords), cut them into :class:`~embstore.analysis.blocks.VectorBlocks`
(the one block producer) and run the search functions of
:mod:`embstore.search` with ``client=``, which execute the same block
algorithms (faiss block scan, result heap, union-find) as Dask tasks
(:mod:`embstore.search.tasks`). Statistics sum
:func:`embstore.fairness.stats.block_group_sums` per block in a tree.

* Each task reads its blocks from the store itself, so no block is kept alive
  in the cluster's memory between tasks: memory per worker is about one or
  two blocks plus small results, whatever the size of the store.
* Tasks return small results (sums per group, ``(nq, k)`` neighbour tables,
  thresholded edges), combined on the client.
* They run on a :class:`dask.distributed.Client` (``client=``) or, without
  one, on Dask's active scheduler (the default client, else local threads).

Results equal the local path (:meth:`~embstore.EmbeddingAnalyzer.search`,
:meth:`~embstore.EmbeddingAnalyzer.cluster`, NumPy statistics) up to float
summation order.

Examples
--------
>>> from embstore import EmbeddingAnalyzer
>>> from embstore.distributed.analysis import cluster, vector_stats
>>> an = EmbeddingAnalyzer(face_path)
>>> stats = vector_stats(an, "embedding", by="person", block_rows=32)
>>> int(stats["count"].sum())
80
>>> groups = cluster(an, threshold=0.9, k=5, variable="embedding", block_rows=32)
>>> int(groups["cluster"].nunique()) <= 80
True
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..analysis.blocks import VectorBlocks
from ..analysis.defaults import resolve_variable
from ..analysis.spec import VectorSpec
from ..errors import ValidationError
from ..search.source import positions_of_ids
from ..search.tasks import DEFAULT_CACHE_BYTES

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

_MAX_GROUPS = 65536


def vector_blocks(
    analyzer: Any,
    variable: str | None = None,
    pool: str | None = "mean",
    layer: int | None = None,
    block_rows: int | None = None,
    *,
    spec: VectorSpec | None = None,
    **pool_kwargs: Any,
) -> tuple[VectorBlocks, pd.DataFrame]:
    """The analyzer's vectors as :class:`VectorBlocks` plus their labels.

    :func:`embstore.analysis.blocks.vector_blocks` with this module's
    argument order (kept for existing callers).

    Parameters
    ----------
    analyzer : EmbeddingAnalyzer
        Any analyzer (a selection works too).
    variable, pool, layer, **pool_kwargs
        As in :meth:`embstore.EmbeddingAnalyzer.vectors`.
    block_rows : int, optional
        Vectors per block (default 65536).
    spec : VectorSpec, optional
        Which vectors (the flat keywords override its fields).

    Returns
    -------
    blocks : VectorBlocks
    labels : pandas.DataFrame
    """
    spec = _spec(spec, variable, pool, layer, pool_kwargs)
    return _vector_blocks(analyzer, spec, block_rows, **pool_kwargs)


def _spec(
    spec: VectorSpec | None,
    variable: str | None,
    pool: str | None,
    layer: int | None,
    pool_kwargs: dict[str, Any],
) -> VectorSpec:
    """One spec from ``spec=`` and the flat keywords (``k``/``over`` taken out of ``pool_kwargs``)."""
    k = pool_kwargs.pop("k", None)
    over = pool_kwargs.pop("over", None)
    if spec is None:
        return VectorSpec(variable, pool, layer, k, over)
    return VectorSpec.coerce(spec, variable=variable, layer=layer, k=k, over=over).replace(
        pool=pool if pool != "mean" else spec.pool
    )


def _vector_blocks(
    analyzer: Any, spec: VectorSpec, block_rows: int | None, **pool_kwargs: Any
) -> tuple[VectorBlocks, pd.DataFrame]:
    from ..analysis.blocks import vector_blocks as _one_producer

    return _one_producer(analyzer, spec, block_rows, **pool_kwargs)


def _client(client: Any) -> Any:
    """``None`` (Dask's active scheduler) as the search functions' ``client="dask"``."""
    return "dask" if client is None else client


# -------------------------------------------------------------- statistics
def _sums_task(
    blocks: VectorBlocks, b: int, codes: np.ndarray, n_groups: int
) -> dict[str, np.ndarray]:
    from ..fairness.stats import block_group_sums

    a, e = blocks.bounds[b]
    return block_group_sums(blocks.load(b), np.asarray(codes[a:e]), n_groups)


def vector_stats(
    analyzer: Any,
    variable: str | None = None,
    pool: str | None = "mean",
    layer: int | None = None,
    by: str | Sequence[str] | None = None,
    *,
    block_rows: int | None = None,
    client: Any = None,
    spec: VectorSpec | None = None,
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
    spec : VectorSpec, optional
        Which vectors, instead of the flat keywords.

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
    >>> from embstore import EmbeddingAnalyzer
    >>> ds = vector_stats(EmbeddingAnalyzer(demo_path), pool="mean", by="skin", block_rows=50)
    >>> ds.sizes["group"], int(ds["count"].sum())
    (4, 120)
    """
    from ..fairness.stats import add_group_sums, moments_from_sums
    from ..search.tasks import reduce_blocks

    spec = _spec(spec, variable, pool, layer, pool_kwargs)
    blocks, labels = _vector_blocks(analyzer, spec, block_rows, **pool_kwargs)
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
    tot = reduce_blocks(blocks, _sums_task, add_group_sums, codes, n_groups, client=_client(client))
    m = moments_from_sums(tot)
    name = resolve_variable(analyzer, spec.variable)
    feat = analyzer.vectors(
        name, pool=spec.pool, layer=spec.layer, **spec.pool_kwargs(), **pool_kwargs
    ).dims[1]
    coords: dict[str, Any] = {"group": np.arange(n_groups)}
    for c in by_cols:
        coords[c] = ("group", keys[c].to_numpy())
    return xr.Dataset(
        {
            "count": ("group", m["count"]),
            "mean": (("group", feat), m["mean"]),
            "std": (("group", feat), m["std"]),
            "mean_norm": ("group", m["mean_norm"]),
            "dispersion": ("group", m["dispersion"]),
        },
        coords=coords,
        attrs={
            "variable": name,
            "pool": "none" if spec.pool is None else str(spec.pool),
            "by": ",".join(by_cols),
        },
    )


def _factorize(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Group keys (sorted) and the code of every row."""
    grouped = frame.groupby(list(frame.columns), sort=True, dropna=False).ngroup().to_numpy()
    keys = frame.assign(_code=grouped).drop_duplicates("_code").sort_values("_code")
    return keys.drop(columns="_code").reset_index(drop=True), grouped.astype(np.int64)


# ------------------------------------------------------------------- search
def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValidationError(f"k={k!r}; pass a positive number of neighbours")
    return int(k)


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
    spec: VectorSpec | None = None,
    **pool_kwargs: Any,
) -> pd.DataFrame:
    """Exact k nearest neighbours of a few queries: one Dask task per database block.

    :func:`embstore.search.knn.knn_search` with ``client=``, labelled: each
    task scans one block with faiss and the per-block top-k are merged with
    faiss's result heap in block order (the local scan's order), so the
    result equals the local one.

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
    spec : VectorSpec, optional
        Which vectors, instead of the flat keywords.

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
    >>> from embstore import EmbeddingAnalyzer
    >>> an = EmbeddingAnalyzer(face_path)
    >>> df = knn_search(an, ids=[an.ids[0]], k=2, variable="embedding", block_rows=32)
    >>> df["rank"].tolist(), bool(df["neighbor"].iloc[0] == 0)
    ([0, 1], True)
    """
    from ..search.index import check_metric
    from ..search.knn import knn_search as _knn_search
    from ..search.results import search_frame

    metric = check_metric(metric)
    k = _check_k(k)
    spec = _spec(spec, variable, pool, layer, pool_kwargs)
    blocks, labels = _vector_blocks(analyzer, spec, block_rows, **pool_kwargs)
    if (queries is None) == (ids is None):
        raise ValidationError("pass exactly one of queries= (vectors) or ids= (row ids).")
    qlabels = None
    if ids is not None:
        pos = positions_of_ids(labels, analyzer.id_name, ids)
        queries = np.asarray(blocks.data[pos].compute(), dtype=np.float32)
        qlabels = labels.iloc[pos]
    kk = min(k, blocks.n)
    d, i = _knn_search(blocks, queries, kk, metric, device="cpu", client=_client(client))
    return search_frame(d, i, labels, qlabels)


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
    spec: VectorSpec | None = None,
    **pool_kwargs: Any,
) -> Any:
    """Exact k-NN of every vector against all vectors, one Dask task per query block.

    :func:`embstore.search.knn.knn_self` with ``client=``. Each task reads
    its query block, then every database block in turn (two blocks in
    memory), keeping a faiss result heap. Vectors of at most ``cache_bytes``
    (pooled vectors, typically) are computed once and kept in the cluster's
    memory instead of being re-read by every task. The ``(n, k)`` result is
    gathered on the client: for very large ``n`` use
    :func:`threshold_groups`, which returns only edges.

    Parameters
    ----------
    analyzer : EmbeddingAnalyzer
    k : int, default 100
        Neighbours per vector, itself included.
    variable, pool, layer, metric, block_rows, client, spec, **pool_kwargs
        As in :func:`knn_search`.
    cache_bytes : int or None, default 256 MiB
        Keep vectors up to this size (float32 bytes) in cluster memory;
        ``None`` or 0 re-reads them from the store in every task.

    Returns
    -------
    embstore.search.results.KnnResult
    """
    from ..search.index import check_metric
    from ..search.knn import knn_self as _knn_self

    metric = check_metric(metric)
    k = _check_k(k)
    spec = _spec(spec, variable, pool, layer, pool_kwargs)
    blocks, _labels = _vector_blocks(analyzer, spec, block_rows, **pool_kwargs)
    return _knn_self(
        blocks,
        min(k, blocks.n),
        metric,
        client=_client(client),
        cache_bytes=cache_bytes or 0,
        progress=False,
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
    spec: VectorSpec | None = None,
    **pool_kwargs: Any,
) -> Any:
    """Connected components of the k-NN graph above ``threshold`` (dedup or clustering).

    :func:`embstore.search.graph.threshold_clusters` with ``client=``: tasks
    compute each query block's exact k-NN and keep only the edges that pass
    the threshold; the client merges them with the same union-find.

    Parameters
    ----------
    analyzer : EmbeddingAnalyzer
    threshold : float
        Minimum similarity (cosine/ip) or maximum distance (l2) of an edge.
    k : int, default 100
        Neighbours per vector, itself included.
    variable, pool, layer, metric, block_rows, client, spec, **pool_kwargs
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
    from ..search.graph import threshold_clusters
    from ..search.index import check_metric

    metric = check_metric(metric)
    k = _check_k(k)
    spec = _spec(spec, variable, pool, layer, pool_kwargs)
    blocks, _labels = _vector_blocks(analyzer, spec, block_rows, **pool_kwargs)
    res = threshold_clusters(
        blocks,
        threshold,
        min(k, blocks.n),
        metric,
        keep_pairs=keep_pairs,
        client=_client(client),
        cache_bytes=cache_bytes or 0,
        progress=False,
    )
    res.k = k
    return res


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
    """
    res = threshold_groups(analyzer, threshold, k, **kwargs)
    spec = _spec(
        kwargs.get("spec"),
        kwargs.get("variable"),
        kwargs.get("pool", "mean"),
        kwargs.get("layer"),
        {key: kwargs[key] for key in ("k", "over") if key in kwargs},
    )
    name = resolve_variable(analyzer, spec.variable)
    out = analyzer.labels(name, pool=spec.pool, layer=spec.layer, **spec.pool_kwargs()).copy()
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
    spec: VectorSpec | None = None,
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
    spec : VectorSpec, optional
        Which vectors, instead of the flat keywords.

    Returns
    -------
    zarr.Array
        The written array, ``(n, D)``.

    Examples
    --------
    >>> import os
    >>> from embstore import EmbeddingAnalyzer
    >>> z = write_vectors(EmbeddingAnalyzer(face_path), os.path.join(out_dir, "v.zarr"), "embedding")
    >>> z.shape
    (80, 32)
    """
    import zarr

    da: Any = importlib.import_module("dask.array")  # untyped store() signature

    from ..search.tasks import compute

    spec = _spec(spec, variable, pool, layer, pool_kwargs)
    blocks, _labels = _vector_blocks(analyzer, spec, block_rows, **pool_kwargs)
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
    compute([stored], _client(client))
    return target
