"""Pooling of per-query embeddings into one vector per row.

DETR-style models produce one embedding per object query (``query_embeddings``
of shape ``(row, query, hidden)``). An analysis that needs one vector per image
pools over the queries. Four methods are offered:

``mean``
    Unweighted mean over the pooled dimension(s).
``max``
    Element-wise maximum over the pooled dimension(s).
``confidence``
    Weighted mean over queries. The weight of query ``q`` is its *foreground
    score* (see below) divided by the sum of the scores of all queries of the
    same row, so the weights of a row sum to one. When every score of a row is
    exactly zero (all queries are certain "no object" in float32) the row falls
    back to uniform weights, i.e. the plain mean.
``topk``
    Unweighted mean of the ``k`` queries with the highest foreground score.
    Ties are broken by the lower query index (stable sort), so the result is
    deterministic. ``k`` equal to the number of queries gives the mean.

Foreground score
----------------
DETR's ``pred_logits`` have ``C + 1`` classes, the LAST one being
"no object". Two scores are available (``score=`` argument):

``"foreground"`` (default)
    ``1 - p(no-object) = sum_{c < C} softmax(logits)_c``: the probability that
    the query detects *some* object. It is computed as the sum of the object
    class probabilities (not as ``1 - p``), which keeps full float32 precision
    for confident "no object" queries.
``"max_class"``
    ``max_{c < C} softmax(logits)_c``: the score DETR's own post-processing
    reports for a detection (the probability of the best object class).

The default is ``"foreground"`` because pooling asks "how much is this query
about an object", not "which class": a query split between two similar
classes (e.g. 0.45 cat, 0.45 dog) is a confident detection whose max-class
score would be under-weighted.

All computations run in float32, also for float16 storage.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from ..errors import ShapeMismatchError, ValidationError

__all__ = [
    "POOL_METHODS",
    "SCORES",
    "confidence_weights",
    "parse_pool",
    "pool_array",
    "pool_dataarray",
    "query_scores",
    "topk_indices",
]

#: Pooling methods understood by :func:`pool_dataarray`.
POOL_METHODS: tuple[str, ...] = ("mean", "max", "confidence", "topk")

#: Foreground scores understood by :func:`query_scores`.
SCORES: tuple[str, ...] = ("foreground", "max_class")


def _check_score(score: str) -> None:
    if score not in SCORES:
        raise ValidationError(
            f"unknown score {score!r}; use one of {list(SCORES)} "
            "('foreground' = 1 - p(no-object), 'max_class' = best object class)"
        )


def query_scores(logits: np.ndarray, score: str = "foreground") -> np.ndarray:
    """Foreground score of each query from class logits (last class = no object).

    Parameters
    ----------
    logits : numpy.ndarray
        Array ``[..., C + 1]`` of class logits; the last class is "no object".
    score : {"foreground", "max_class"}
        ``"foreground"``: ``1 - p(no-object)`` (sum of the object-class
        probabilities); ``"max_class"``: probability of the best object class.

    Returns
    -------
    numpy.ndarray
        float32 array ``[...]`` with values in ``[0, 1]``.

    Raises
    ------
    ValidationError
        If ``score`` is unknown or there are fewer than two classes.

    Examples
    --------
    >>> import numpy as np
    >>> logits = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, -10.0]])
    >>> query_scores(logits).round(3)
    array([0.667, 1.   ], dtype=float32)
    >>> query_scores(logits, "max_class").round(3)
    array([0.333, 1.   ], dtype=float32)
    """
    _check_score(score)
    logits = np.asarray(logits, dtype=np.float32)
    if logits.ndim < 1 or logits.shape[-1] < 2:
        raise ValidationError(
            f"pred_logits must have at least 2 classes on the last axis "
            f"(objects + no-object), got shape {logits.shape}"
        )
    shifted = logits - logits.max(axis=-1, keepdims=True)
    expd = np.exp(shifted)
    total = expd.sum(axis=-1)
    if score == "foreground":
        obj = expd[..., :-1].sum(axis=-1)
    else:
        obj = expd[..., :-1].max(axis=-1)
    return (obj / total).astype(np.float32)


def confidence_weights(scores: np.ndarray) -> np.ndarray:
    """Normalise scores ``[..., Q]`` over the last axis into weights summing to one.

    Rows whose scores are all zero get uniform weights ``1 / Q``.

    Parameters
    ----------
    scores : numpy.ndarray
        Non-negative scores ``[..., Q]``.

    Returns
    -------
    numpy.ndarray
        float32 weights of the same shape; each row sums to one.

    Examples
    --------
    >>> confidence_weights(np.array([[1.0, 3.0], [0.0, 0.0]]))
    array([[0.25, 0.75],
           [0.5 , 0.5 ]], dtype=float32)
    """
    scores = np.asarray(scores, dtype=np.float32)
    total = scores.sum(axis=-1, keepdims=True)
    uniform = np.full_like(scores, 1.0 / max(scores.shape[-1], 1))
    safe = np.where(total > 0, total, 1.0)
    return np.where(total > 0, scores / safe, uniform).astype(np.float32)


def topk_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices ``[..., k]`` of the ``k`` highest scores (ties: lower index first).

    Parameters
    ----------
    scores : numpy.ndarray
        Scores ``[..., Q]``.
    k : int
        Number of indices to keep, ``1 <= k <= Q``.

    Returns
    -------
    numpy.ndarray
        Integer array ``[..., k]``, highest score first.

    Examples
    --------
    >>> topk_indices(np.array([0.1, 0.9, 0.9, 0.5]), 3)
    array([1, 2, 3])
    """
    scores = np.asarray(scores, dtype=np.float32)
    order = np.argsort(-scores, axis=-1, kind="stable")
    return order[..., :k]


def _check_k(k: int | None, n_queries: int) -> int:
    if k is None:
        raise ValidationError(
            "method='topk' needs k, the number of most confident queries to "
            f"average: pass k=1..{n_queries}"
        )
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValidationError(f"k must be an integer, got {k!r}")
    if not 1 <= int(k) <= n_queries:
        raise ValidationError(
            f"k={k} is out of range: there are {n_queries} queries, pass 1 <= k <= {n_queries}"
        )
    return int(k)


def pool_array(
    x: np.ndarray,
    method: str = "mean",
    logits: np.ndarray | None = None,
    k: int | None = None,
    score: str = "foreground",
) -> np.ndarray:
    """Pool an in-memory block ``[rows, query, feature]`` over its query axis.

    This is the NumPy kernel that :func:`pool_dataarray` applies to every
    block of a lazy array.

    Parameters
    ----------
    x : numpy.ndarray
        Embeddings ``[rows, query, feature]`` (any float dtype).
    method : {"mean", "max", "confidence", "topk"}
        Pooling method (see the module documentation).
    logits : numpy.ndarray, optional
        Class logits ``[rows, query, classes]`` (last class = no object);
        required for ``confidence`` and ``topk``.
    k : int, optional
        Number of queries for ``topk``.
    score : {"foreground", "max_class"}
        Foreground score used by ``confidence`` and ``topk``.

    Returns
    -------
    numpy.ndarray
        float32 array ``[rows, feature]``.

    Raises
    ------
    ValidationError
        On an unknown method, a missing ``logits`` or a bad ``k``.
    ShapeMismatchError
        If ``logits`` does not match ``x`` in rows and queries.

    Examples
    --------
    >>> x = np.arange(12, dtype=np.float16).reshape(1, 3, 4)
    >>> pool_array(x, "mean")
    array([[4., 5., 6., 7.]], dtype=float32)
    """
    if method not in POOL_METHODS:
        raise ValidationError(f"unknown pooling method {method!r}; use one of {list(POOL_METHODS)}")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3:
        raise ShapeMismatchError(f"pool_array expects [rows, query, feature], got shape {x.shape}")
    if method == "mean":
        return x.mean(axis=1, dtype=np.float32)
    if method == "max":
        return x.max(axis=1)
    if logits is None:
        raise ValidationError(
            f"method={method!r} needs pred_logits to score the queries; pass logits="
        )
    logits = np.asarray(logits)
    if logits.shape[:2] != x.shape[:2]:
        raise ShapeMismatchError(
            f"logits shape {logits.shape} does not match embeddings shape "
            f"{x.shape} in (rows, query)"
        )
    scores = query_scores(logits, score)
    if method == "confidence":
        w = confidence_weights(scores)
        return np.einsum("rq,rqf->rf", w, x, dtype=np.float32)
    k = _check_k(k, x.shape[1])
    idx = topk_indices(scores, k)
    picked = np.take_along_axis(x, idx[:, :, None], axis=1)
    return picked.mean(axis=1, dtype=np.float32)


def parse_pool(pool: str | None, k: int | None = None) -> tuple[str | None, int | None]:
    """Split a pool spec such as ``"topk:5"`` into ``("topk", 5)``.

    Parameters
    ----------
    pool : str or None
        ``None``, one of :data:`POOL_METHODS`, or ``"topk:K"``.
    k : int, optional
        Explicit ``k``; wins over the one in the spec.

    Returns
    -------
    tuple
        ``(method, k)``.

    Examples
    --------
    >>> parse_pool("topk:5")
    ('topk', 5)
    >>> parse_pool("mean")
    ('mean', None)
    """
    if pool is None:
        return None, k
    if not isinstance(pool, str):
        raise ValidationError(
            f"pool must be None or one of {list(POOL_METHODS)} (or 'topk:K'), got {pool!r}"
        )
    method, sep, rest = pool.partition(":")
    if sep:
        if method != "topk" or not rest.isdigit():
            raise ValidationError(
                f"bad pool spec {pool!r}; only 'topk:K' with an integer K takes a suffix"
            )
        if k is None:
            k = int(rest)
    if method not in POOL_METHODS:
        raise ValidationError(
            f"unknown pooling method {pool!r}; use None, one of {list(POOL_METHODS)}, or 'topk:K'"
        )
    return method, k


def pool_dataarray(
    arr: xr.DataArray,
    over: str | Sequence[str] = "query",
    method: str = "mean",
    logits: xr.DataArray | None = None,
    k: int | None = None,
    score: str = "foreground",
) -> xr.DataArray:
    """Pool a labeled (possibly lazy) array over one or more dimensions.

    Parameters
    ----------
    arr : xarray.DataArray
        Data such as ``(image, query, hidden)``; dask-backed data stays lazy.
    over : str or sequence of str
        Dimension(s) to pool over. ``confidence`` and ``topk`` pool over
        ``"query"`` only.
    method : {"mean", "max", "confidence", "topk"}
        Pooling method (see the module documentation).
    logits : xarray.DataArray, optional
        ``pred_logits`` ``(row, query, class)`` aligned with ``arr`` on the row
        dimension; required for ``confidence`` and ``topk``.
    k : int, optional
        Number of queries for ``topk``.
    score : {"foreground", "max_class"}
        Foreground score used by ``confidence`` and ``topk``.

    Returns
    -------
    xarray.DataArray
        float32 array without the pooled dimension(s); coordinates along the
        remaining dimensions are kept.

    Raises
    ------
    ValidationError
        On an unknown method, a dimension not in ``arr``, missing logits or a
        bad ``k``.

    Examples
    --------
    >>> import xarray as xr
    >>> arr = xr.DataArray(np.ones((2, 3, 4)), dims=("image", "query", "hidden"))
    >>> pool_dataarray(arr, method="max").dims
    ('image', 'hidden')
    """
    if method not in POOL_METHODS:
        raise ValidationError(f"unknown pooling method {method!r}; use one of {list(POOL_METHODS)}")
    _check_score(score)
    dims = (over,) if isinstance(over, str) else tuple(over)
    missing = [d for d in dims if d not in arr.dims]
    if missing or not dims:
        raise ValidationError(
            f"cannot pool over {list(dims)}: the array has dims {list(arr.dims)}; "
            "pass over= with some of them"
        )
    x = arr.astype(np.float32)
    if method == "mean":
        return x.mean(dims, skipna=False, keep_attrs=True)
    if method == "max":
        return x.max(dims, skipna=False, keep_attrs=True)
    if dims != ("query",):
        raise ValidationError(
            f"method={method!r} pools over 'query' only (weights come from "
            f"pred_logits per query), got over={list(dims)}"
        )
    if logits is None:
        raise ValidationError(
            f"method={method!r} needs pred_logits to score the queries; the "
            "store has no such variable (pass logits=<variable name>)"
        )
    if "query" not in logits.dims or logits.sizes["query"] != arr.sizes["query"]:
        raise ShapeMismatchError(
            f"logits dims {dict(logits.sizes)} do not match the embeddings' "
            f"{arr.sizes['query']} queries"
        )
    class_dim = logits.dims[-1]
    scores = xr.apply_ufunc(
        query_scores,
        logits,
        kwargs={"score": score},
        input_core_dims=[[class_dim]],
        dask="parallelized",
        output_dtypes=[np.float32],
    )
    if method == "confidence":
        weights = xr.apply_ufunc(
            confidence_weights,
            scores,
            input_core_dims=[["query"]],
            output_core_dims=[["query"]],
            dask="parallelized",
            output_dtypes=[np.float32],
            dask_gufunc_kwargs={"allow_rechunk": True},
        )
        out = (x * weights).sum("query", skipna=False)
        return out.astype(np.float32)
    k = _check_k(k, arr.sizes["query"])
    feature = [d for d in x.dims if d != "query"][-1]

    def _topk_mean(block: np.ndarray, sc: np.ndarray) -> np.ndarray:
        lead = block.shape[:-2]
        b = block.reshape((-1,) + block.shape[-2:])
        s = sc.reshape((-1, sc.shape[-1]))
        idx = topk_indices(s, k)
        picked = np.take_along_axis(b, idx[:, :, None], axis=1)
        return picked.mean(axis=1, dtype=np.float32).reshape(lead + (b.shape[-1],))

    out = xr.apply_ufunc(
        _topk_mean,
        x,
        scores,
        input_core_dims=[["query", feature], ["query"]],
        output_core_dims=[[feature]],
        dask="parallelized",
        output_dtypes=[np.float32],
        dask_gufunc_kwargs={"allow_rechunk": True},
    )
    return out
