"""Thresholded neighbour graphs: pairs, connected components, deterministic ids.

Near-duplicate removal and identity clustering are the same computation with
different thresholds (the face pipeline uses 0.90 and 0.70): every vector's
neighbours above the threshold become edges, and the connected components of
that graph are the groups. Components are merged incrementally
(:class:`StreamingComponents`, a vectorised union-find on top of
``scipy.sparse.csgraph.connected_components``), so only one batch of edges is
held at a time.

Group ids are deterministic: the largest group gets id 0, ties are broken by
the smallest row position in the group, and singletons keep their own group.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ..analysis.spec import VectorSpec
from ..errors import ValidationError
from .index import SearchIndex, check_metric, higher_is_closer
from .knn import iter_knn_self, iter_range_pairs
from .results import GroupResult, Pairs
from .source import as_block_source

__all__ = [
    "StreamingComponents",
    "canonical_labels",
    "connected_components",
    "dedup_and_cluster",
    "find_duplicate_groups",
    "pairs_from_knn",
    "threshold_clusters",
]

logger = logging.getLogger(__name__)


def pairs_from_knn(
    scores: np.ndarray,
    ids: np.ndarray,
    threshold: float,
    metric: str = "cosine",
    start: int = 0,
) -> Pairs:
    """Edges ``i < j`` from k-NN results whose score passes ``threshold``.

    Parameters
    ----------
    scores, ids : numpy.ndarray
        ``(m, k)`` k-NN results of rows ``start .. start + m``.
    threshold : float
        Minimum score (cosine/ip, ``>=``) or maximum distance (l2, ``<=``).
    metric : str
        Metric of the scores.
    start : int
        Position of the first query row.

    Returns
    -------
    Pairs
        Unique pairs, self matches and padding removed.

    Examples
    --------
    >>> s = np.array([[1.0, 0.95], [1.0, 0.95]], dtype=np.float32)
    >>> i = np.array([[0, 1], [1, 0]])
    >>> pairs_from_knn(s, i, 0.9).as_set()
    {(0, 1)}
    """
    m, _ = ids.shape
    rows = np.broadcast_to(np.arange(start, start + m)[:, None], ids.shape)
    ok = scores >= threshold if higher_is_closer(metric) else scores <= threshold
    ok &= (ids >= 0) & (ids != rows)
    a, b, s = rows[ok], ids[ok], scores[ok]
    i = np.minimum(a, b).astype(np.int64)
    j = np.maximum(a, b).astype(np.int64)
    return Pairs.concat([Pairs(i, j, s.astype(np.float32))])


def connected_components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Component label of each of ``n`` nodes given undirected edges ``(i, j)``.

    Parameters
    ----------
    n : int
        Number of nodes.
    i, j : array_like of int
        Edge endpoints.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` int64 labels (arbitrary numbering; see :func:`canonical_labels`).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as cc

    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    g = coo_matrix((np.ones(i.size, dtype=np.int8), (i, j)), shape=(n, n)).tocsr()
    _, labels = cc(g, directed=False)
    return labels.astype(np.int64)


def canonical_labels(labels: np.ndarray) -> np.ndarray:
    """Renumber groups: largest first, ties by the smallest member position.

    Parameters
    ----------
    labels : array_like of int
        Any group labelling of ``n`` rows.

    Returns
    -------
    numpy.ndarray
        int64 labels ``0 .. n_groups - 1``.

    Examples
    --------
    >>> canonical_labels(np.array([7, 3, 3, 5, 5])).tolist()
    [2, 0, 0, 1, 1]
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        return np.zeros(0, np.int64)
    uniq, first, inverse, counts = np.unique(
        labels, return_index=True, return_inverse=True, return_counts=True
    )
    order = np.lexsort((first, -counts))  # by size desc, then first row asc
    new_id = np.empty(uniq.size, dtype=np.int64)
    new_id[order] = np.arange(uniq.size, dtype=np.int64)
    return new_id[inverse.ravel()]


class StreamingComponents:
    """Union-find over edges that arrive in batches.

    Each :meth:`add` merges a batch of edges into the current partition with
    one ``connected_components`` call on the graph of current roots, costing
    ``O(n + edges)`` time and no memory beyond the labels and the batch.

    Parameters
    ----------
    n : int
        Number of nodes.

    Examples
    --------
    >>> uf = StreamingComponents(5)
    >>> uf.add([0], [1]); uf.add([3], [1])
    >>> uf.labels().tolist()
    [0, 0, 1, 0, 2]
    """

    def __init__(self, n: int) -> None:
        self.n = int(n)
        self._root = np.arange(self.n, dtype=np.int64)

    def add(self, i: Any, j: Any) -> None:
        """Merge the components joined by edges ``(i, j)``."""
        i = np.asarray(i, dtype=np.int64)
        if i.size == 0:
            return
        j = np.asarray(j, dtype=np.int64)
        if i.min() < 0 or j.min() < 0 or i.max() >= self.n or j.max() >= self.n:
            raise ValidationError(f"edge endpoints must lie in [0, {self.n}).")
        lab = connected_components(self.n, self._root[i], self._root[j])
        # representative of each new component: its smallest current root
        rep = np.full(self.n, self.n, dtype=np.int64)
        np.minimum.at(rep, lab[self._root], self._root)
        self._root = rep[lab[self._root]]

    def labels(self) -> np.ndarray:
        """Deterministic labels (see :func:`canonical_labels`)."""
        return canonical_labels(self._root)


def _threshold_post(threshold: float, metric: str) -> Any:
    """Worker-side step of the Dask path: one query block's k-NN to its edges."""
    return functools.partial(_edges_of, threshold=float(threshold), metric=metric)


def _edges_of(d: np.ndarray, i: np.ndarray, start: int, *, threshold: float, metric: str) -> Pairs:
    return pairs_from_knn(d, i, threshold, metric, start)


def _edge_batches(
    src: Any,
    threshold: float,
    k: int,
    metric: str,
    *,
    index: SearchIndex | None,
    row_batch: int | None,
    block_rows: int | None,
    memory_budget: int | None,
    device: str,
    progress: bool | None,
    client: Any,
    cache_bytes: int | None,
) -> Iterator[Pairs]:
    """Edges above ``threshold`` from the self k-NN, one query batch at a time.

    Locally the neighbour lists are thresholded here; with ``client`` every
    Dask task thresholds its own block and returns only edges.
    """
    if client is not None:
        from .knn import _iter_knn_self_dask

        yield from _iter_knn_self_dask(
            src,
            k,
            metric,
            index,
            block_rows,
            device,
            None,
            client,
            cache_bytes,
            post=_threshold_post(threshold, metric),
        )
        return
    for start, d, i in iter_knn_self(
        src,
        k,
        metric,
        index=index,
        row_batch=row_batch,
        block_rows=block_rows,
        memory_budget=memory_budget,
        device=device,
        progress=progress,
    ):
        yield pairs_from_knn(d, i, threshold, metric, start)


def _source(data: Any, spec: VectorSpec | None, client: Any, block_rows: int | None) -> Any:
    """The vectors as a BlockSource (local) or VectorBlocks (Dask), and their count."""
    if client is not None:
        from .tasks import as_vector_blocks

        return as_vector_blocks(data, block_rows, spec)
    return as_block_source(data, spec=spec)


def _count(src: Any, index: SearchIndex | None) -> int:
    if src.n is not None:
        return int(src.n)
    return int(index.ntotal) if index is not None else int(src.count())


def _groups(
    data: Any,
    threshold: float,
    k: int | None,
    metric: str,
    *,
    index: SearchIndex | None,
    keep_pairs: bool,
    row_batch: int | None,
    block_rows: int | None,
    memory_budget: int | None,
    device: str,
    progress: bool | None,
    spec: VectorSpec | None = None,
    client: Any = None,
    cache_bytes: int | None = None,
) -> GroupResult:
    if index is not None:
        metric = index.metric
    metric = check_metric(metric)
    if k is None and client is not None:
        raise ValidationError(
            "k=None (exhaustive range search) runs locally only; give k= with client=."
        )
    src = _source(data, spec, client, block_rows)
    n = _count(src, index)
    uf = StreamingComponents(n)
    kept: list[Pairs] = []
    batches: Iterable[Pairs]
    if k is None:
        if index is not None and not index.exact:
            raise ValidationError(
                "k=None (exhaustive range search) cannot use an approximate index."
            )
        batches = iter_range_pairs(
            src, threshold, metric, row_batch=row_batch, block_rows=block_rows, progress=progress
        )
        exact = True
    else:
        batches = _edge_batches(
            src,
            threshold,
            k,
            metric,
            index=index,
            row_batch=row_batch,
            block_rows=block_rows,
            memory_budget=memory_budget,
            device=device,
            progress=progress,
            client=client,
            cache_bytes=cache_bytes,
        )
        exact = index is None or index.exact
    n_pairs = 0
    for pairs in batches:
        uf.add(pairs.i, pairs.j)
        n_pairs += len(pairs)
        if keep_pairs:
            kept.append(pairs)
    labels = uf.labels()
    res = GroupResult(
        labels=labels,
        threshold=float(threshold),
        metric=metric,
        k=k,
        exact=exact,
        pairs=Pairs.concat(kept) if keep_pairs else None,
    )
    logger.info(
        "threshold %.3f: %d vectors, %d edges, %d groups (%d singletons, largest %d)",
        threshold,
        n,
        n_pairs,
        res.n_groups,
        res.n_singletons,
        int(res.sizes.max()) if res.n_groups else 0,
    )
    return res


def find_duplicate_groups(
    data: Any,
    threshold: float = 0.90,
    k: int | None = 100,
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
) -> GroupResult:
    """Near-duplicate groups: connected components of pairs with score >= threshold.

    The representative of each group is its smallest row position (the
    first in store order): ``result.keep`` marks them, ``result.n_removed``
    counts the others, ``result.pairs`` lists the edges.

    Parameters
    ----------
    data : array_like, callable, BlockSource, VectorBlocks or vector source
        The vectors.
    threshold : float
        Minimum cosine similarity of a duplicate pair (maximum distance for l2).
    k : int or None
        Neighbours searched per vector (itself included). Pairs beyond the
        k-th neighbour are missed, which can only split groups. ``None``
        runs an exhaustive range search instead: exact for any group size.
    metric : {"cosine", "ip", "l2"}
        Metric (the index's when ``index`` is given).
    index : SearchIndex, optional
        An index holding ``data`` in order (approximate kinds trade recall for speed).
    row_batch, block_rows, memory_budget, device, progress
        See :func:`~embstore.search.knn.iter_knn_self`.
    spec : VectorSpec, optional
        Which vectors, when ``data`` is an analyzer, store or store path.
    client : dask.distributed.Client or "dask", optional
        Run the neighbour search as Dask tasks (one per block of
        ``block_rows`` vectors), each returning only its edges; the groups
        are the same. ``index=`` and ``k=None`` run locally only.
    cache_bytes : int, optional
        With ``client``: see :func:`~embstore.search.knn.iter_knn_self`.

    Returns
    -------
    GroupResult
        With ``pairs`` kept.

    Examples
    --------
    >>> x = np.array([[1, 0], [1, 0.01], [0, 1]], dtype=np.float32)
    >>> g = find_duplicate_groups(x, 0.9, k=3, device="cpu")
    >>> g.labels.tolist(), g.n_removed, g.keep.tolist()
    ([0, 0, 1], 1, [True, False, True])
    """
    return _groups(
        data,
        threshold,
        k,
        metric,
        index=index,
        keep_pairs=True,
        row_batch=row_batch,
        block_rows=block_rows,
        memory_budget=memory_budget,
        device=device,
        progress=progress,
        spec=spec,
        client=client,
        cache_bytes=cache_bytes,
    )


def threshold_clusters(
    data: Any,
    threshold: float = 0.70,
    k: int | None = 100,
    metric: str = "cosine",
    *,
    index: SearchIndex | None = None,
    keep_pairs: bool = False,
    row_batch: int | None = None,
    block_rows: int | None = None,
    memory_budget: int | None = None,
    device: str = "auto",
    progress: bool | None = None,
    spec: VectorSpec | None = None,
    client: Any = None,
    cache_bytes: int | None = None,
) -> GroupResult:
    """Union-find clusters over the k-NN graph above a threshold.

    Parameters
    ----------
    data : array_like, callable, BlockSource, VectorBlocks or vector source
        The vectors.
    threshold : float
        Minimum cosine similarity of an edge (maximum distance for l2).
    k : int or None
        Neighbours per vector, itself included (face pipeline ``topK``);
        ``None`` for an exhaustive range search.
    metric : {"cosine", "ip", "l2"}
        Metric.
    index : SearchIndex, optional
        Index holding ``data`` in order.
    keep_pairs : bool
        Keep the edges in ``result.pairs`` (memory grows with the edge count).
    row_batch, block_rows, memory_budget, device, progress
        See :func:`~embstore.search.knn.iter_knn_self`; ``row_batch`` is the
        face pipeline's ``--batch``.
    spec : VectorSpec, optional
        Which vectors, when ``data`` is an analyzer, store or store path.
    client : dask.distributed.Client or "dask", optional
        Run the neighbour search as Dask tasks (one per block of
        ``block_rows`` vectors), each returning only its edges; the groups
        are the same. ``index=`` and ``k=None`` run locally only.
    cache_bytes : int, optional
        With ``client``: see :func:`~embstore.search.knn.iter_knn_self`.

    Returns
    -------
    GroupResult
        Cluster id per vector: 0 is the largest, ties by smallest row,
        singletons are clusters of one.

    Examples
    --------
    >>> x = np.array([[1, 0], [0.8, 0.6], [0.28, 0.96], [-1, 0]], dtype=np.float32)
    >>> threshold_clusters(x, 0.7, k=4, device="cpu").labels.tolist()
    [0, 0, 0, 1]
    """
    return _groups(
        data,
        threshold,
        k,
        metric,
        index=index,
        keep_pairs=keep_pairs,
        row_batch=row_batch,
        block_rows=block_rows,
        memory_budget=memory_budget,
        device=device,
        progress=progress,
        spec=spec,
        client=client,
        cache_bytes=cache_bytes,
    )


def dedup_and_cluster(
    data: Any,
    dup_threshold: float = 0.90,
    cluster_threshold: float = 0.70,
    k: int = 100,
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
) -> tuple[GroupResult, GroupResult]:
    """Duplicate groups and clusters from ONE k-NN pass (the face pipeline's steps 1-2).

    The neighbour search dominates the cost (99.9% at 100k vectors), so both
    thresholds are applied to the same neighbour lists. Every duplicate edge
    is also a cluster edge (``dup_threshold >= cluster_threshold``), so each
    duplicate group lies inside one cluster: removed duplicates keep their
    representative's cluster id. Export with ``keep=dups.keep`` to drop them.
    (Clustering only the kept rows, as a second search would, differs only
    where a chain of edges passes through a removed duplicate.)

    Parameters
    ----------
    data : array_like, callable, BlockSource, VectorBlocks or vector source
        The vectors.
    dup_threshold, cluster_threshold : float
        Edge thresholds (cosine/ip: minimum score).
    k : int
        Neighbours per vector, itself included.
    metric : {"cosine", "ip", "l2"}
        Metric (the index's when given).
    index : SearchIndex, optional
        Index holding ``data`` in order (e.g. IVF at scale).
    row_batch, block_rows, memory_budget, device, progress
        See :func:`~embstore.search.knn.iter_knn_self`.
    spec : VectorSpec, optional
        Which vectors, when ``data`` is an analyzer, store or store path.
    client : dask.distributed.Client or "dask", optional
        Run the neighbour search as Dask tasks (one per block of
        ``block_rows`` vectors), each returning only its edges; the groups
        are the same. ``index=`` and ``k=None`` run locally only.
    cache_bytes : int, optional
        With ``client``: see :func:`~embstore.search.knn.iter_knn_self`.

    Returns
    -------
    (GroupResult, GroupResult)
        Duplicate groups (with pairs) and clusters.

    Examples
    --------
    >>> x = np.array([[1, 0], [1, 0.01], [0.8, 0.6], [-1, 0]], dtype=np.float32)
    >>> d, c = dedup_and_cluster(x, k=4, device="cpu")
    >>> d.labels.tolist(), c.labels.tolist()
    ([0, 0, 1, 2], [0, 0, 0, 1])
    """
    if index is not None:
        metric = index.metric
    metric = check_metric(metric)
    higher = higher_is_closer(metric)
    if (dup_threshold < cluster_threshold) if higher else (dup_threshold > cluster_threshold):
        raise ValidationError(
            f"dup_threshold={dup_threshold} must be stricter than cluster_threshold={cluster_threshold}."
        )
    src = _source(data, spec, client, block_rows)
    n = _count(src, index)
    dup_uf, clu_uf = StreamingComponents(n), StreamingComponents(n)
    dup_pairs: list[Pairs] = []
    for cp in _edge_batches(
        src,
        cluster_threshold,
        k,
        metric,
        index=index,
        row_batch=row_batch,
        block_rows=block_rows,
        memory_budget=memory_budget,
        device=device,
        progress=progress,
        client=client,
        cache_bytes=cache_bytes,
    ):
        clu_uf.add(cp.i, cp.j)
        ok = cp.score >= dup_threshold if higher else cp.score <= dup_threshold
        dp = Pairs(cp.i[ok], cp.j[ok], cp.score[ok])
        dup_uf.add(dp.i, dp.j)
        dup_pairs.append(dp)
    exact = index is None or index.exact
    dups = GroupResult(
        dup_uf.labels(), float(dup_threshold), metric, k, exact, Pairs.concat(dup_pairs)
    )
    clusters = GroupResult(clu_uf.labels(), float(cluster_threshold), metric, k, exact)
    logger.info(
        "dedup_and_cluster: %d vectors, %d removable duplicates, %d clusters",
        n,
        dups.n_removed,
        clusters.n_groups,
    )
    return dups, clusters
