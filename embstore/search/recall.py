"""Pair recall of approximate indexes against exhaustive search, on a sample."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..analysis.spec import VectorSpec
from ..errors import ValidationError
from .index import SearchIndex, _check_k, higher_is_closer
from .knn import knn_search
from .results import RecallReport
from .source import DEFAULT_BLOCK_ROWS, as_block_source

__all__ = ["pair_recall"]


def _pairs(
    rows: np.ndarray, scores: np.ndarray, ids: np.ndarray, threshold: float, higher: bool
) -> set:
    ok = scores >= threshold if higher else scores <= threshold
    ok &= (ids >= 0) & (ids != rows[:, None])
    r = np.broadcast_to(rows[:, None], ids.shape)[ok]
    return set(zip(r.tolist(), ids[ok].tolist()))


def pair_recall(
    data: Any,
    index: SearchIndex,
    threshold: float,
    k: int = 100,
    *,
    sample: int = 1000,
    seed: int = 0,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    device: str = "auto",
    spec: VectorSpec | None = None,
) -> RecallReport:
    """Compare the pairs an index finds with exhaustive search on sampled queries.

    For ``sample`` random vectors, the pairs (query, neighbour) among the
    top ``k`` whose score passes ``threshold`` are computed twice: with
    ``index`` and with an exact block-wise scan of ``data``.

    Parameters
    ----------
    data : array_like, callable, BlockSource or vector source
        The vectors the index holds, in the same order (an analyzer, store
        or store path is read with ``spec``).
    index : SearchIndex
        The index to evaluate (its metric is used).
    threshold : float
        Pair threshold (e.g. 0.9 for duplicates, 0.7 for clusters).
    k : int
        Neighbours per query, itself included.
    sample : int
        Number of query vectors (all when larger than the data).
    seed : int
        Seed of the sample.
    block_rows : int
        Rows per streamed block of the exact scan.
    device : str
        Device of the exact scan.
    spec : VectorSpec, optional
        Which vectors of a vector source ``data``.

    Returns
    -------
    RecallReport

    Examples
    --------
    >>> from embstore.search.index import build_index
    >>> x = np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32)
    >>> idx = build_index(x, kind="flat", device="cpu")
    >>> pair_recall(x, idx, threshold=0.3, k=10, sample=50).recall
    1.0
    """
    k = _check_k(k)
    src = as_block_source(data, spec=spec)
    n = src.count()
    if n != index.ntotal:
        raise ValidationError(
            f"the index holds {index.ntotal} vectors but the data has {n}; "
            "pass the same vectors the index was built from."
        )
    if sample < 1:
        raise ValidationError(f"sample must be >= 1, got {sample}.")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(sample, n), replace=False))
    xq = src.read_rows(rows, block_rows)
    es, ei = knn_search(src, xq, k, index.metric, block_rows=block_rows, device=device)
    as_, ai = index.search(xq, k)
    higher = higher_is_closer(index.metric)
    exact = _pairs(rows, es, ei, threshold, higher)
    found = _pairs(rows, as_, ai, threshold, higher)
    common = len(exact & found)
    return RecallReport(
        recall=common / len(exact) if exact else 1.0,
        precision=common / len(found) if found else 1.0,
        n_exact=len(exact),
        n_found=len(found),
        n_common=common,
        sample_size=int(rows.size),
        threshold=float(threshold),
        k=k,
    )
