"""Counting NaN/Inf in imported legacy arrays (reported, not refused).

Legacy files are imported as they are (``allow_nonfinite=True``: the old
runs did write NaN rows, and refusing them would lose the rest of the run),
but every importer counts the files (or rows) holding non-finite values and
reports them, so an all-NaN file never passes without a word.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["count_nonfinite"]


def count_nonfinite(arrays: Iterable[np.ndarray] | np.ndarray) -> int:
    """Number of NaN/Inf values in one array or several.

    All-finite arrays (the usual case) cost one fast pass: an exponent-bit
    test for float16 (numpy has no vectorised float16 min/max), a min/max
    reduction for other floats; only arrays that hold NaN/Inf are counted
    value by value.

    Parameters
    ----------
    arrays : numpy.ndarray or iterable of numpy.ndarray
        Arrays to check (non-float arrays count 0).

    Returns
    -------
    int

    Examples
    --------
    >>> count_nonfinite(np.array([1.0, np.nan, np.inf], dtype=np.float16))
    2
    >>> count_nonfinite([np.ones(3, dtype=np.float32), np.arange(3)])
    0
    """
    if isinstance(arrays, np.ndarray):
        arrays = [arrays]
    total = 0
    for a in arrays:
        a = np.asarray(a)
        if a.dtype.kind not in "fc" or a.size == 0:
            continue
        if a.dtype == np.float16:
            if int((a.view(np.uint16) & 0x7FFF).max()) < 0x7C00:
                continue
        elif a.dtype.kind == "f" and np.isfinite(a.min()) and np.isfinite(a.max()):
            continue
        total += int(a.size - np.count_nonzero(np.isfinite(a)))
    return total
