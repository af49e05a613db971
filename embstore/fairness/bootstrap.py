"""Vectorised percentile bootstrap.

Every bootstrap in :mod:`embstore.fairness` is *stratified by group*: each
replicate resamples the rows of one group with replacement, keeping its size.
Replicates are drawn as a count matrix ``W`` of shape ``(n_boot, n)``
(``W[b, i]`` = how often row ``i`` appears in replicate ``b``), so a statistic
that is a (weighted) mean of per-row values or a centroid becomes one matrix
product ``W @ values`` instead of a Python loop over replicates. Blocks of
replicates keep memory bounded (``block_bytes``).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> est, lo, hi = bootstrap_means(np.arange(10.0)[:, None], n_boot=200, rng=rng)
>>> float(est[0]), bool(lo[0] < 4.5 < hi[0])
(4.5, True)
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..errors import ValidationError

__all__ = [
    "bootstrap_means",
    "check_alpha",
    "iter_resample_counts",
    "percentile_ci",
    "resample_counts",
]

#: Default upper bound (bytes) for one block of the count matrix.
DEFAULT_BLOCK_BYTES = 64 * 2**20


def check_alpha(alpha: float) -> float:
    """Validate a two-sided error level for confidence intervals.

    Parameters
    ----------
    alpha : float
        Error level in (0, 1); ``0.05`` gives 95 % intervals.

    Returns
    -------
    float
        ``alpha`` as a float.

    Raises
    ------
    ValidationError
        If ``alpha`` is not strictly between 0 and 1.
    """
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValidationError(
            f"alpha={alpha!r} is not in (0, 1); pass e.g. alpha=0.05 for 95% intervals."
        )
    return alpha


def resample_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Draw a bootstrap count matrix.

    Parameters
    ----------
    n : int
        Number of rows in the sample.
    n_boot : int
        Number of replicates.
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    numpy.ndarray
        ``float32`` array ``(n_boot, n)``; each row sums to ``n``.

    Examples
    --------
    >>> W = resample_counts(5, 3, np.random.default_rng(0))
    >>> W.shape, W.sum(axis=1).tolist()
    ((3, 5), [5.0, 5.0, 5.0])
    """
    if n <= 0 or n_boot <= 0:
        return np.zeros((max(n_boot, 0), max(n, 0)), dtype=np.float32)
    idx = rng.integers(0, n, size=(n_boot, n))
    flat = (idx + n * np.arange(n_boot)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.float32)


def iter_resample_counts(
    n: int,
    n_boot: int,
    rng: np.random.Generator,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> Iterator[np.ndarray]:
    """Yield the count matrix of :func:`resample_counts` in blocks of replicates.

    Parameters
    ----------
    n, n_boot : int
        Sample size and total number of replicates.
    rng : numpy.random.Generator
        Source of randomness.
    block_bytes : int, optional
        Upper bound on the bytes of one block (at least one replicate per block).

    Yields
    ------
    numpy.ndarray
        ``(b, n)`` blocks whose row counts add up to ``n_boot``.
    """
    per = max(1, int(block_bytes // max(1, 4 * n)))
    done = 0
    while done < n_boot:
        b = min(per, n_boot - done)
        yield resample_counts(n, b, rng)
        done += b


def percentile_ci(replicates: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Percentile confidence interval over the first axis, ignoring NaN.

    Parameters
    ----------
    replicates : numpy.ndarray
        ``(n_boot, ...)`` bootstrap replicates.
    alpha : float, optional
        Two-sided error level.

    Returns
    -------
    lo, hi : numpy.ndarray
        Lower and upper bounds with the trailing shape of ``replicates``
        (NaN where every replicate is NaN).

    Examples
    --------
    >>> lo, hi = percentile_ci(np.arange(101.0)[:, None], alpha=0.1)
    >>> float(lo[0]), float(hi[0])
    (5.0, 95.0)
    """
    alpha = check_alpha(alpha)
    reps = np.asarray(replicates, dtype=np.float64)
    if reps.shape[0] == 0:
        nan = np.full(reps.shape[1:], np.nan)
        return nan, nan.copy()
    all_nan = np.all(np.isnan(reps), axis=0)
    safe = np.where(all_nan[None, ...], 0.0, reps)
    lo = np.nanquantile(safe, alpha / 2, axis=0)
    hi = np.nanquantile(safe, 1 - alpha / 2, axis=0)
    lo = np.where(all_nan, np.nan, lo)
    hi = np.where(all_nan, np.nan, hi)
    return lo, hi


def bootstrap_means(
    values: np.ndarray,
    n_boot: int,
    rng: np.random.Generator,
    alpha: float = 0.05,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column means of ``values`` with percentile bootstrap intervals.

    NaN entries are left out of each mean (e.g. the score of an undetected
    person), also inside every replicate.

    Parameters
    ----------
    values : numpy.ndarray
        ``(n, F)`` per-row values of one group.
    n_boot : int
        Number of bootstrap replicates (0 gives NaN intervals).
    rng : numpy.random.Generator
        Source of randomness.
    alpha : float, optional
        Two-sided error level.
    block_bytes : int, optional
        Memory bound for one block of replicates.

    Returns
    -------
    estimate, lo, hi : numpy.ndarray
        Each of shape ``(F,)``.

    Examples
    --------
    >>> v = np.array([[1.0, np.nan], [0.0, 2.0], [1.0, 4.0]])
    >>> est, lo, hi = bootstrap_means(v, 100, np.random.default_rng(0))
    >>> est.round(3).tolist()
    [0.667, 3.0]
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    mask = ~np.isnan(v)
    filled = np.where(mask, v, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        est = filled.sum(0) / mask.sum(0)
    if n_boot <= 0 or v.shape[0] == 0:
        nan = np.full(v.shape[1], np.nan)
        return est, nan, nan.copy()
    reps = []
    m = mask.astype(np.float64)
    for W in iter_resample_counts(v.shape[0], n_boot, rng, block_bytes):
        Wd = W.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            reps.append((Wd @ filled) / (Wd @ m))
    lo, hi = percentile_ci(np.concatenate(reps, axis=0), alpha)
    return est, lo, hi
