"""Linear centred kernel alignment (CKA) between two sets of representations.

Linear CKA (Kornblith et al., 2019, "Similarity of Neural Network
Representations Revisited", eq. 4 with a linear kernel) compares two
representations ``X`` (``n x p``) and ``Y`` (``n x q``) of the *same* ``n``
inputs:

.. math::

    \\mathrm{CKA}(X, Y) = \\frac{\\mathrm{HSIC}(K, L)}
        {\\sqrt{\\mathrm{HSIC}(K, K)\\,\\mathrm{HSIC}(L, L)}},
    \\qquad K = X X^T,\\ L = Y Y^T,\\ \\mathrm{HSIC}(K, L) \\propto
    \\mathrm{tr}(K H L H),

with the centring matrix ``H = I - 11^T / n``. After centring the columns of
``X`` and ``Y`` this equals the feature-space form

.. math:: \\frac{\\lVert Y^T X \\rVert_F^2}{\\lVert X^T X \\rVert_F\\, \\lVert Y^T Y \\rVert_F},

which costs ``O(n p q)`` instead of ``O(n^2 (p + q))`` and never builds an
``n x n`` matrix. :func:`cka` uses the feature-space form unless ``n`` is
smaller than both feature sizes. CKA lies in ``[0, 1]``, is 1 for identical
inputs and is invariant to orthogonal transforms and isotropic scaling of
either side (but not to arbitrary invertible linear maps).

Rows are matched by id when both inputs are labeled
(:class:`xarray.DataArray` from ``EmbeddingAnalyzer.vectors`` or
:class:`pandas.DataFrame` indexed by id), so two stores of the same images
extracted by different models compare directly.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(50, 8))
>>> Q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
>>> round(cka(X, 3.0 * X @ Q), 6)
1.0
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import ShapeMismatchError, ValidationError

__all__ = ["align_by_id", "cka", "cka_from_matrices"]


def _row_keys(obj: Any) -> pd.Index | None:
    """Row labels of a labeled input (None for a plain array)."""
    if isinstance(obj, pd.DataFrame):
        return pd.Index(obj.index)
    if isinstance(obj, xr.DataArray):
        dim = obj.dims[0]
        coords = [str(c) for c, v in obj.coords.items() if v.dims == (dim,)]
        if not coords:
            return None
        # the id is the first row coordinate; an unpooled view adds the query
        first = coords[0]
        keys = [first] + [c for c in ("query",) if c in coords and c != first]
        if len(keys) == 1:
            return pd.Index(np.asarray(obj.coords[first].values))
        return pd.MultiIndex.from_arrays(
            [np.asarray(obj.coords[k].values) for k in keys], names=keys
        )
    return None


def _values(obj: Any) -> np.ndarray:
    if isinstance(obj, pd.DataFrame):
        return obj.to_numpy(dtype=np.float64)
    if isinstance(obj, xr.DataArray):
        return np.asarray(obj.values, dtype=np.float64)
    return np.asarray(obj, dtype=np.float64)


def align_by_id(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray, pd.Index | None]:
    """Rows of two labeled representations matched by id.

    Parameters
    ----------
    a, b : numpy.ndarray, pandas.DataFrame or xarray.DataArray
        ``(n, p)`` and ``(m, q)``. DataFrames are matched on their index,
        DataArrays on their first row coordinate (the id; plus ``query`` for
        unpooled vectors). Plain arrays are matched by position.

    Returns
    -------
    x, y : numpy.ndarray
        float64 rows of the ids present in both, in ``a``'s order.
    ids : pandas.Index or None
        Those ids (None when matched by position).

    Raises
    ------
    ShapeMismatchError
        If unlabeled inputs have different row counts, or no id is shared.
    ValidationError
        If an input is not 2-D or has duplicate ids.
    """
    ka, kb = _row_keys(a), _row_keys(b)
    x, y = _values(a), _values(b)
    for name, v in (("a", x), ("b", y)):
        if v.ndim != 2:
            raise ValidationError(
                f"cka input {name} has shape {v.shape}; pass a 2-D (rows, features) array, e.g. "
                "an.vectors(variable, pool='mean')."
            )
    if ka is None or kb is None:
        if len(x) != len(y):
            raise ShapeMismatchError(
                f"cka inputs have {len(x)} and {len(y)} rows and no ids to align them; pass "
                "labeled inputs (an.vectors(...) or DataFrames indexed by id) or equal row counts."
            )
        return x, y, None
    for name, k in (("a", ka), ("b", kb)):
        if k.has_duplicates:
            raise ValidationError(
                f"cka input {name} has duplicate ids (e.g. {k[k.duplicated()][0]!r}); "
                "deduplicate or pool per id first."
            )
    pos_b = kb.get_indexer(ka)
    keep = pos_b >= 0
    if not keep.any():
        raise ShapeMismatchError(
            f"cka inputs share no id (a: {len(ka)} ids, b: {len(kb)} ids); compare stores of the "
            "same images."
        )
    return x[keep], y[pos_b[keep]], ka[keep]


def cka_from_matrices(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two row-aligned float matrices (no id handling).

    Parameters
    ----------
    x, y : numpy.ndarray
        ``(n, p)`` and ``(n, q)``.

    Returns
    -------
    float
        In ``[0, 1]``; NaN when a side is constant (zero variance).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    y = y - y.mean(axis=0, keepdims=True)
    n = len(x)
    if n < min(x.shape[1], y.shape[1]):
        # Gram form: tr(K L) / sqrt(tr(K K) tr(L L)) on centred data
        K, L = x @ x.T, y @ y.T
        num = float(np.sum(K * L))
        den = float(np.linalg.norm(K) * np.linalg.norm(L))
    else:
        num = float(np.linalg.norm(y.T @ x) ** 2)
        den = float(np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))
    if den <= 0.0 or not np.isfinite(den):
        return float("nan")
    return float(min(max(num / den, 0.0), 1.0))


def cka(a: Any, b: Any, *, min_rows: int = 2) -> float:
    """Linear CKA between two representations of the same inputs.

    Parameters
    ----------
    a, b : numpy.ndarray, pandas.DataFrame or xarray.DataArray
        ``(n, p)`` and ``(m, q)`` representations. Labeled inputs are aligned
        by id (see :func:`align_by_id`); e.g.
        ``cka(an1.vectors("query_embeddings"), an2.vectors("avgpool"))``
        compares two stores of the same images.
    min_rows : int, optional
        Fewest shared rows accepted.

    Returns
    -------
    float
        Linear CKA in ``[0, 1]`` (NaN if one side has zero variance).

    Raises
    ------
    ShapeMismatchError
        If rows cannot be aligned.
    ValidationError
        If fewer than ``min_rows`` rows are shared or values are not finite.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(1).normal(size=(20, 4))
    >>> cka(x, x)
    1.0
    """
    x, y, _ = align_by_id(a, b)
    if len(x) < max(2, int(min_rows)):
        raise ValidationError(
            f"cka needs at least {max(2, int(min_rows))} shared rows, got {len(x)}; compare "
            "more inputs."
        )
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValidationError("cka inputs contain NaN or infinite values; drop or fill them first.")
    return cka_from_matrices(x, y)
