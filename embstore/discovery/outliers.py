"""Outlier (uniqueness) scores: mean distance to the k nearest neighbours.

The score of a vector is the mean cosine distance (``1 - cosine``) to its
``k`` nearest *other* vectors (Euclidean distance for ``metric="l2"``);
higher means more unusual. This is fastdup's outlier score and the kNN form
of FiftyOne's ``compute_uniqueness``.

The neighbours come from :func:`embstore.search.knn.iter_knn_self`, the
block-wise search the duplicate finder uses: the data is streamed in blocks,
only one query batch, one database block and the ``(batch, k + 1)`` result
heaps are in memory, and an index (IVF at scale) can replace the exact scan.
Only the ``(n,)`` score vector is kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ValidationError

__all__ = ["IVF_ROWS", "default_refine", "outlier_scores", "scores_from_neighbors"]

#: From this many vectors on, ``kind="auto"`` searches an IVF index instead of
#: scanning exactly (exact self-kNN is O(n^2): ~64 s at 100k x 512 here, so
#: ~1.8 h at 1M; IVF with a small nprobe takes minutes and, since outliers are
#: far from everything, approximate neighbours barely change their rank).
IVF_ROWS = 1_000_000

#: Lists probed per query by ``kind="auto"`` at scale (see ``bench/outliers.py``).
AUTO_NPROBE = 8


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValidationError(f"k must be a positive integer (neighbours per row), got {k!r}.")
    return int(k)


def scores_from_neighbors(
    start: int,
    scores: np.ndarray,
    ids: np.ndarray,
    k: int,
    metric: str = "cosine",
    positions: np.ndarray | None = None,
) -> np.ndarray:
    """Outlier scores of one batch from its ``(m, k + 1)`` self-kNN result.

    The row itself is dropped wherever it appears (exact duplicates may rank
    it below rank 0), then the first ``k`` remaining neighbours are averaged.

    Parameters
    ----------
    start : int
        Position of the batch's first row (``ids`` are global positions).
    scores, ids : numpy.ndarray
        ``(m, k + 1)`` similarities (cosine/ip) or distances (l2), best
        first, and neighbour positions (``-1`` pads).
    k : int
        Neighbours averaged.
    metric : {"cosine", "ip", "l2"}
        How ``scores`` turn into distances (``1 - s`` or ``s``).
    positions : numpy.ndarray, optional
        Global positions of the rows (instead of ``start, start + 1, ...``).

    Returns
    -------
    numpy.ndarray
        ``(m,)`` float32 mean distances; NaN for a row without neighbours.

    Examples
    --------
    >>> s = np.array([[1.0, 0.9, 0.5]], np.float32); i = np.array([[0, 4, 2]])
    >>> print(scores_from_neighbors(0, s, i, k=2).round(3))
    [0.3]
    """
    rows = (np.arange(start, start + ids.shape[0]) if positions is None else np.asarray(positions))[
        :, None
    ]
    valid = (ids >= 0) & (ids != rows)
    take = valid & (np.cumsum(valid, axis=1) <= k)
    dist = scores.astype(np.float64) if metric == "l2" else 1.0 - scores.astype(np.float64)
    n = take.sum(axis=1)
    total = np.where(take, dist, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(n > 0, total / np.maximum(n, 1), np.nan)
    return out.astype(np.float32)


def outlier_scores(
    data: Any,
    k: int = 10,
    metric: str = "cosine",
    *,
    index: Any = None,
    row_batch: int | None = None,
    block_rows: int | None = None,
    memory_budget: int | None = None,
    device: str = "auto",
    progress: bool | None = None,
    refine: int | None = None,
) -> np.ndarray:
    """Mean distance of every vector to its ``k`` nearest other vectors.

    Parameters
    ----------
    data : array_like, callable or BlockSource
        The vectors (see :func:`embstore.search.as_block_source`); a callable
        returning a fresh iterator of ``(start, block)`` streams a store.
    k : int
        Neighbours averaged (the vector itself excluded).
    metric : {"cosine", "ip", "l2"}
        ``"cosine"`` scores are ``1 - cosine`` (0 .. 2).
    index : SearchIndex, optional
        Search this index (e.g. IVF) holding ``data`` in order instead of
        the exact block-wise scan.
    row_batch, block_rows, memory_budget, device, progress
        As in :func:`embstore.search.knn.iter_knn_self`.
    refine : int, optional
        With an approximate ``index``: re-score the ``refine`` highest-scoring
        vectors with an exact scan (default :func:`default_refine`; 0 turns
        it off). An approximate search can only miss neighbours, so it only
        ever *raises* a score: every true outlier stays among the highest
        approximate scores, and re-scoring them exactly removes the inliers
        whose neighbours the index missed. Any refined score above the
        highest score left unrefined is certified exact in rank.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` float32 scores, in the order of ``data``.

    Examples
    --------
    >>> x = np.array([[1, 0], [0.99, 0.1], [0.98, 0.2], [0, 1]], np.float32)
    >>> int(np.argmax(outlier_scores(x, k=2, device="cpu")))
    3
    """
    from ..search.index import check_metric
    from ..search.knn import iter_knn_self
    from ..search.source import as_block_source

    k = _check_k(k)
    src = as_block_source(data)
    metric = check_metric(index.metric if index is not None else metric)
    n = src.n
    parts: list[tuple[int, np.ndarray]] = []
    for start, d, i in iter_knn_self(
        src,
        k + 1,
        metric,
        index=index,
        row_batch=row_batch,
        block_rows=block_rows,
        memory_budget=memory_budget,
        device=device,
        progress=progress,
    ):
        parts.append((start, scores_from_neighbors(start, d, i, k, metric)))
    if n is None:
        n = sum(p.size for _, p in parts)
    out = np.full(int(n), np.nan, np.float32)
    for start, p in parts:
        out[start : start + p.size] = p
    if index is not None and not getattr(index, "exact", False):
        c = default_refine(out.size) if refine is None else int(refine)
        if c > 0:
            _widen(out, src, index, k, metric, min(WIDEN_FACTOR * c, out.size))
            _refine(out, src, k, metric, min(c, out.size), block_rows, device)
    return out


#: The widened pass re-scores this many times ``refine`` candidates, probing
#: this many times more IVF lists (see :func:`_widen`).
WIDEN_FACTOR = 8


def _widen(out: np.ndarray, src: Any, index: Any, k: int, metric: str, c: int) -> None:
    """Re-score the ``c`` highest approximate scores with WIDEN_FACTOR^2 x the IVF probes.

    An IVF search that misses a row's true neighbours inflates its score (the
    neighbours it finds are farther), so at 1M rows inliers whose cluster
    mates sit in unprobed lists crowd the planted outliers out of the exact
    re-score (``bench/outliers.py``: recall 0.36 at 1M with nprobe=8 and 5000
    exact re-scores). Every approximate score is an upper bound of the exact
    one, so the smaller of the two passes' scores is kept. Indexes without
    inverted lists are left alone.
    """
    from ..search.index import get_faiss

    try:
        ivf = get_faiss().extract_index_ivf(index.index)
    except Exception:
        return
    old = int(ivf.nprobe)
    wide = min(int(ivf.nlist), old * WIDEN_FACTOR * WIDEN_FACTOR)
    if wide <= old or c <= 0:
        return
    filled = np.nan_to_num(out, nan=-np.inf)
    pos = np.sort(np.argsort(-filled, kind="stable")[:c])
    xq = src.read_rows(pos)
    ivf.nprobe = wide
    try:
        d, i = index.search(xq, k + 1)
    finally:
        ivf.nprobe = old
    out[pos] = np.fmin(out[pos], scores_from_neighbors(0, d, i, k, metric, positions=pos))


def default_refine(n: int) -> int:
    """Vectors re-scored exactly after an approximate search: 0.5% of ``n``, at least 1000.

    At 1M x 512 that is 5000 exact queries, ~1% of the approximate pass's time.

    Examples
    --------
    >>> default_refine(1_000_000), default_refine(10)
    (5000, 10)
    """
    return int(min(n, max(1000, n // 200)))


def _refine(
    out: np.ndarray, src: Any, k: int, metric: str, c: int, block_rows: int | None, device: str
) -> None:
    import logging

    from ..search.knn import knn_search
    from ..search.source import DEFAULT_BLOCK_ROWS

    filled = np.nan_to_num(out, nan=-np.inf)
    cand = np.argsort(-filled, kind="stable")[:c]
    rest = np.delete(filled, cand)
    floor = float(rest.max()) if rest.size else -np.inf
    xq = src.read_rows(np.sort(cand))
    pos = np.sort(cand)
    d, i = knn_search(
        src, xq, k + 1, metric, block_rows=int(block_rows or DEFAULT_BLOCK_ROWS), device=device
    )
    exact = scores_from_neighbors(0, d, i, k, metric, positions=pos)
    out[pos] = exact
    logging.getLogger(__name__).info(
        "outliers: %d approximate top scores re-scored exactly; %d certified (score > %.4f, the best unrefined)",
        c,
        int((exact > floor).sum()),
        floor,
    )
