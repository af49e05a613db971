"""Disparity summaries across groups: max-min difference and min/max ratio.

The definitions match fairlearn's ``MetricFrame.difference()`` and
``MetricFrame.ratio()`` with ``method="between_groups"``: over the groups of
one grouping (groups with NaN figures, e.g. below ``min_count``, are left
out), ``difference = max - min`` and ``ratio = min / max``.

Examples
--------
>>> import pandas as pd
>>> t = pd.DataFrame({"skin": [1, 2, 3], "grouping": "skin", "recall": [0.9, 0.6, 0.75]})
>>> d = disparity_summary(t, ["recall"], by=["skin"])
>>> round(float(d.loc[("skin", "recall"), "difference"]), 2)
0.3
>>> round(float(d.loc[("skin", "recall"), "ratio"]), 3)
0.667
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import ValidationError

__all__ = ["difference", "disparity_summary", "group_label", "ratio"]


def difference(values: Sequence[float] | np.ndarray) -> float:
    """Largest minus smallest finite value (NaN if there is none).

    Parameters
    ----------
    values : array_like
        One figure per group.

    Returns
    -------
    float

    Examples
    --------
    >>> difference([0.2, float("nan"), 0.5])
    0.3
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.max() - v.min()) if v.size else float("nan")


def ratio(values: Sequence[float] | np.ndarray) -> float:
    """Smallest divided by largest finite value.

    NaN when there is no finite value, when the largest is 0, or when the
    values change sign (a ratio of a negative and a positive figure has no
    meaning as a disparity).

    Parameters
    ----------
    values : array_like
        One figure per group.

    Returns
    -------
    float

    Examples
    --------
    >>> ratio([0.5, 1.0, 0.8])
    0.5
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return float("nan")
    lo, hi = v.min(), v.max()
    if hi == 0 or (lo < 0 < hi) or hi < 0:
        return float("nan")
    return float(lo / hi)


def _fmt(value: object) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def group_label(row: pd.Series, by: Sequence[str]) -> str:
    """Readable label of a group row, e.g. ``"skin=3, lighting=well"``.

    Parameters
    ----------
    row : pandas.Series
        A row of a group table.
    by : sequence of str
        The grouping coordinates; missing (NA) ones are left out.

    Returns
    -------
    str

    Examples
    --------
    >>> group_label(pd.Series({"skin": 3, "lighting": None}), ["skin", "lighting"])
    'skin=3'
    """
    parts = [f"{b}={_fmt(row[b])}" for b in by if b in row.index and not pd.isna(row[b])]
    return ", ".join(parts) if parts else "all"


def disparity_summary(
    table: pd.DataFrame,
    figures: Sequence[str],
    by: Sequence[str],
    grouping_col: str = "grouping",
) -> pd.DataFrame:
    """Summarise how much each figure varies across the groups of each grouping.

    Parameters
    ----------
    table : pandas.DataFrame
        A group table as returned by ``group_stats`` or ``detection_fairness``:
        one row per group, the ``by`` columns, a ``grouping`` column and the
        figure columns.
    figures : sequence of str
        Figure columns to summarise.
    by : sequence of str
        The grouping coordinates (used to label the extreme groups).
    grouping_col : str, optional
        Column naming the grouping of each row. When absent, the whole table
        is one grouping named ``"+".join(by)``.

    Returns
    -------
    pandas.DataFrame
        Index ``(grouping, figure)``; columns ``n_groups``, ``min``, ``max``,
        ``difference`` (max - min), ``ratio`` (min / max), ``argmin`` and
        ``argmax`` (labels of the extreme groups).

    Raises
    ------
    ValidationError
        If a figure is not a column of ``table``.
    """
    missing = [f for f in figures if f not in table.columns]
    if missing:
        raise ValidationError(
            f"figures {missing!r} are not columns of the table; choose among "
            f"{list(table.columns)!r}."
        )
    if grouping_col in table.columns:
        parts = list(table.groupby(grouping_col, sort=False))
    else:
        parts = [("+".join(by), table)]
    records = []
    for grouping, sub in parts:
        labels = [group_label(r, by) for _, r in sub.iterrows()]
        for fig in figures:
            v = pd.to_numeric(sub[fig], errors="coerce").to_numpy(dtype=np.float64)
            ok = np.isfinite(v)
            rec = {
                "grouping": grouping,
                "figure": fig,
                "n_groups": int(ok.sum()),
                "min": float(v[ok].min()) if ok.any() else np.nan,
                "max": float(v[ok].max()) if ok.any() else np.nan,
                "difference": difference(v),
                "ratio": ratio(v),
                "argmin": labels[int(np.nanargmin(np.where(ok, v, np.inf)))] if ok.any() else None,
                "argmax": labels[int(np.nanargmax(np.where(ok, v, -np.inf)))] if ok.any() else None,
            }
            records.append(rec)
    out = pd.DataFrame.from_records(
        records,
        columns=[
            "grouping",
            "figure",
            "n_groups",
            "min",
            "max",
            "difference",
            "ratio",
            "argmin",
            "argmax",
        ],
    )
    return out.set_index(["grouping", "figure"])
