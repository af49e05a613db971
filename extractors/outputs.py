"""Small facts about an extraction's output store, shared by the local and Dask runs.

- :func:`store_exists`: whether a local path or fsspec URL already holds something.
- :func:`clean_table`: an annotation table made storable by every backend.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import pandas as pd

__all__ = ["clean_table", "store_exists"]

logger = logging.getLogger(__name__)


def store_exists(path: str, storage_options: Mapping[str, Any] | None = None) -> bool:
    """Whether ``path`` (a local path or an fsspec URL) exists.

    Parameters
    ----------
    path : str
        The store path or URL.
    storage_options : mapping, optional
        fsspec options of a URL.

    Returns
    -------
    bool
        False also when a URL's filesystem cannot be asked (the error is
        logged; opening the store then reports it).

    Examples
    --------
    >>> store_exists(demo_path), store_exists(demo_path + ".missing")
    (True, False)
    """
    if "://" not in path:
        return os.path.exists(path)
    try:
        import fsspec

        fs, p = fsspec.core.url_to_fs(path, **dict(storage_options or {}))
        return bool(fs.exists(p))
    except Exception as exc:  # an unknown protocol or an unreachable server
        logger.warning("cannot check whether %s exists (%s); assuming it does not", path, exc)
        return False


def clean_table(df: pd.DataFrame) -> pd.DataFrame:
    """A copy whose object columns are strings (None and NaN become ``""``).

    Every store backend can then write the table (e.g. the ``persons`` table).

    Parameters
    ----------
    df : pandas.DataFrame
        The table.

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> clean_table(pd.DataFrame({"a": ["x", None, 3], "b": [1, 2, 3]}))["a"].tolist()
    ['x', '', '3']
    """
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].map(
                lambda v: "" if v is None or (isinstance(v, float) and v != v) else str(v)
            )
    return out
