"""Pairs across two sets of vectors above a threshold (cross-split leaks).

A test image that is a near copy of a training image "leaks". :func:`cross_pairs`
finds every pair ``(query, data)`` whose score passes a threshold:

- ``k=None`` (default): exhaustive range search; the query vectors are
  streamed in batches and, for each batch, the data is streamed block by
  block (:func:`embstore.search.knn.range_search_blocks`), so the result is
  exact however many neighbours a query has and memory holds one query batch
  plus one data block;
- ``k=K``: only the ``K`` best neighbours per query are kept (exact scan or a
  given index), then filtered by the threshold; faster with an IVF index,
  but a query with more than ``K`` matches loses some.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..search.results import Pairs

__all__ = ["cross_pairs"]


def cross_pairs(
    queries: Any,
    data: Any,
    threshold: float,
    metric: str = "cosine",
    *,
    k: int | None = None,
    index: Any = None,
    row_batch: int | None = None,
    block_rows: int | None = None,
    device: str = "auto",
) -> Pairs:
    """Every pair ``(i, j)`` of a query ``i`` and a data vector ``j`` passing ``threshold``.

    Parameters
    ----------
    queries : array_like, callable or BlockSource
        Query vectors (streamed in batches of ``row_batch``).
    data : array_like, callable or BlockSource
        Database vectors (re-iterable: streamed once per query batch).
    threshold : float
        Minimum score (cosine/ip, ``>=``) or maximum distance (l2, ``<=``).
    metric : {"cosine", "ip", "l2"}
        Metric.
    k : int, optional
        Keep at most ``k`` neighbours per query (``None``: all, exact).
    index : SearchIndex, optional
        With ``k``: search this index holding ``data`` in order.
    row_batch, block_rows : int, optional
        Query rows per batch and data rows per block (default 65536).
    device : {"auto", "cpu", "cuda"}
        Device of the exact top-k scan.

    Returns
    -------
    Pairs
        ``i``: query positions, ``j``: data positions, ``score``; sorted by
        ``i`` then ``j``. (``i < j`` does not hold here: the two sides are
        different sets.)

    Examples
    --------
    >>> a = np.array([[1, 0], [0, 1]], np.float32)
    >>> b = np.array([[0.99, 0.05], [1, 0], [-1, 0]], np.float32)
    >>> p = cross_pairs(a, b, 0.95)
    >>> p.i.tolist(), p.j.tolist()
    ([0, 0], [0, 1])
    """
    from ..search.index import check_metric, higher_is_closer
    from ..search.knn import knn_search, range_search_blocks
    from ..search.source import DEFAULT_BLOCK_ROWS, as_block_source

    metric = check_metric(index.metric if index is not None else metric)
    qsrc = as_block_source(queries)
    dsrc = as_block_source(data)
    row_batch = int(row_batch or DEFAULT_BLOCK_ROWS)
    block_rows = int(block_rows or DEFAULT_BLOCK_ROWS)
    higher = higher_is_closer(metric)
    parts: list[Pairs] = []
    for qstart, xq in qsrc.blocks(row_batch):
        if k is None:
            lims, s, j = range_search_blocks(dsrc, xq, threshold, metric, block_rows=block_rows)
            i = np.repeat(np.arange(xq.shape[0]), np.diff(lims)) + qstart
        else:
            if index is not None:
                s, j = index.search(xq, int(k))
            else:
                s, j = knn_search(dsrc, xq, int(k), metric, block_rows=block_rows, device=device)
            i = np.repeat(np.arange(qstart, qstart + xq.shape[0]), s.shape[1])
            s, j = s.ravel(), j.ravel()
            ok = (j >= 0) & ((s >= threshold) if higher else (s <= threshold))
            i, s, j = i[ok], s[ok], j[ok]
        parts.append(Pairs(i.astype(np.int64), j.astype(np.int64), s.astype(np.float32)))
    parts = [p for p in parts if len(p)]
    if not parts:
        return Pairs.empty()
    i = np.concatenate([p.i for p in parts])
    j = np.concatenate([p.j for p in parts])
    s = np.concatenate([p.score for p in parts])
    order = np.lexsort((j, i))
    return Pairs(i[order], j[order], s[order])
