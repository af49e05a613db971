"""Fairness plots: group bars with intervals, distance heatmaps, 2-D
projections coloured by group, and image galleries per group.

Figures are saved as 150 dpi PNG by default; a path ending in ``.svg`` or
``.pdf`` gives that format. They stay readable at real sizes: bars of an
intersection with many groups (10 skin tones x 4 lightings) become small
multiples, one panel per value of the first coordinate, all panels of a
figure on one x-scale; heatmaps grow their cells with the number of groups
(up to :data:`MAX_FIGURE_INCHES`) and rotate their labels; projections label
their axes (PCA: the explained variance) and every legend entry says ``n=``.

Figures, projections and scatter plots come from :mod:`embstore.plotting`
(the one stack the analyzer's plots share); matplotlib (and scikit-learn /
umap for projections) are imported when a function runs, never at
``import embstore``.

Examples
--------
>>> import pandas as pd, os
>>> t = pd.DataFrame({"skin": [1, 2], "grouping": "skin", "count": [30, 40],
...                   "recall": [0.9, 0.7], "recall_lo": [0.8, 0.6], "recall_hi": [0.95, 0.8]})
>>> out = plot_group_bars(t, "recall", os.path.join(out_dir, "r.png"), by=["skin"])
>>> os.path.getsize(out) > 0
True
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import ValidationError
from ..plotting.figures import (
    DEFAULT_DPI,
    FORMATS,
    MAX_FIGURE_INCHES,
    figure_format,
    new_figure,
    save_figure,
)
from ..plotting.projection import project, scatter_projection
from .disparity import group_label

__all__ = [
    "DEFAULT_DPI",
    "FORMATS",
    "MAX_FIGURE_INCHES",
    "plot_distance_heatmap",
    "plot_gallery",
    "plot_group_bars",
    "plot_projection",
    "project_2d",
]

logger = logging.getLogger(__name__)

#: Bars per panel before an intersection is split into small multiples.
MAX_BARS_PER_PANEL = 12

# the figure helpers under the names the analysis plots (layers, attention) import
_figure = new_figure
_save = save_figure


def _short(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _panels(
    table: pd.DataFrame, by: Sequence[str], groupings: Sequence[str] | None
) -> list[tuple[str, pd.DataFrame, list[str]]]:
    """(title, rows, coordinates named in the bar labels) of every panel."""
    if "grouping" not in table.columns:
        return [("+".join(by), table, list(by))]
    names = list(groupings) if groupings is not None else list(dict.fromkeys(table["grouping"]))
    panels: list[tuple[str, pd.DataFrame, list[str]]] = []
    for g in names:
        sub = table[table["grouping"] == g]
        coords = [c for c in str(g).split("*") if c in sub.columns] or list(by)
        if len(sub) <= MAX_BARS_PER_PANEL or len(coords) < 2:
            for start in range(0, max(len(sub), 1), MAX_BARS_PER_PANEL * 2):
                part = sub.iloc[start : start + MAX_BARS_PER_PANEL * 2]
                suffix = (
                    f" ({start + 1}-{start + len(part)} of {len(sub)})"
                    if len(sub) > 2 * MAX_BARS_PER_PANEL
                    else ""
                )
                panels.append((f"{g}{suffix}", part, coords))
            continue
        # small multiples: one panel per value of the first coordinate
        first, rest = coords[0], coords[1:]
        for value, part in sub.groupby(first, sort=False):
            panels.append((f"{g}: {first}={_short(value)}", part, rest))
    return panels


def _group_bars_figure(
    table: pd.DataFrame,
    figure: str,
    by: Sequence[str],
    groupings: Sequence[str] | None,
    title: str | None,
    reference: float | None,
    dpi: int,
) -> Any:
    panels = _panels(table, by, groupings)
    lo_c, hi_c = f"{figure}_lo", f"{figure}_hi"
    # one x-scale for every panel: values and interval ends, and 0 for bars
    ends = [
        pd.to_numeric(table[c], errors="coerce").to_numpy(dtype=float)
        for c in (figure, lo_c, hi_c)
        if c in table.columns
    ]
    finite = np.concatenate(ends)[np.isfinite(np.concatenate(ends))] if ends else np.zeros(0)
    xmin = min(0.0, float(finite.min())) if finite.size else 0.0
    xmax = max(0.0, float(finite.max())) if finite.size else 1.0
    if reference is not None:
        xmin, xmax = min(xmin, reference), max(xmax, reference)
    pad = 0.05 * (xmax - xmin or 1.0)
    ncols = 1 if len(panels) <= 3 else (2 if len(panels) <= 8 else 3)
    rows = [panels[i : i + ncols] for i in range(0, len(panels), ncols)]
    heights = [max(max(len(p[1]), 1) for p in row) for row in rows]
    fig = new_figure(
        1.5 + 3.6 * ncols if ncols > 1 else 7.0, 1.0 + sum(0.24 * h + 0.6 for h in heights), dpi=dpi
    )
    axes = fig.subplots(
        len(rows),
        ncols,
        squeeze=False,
        sharex=True,
        gridspec_kw={"height_ratios": [h + 1.5 for h in heights]},
    )
    for r, row in enumerate(rows):
        for c in range(ncols):
            ax = axes[r, c]
            if c >= len(row):
                ax.axis("off")
                continue
            gname, sub, coords = row[c]
            labels = [
                f"{group_label(rw, coords)} (n={int(rw['count'])})"
                if "count" in sub.columns
                else group_label(rw, coords)
                for _, rw in sub.iterrows()
            ]
            y = (heights[r] - 1) - np.arange(len(sub))  # top-aligned in the row
            v = pd.to_numeric(sub[figure], errors="coerce").to_numpy(dtype=float)
            ok = np.isfinite(v)
            ax.barh(y[ok], v[ok], color="#4c72b0", height=0.7)
            if lo_c in sub.columns and hi_c in sub.columns:
                lo = pd.to_numeric(sub[lo_c], errors="coerce").to_numpy(dtype=float)
                hi = pd.to_numeric(sub[hi_c], errors="coerce").to_numpy(dtype=float)
                ci = ok & np.isfinite(lo) & np.isfinite(hi)
                ax.errorbar(
                    v[ci],
                    y[ci],
                    xerr=[np.maximum(v[ci] - lo[ci], 0), np.maximum(hi[ci] - v[ci], 0)],
                    fmt="none",
                    ecolor="black",
                    capsize=2,
                    linewidth=0.8,
                )
            for yy in y[~ok]:
                ax.text(xmin, yy, "  too few rows", va="center", fontsize=7, color="grey")
            if reference is not None:
                ax.axvline(reference, color="grey", linestyle="--", linewidth=1)
            ax.set_yticks(y)
            ax.set_yticklabels(labels, fontsize=7)
            ax.set_ylim(-0.7, max(heights[r], 1) - 0.3)
            ax.set_title(gname, fontsize=8, loc="left")
            ax.tick_params(axis="x", labelsize=7, labelbottom=True)
            ax.set_xlim(xmin - pad, xmax + pad)
            ax.grid(axis="x", linewidth=0.4, alpha=0.5)
    for c in range(ncols):
        axes[-1, c].set_xlabel(figure, fontsize=8)
    n_groups = len(table)
    fig.suptitle(
        title or f"{figure} by group ({n_groups} groups; bars: value, whiskers: interval)",
        fontsize=10,
    )
    return fig


def plot_group_bars(
    table: pd.DataFrame,
    figure: str,
    path: str | os.PathLike,
    by: Sequence[str],
    groupings: Sequence[str] | None = None,
    title: str | None = None,
    reference: float | None = None,
    dpi: int = DEFAULT_DPI,
    format: str | None = None,
) -> str:
    """Horizontal bars of one figure per group, with bootstrap intervals.

    One panel per grouping (``skin``, ``lighting``, ``skin*lighting``...);
    an intersection with more than 12 groups becomes small multiples, one
    panel per value of its first coordinate. Every panel shares one x-scale.
    Groups without a value (below ``min_count``) are listed with their count
    and no bar; each bar label says ``n=``.

    Parameters
    ----------
    table : pandas.DataFrame
        A group table (``group_stats`` / ``detection_fairness``).
    figure : str
        Column to draw; ``<figure>_lo``/``_hi`` are used when present.
    path : str or os.PathLike
        Output file (``.png``, ``.svg`` or ``.pdf``).
    by : sequence of str
        The grouping coordinates (for the labels).
    groupings : sequence of str, optional
        Panels to draw (default: every grouping in the table).
    title : str, optional
        Figure title (default: the figure name).
    reference : float, optional
        Draw a dashed vertical line here (e.g. 1 for a ratio).
    dpi : int, optional
        Resolution of a PNG.
    format : {"png", "svg", "pdf"}, optional
        File format (default: from the suffix, else png).

    Returns
    -------
    str
        The path written.

    Raises
    ------
    ValidationError
        If ``figure`` is not a column of ``table``.
    """
    if figure not in table.columns:
        raise ValidationError(
            f"figure {figure!r} is not a column of the table; choose among {list(table.columns)!r}."
        )
    fig = _group_bars_figure(table, figure, by, groupings, title, reference, dpi)
    return save_figure(fig, path, format=format)


def plot_distance_heatmap(
    distances: xr.DataArray,
    path: str | os.PathLike,
    title: str | None = None,
    dpi: int = DEFAULT_DPI,
    format: str | None = None,
) -> str:
    """Heatmap of a between-group distance matrix, readable up to 40 x 40.

    Cells are at least 0.24 inch; labels are rotated and carry ``n=`` (from
    the ``count`` coordinate, when present); values are written in the cells
    up to 12 groups.

    Parameters
    ----------
    distances : xarray.DataArray
        Square matrix with dims ``("group", "other")`` (``GroupStats.distances``).
    path : str or os.PathLike
        Output file (``.png``, ``.svg`` or ``.pdf``).
    title : str, optional
        Figure title.
    dpi : int, optional
        Resolution of a PNG.
    format : {"png", "svg", "pdf"}, optional
        File format (default: from the suffix, else png).

    Returns
    -------
    str
        The path written.
    """
    D = np.asarray(distances.values, dtype=float)
    dim = distances.dims[0]
    names = [str(v) for v in distances[dim].values]
    # label by the grouping coordinates' values ("3, dimly_lit"); their names go on the axes
    cols = [
        str(c) for c, v in distances.coords.items() if v.dims == (dim,) and c not in (dim, "count")
    ]
    if cols:
        values = [np.asarray(distances.coords[c].values) for c in cols]
        names = [", ".join(_short(v[i]) for v in values) for i in range(len(names))]
    short = list(names)
    if "count" in distances.coords:
        counts = np.asarray(distances.coords["count"].values)
        names = [f"{nm} (n={int(c)})" for nm, c in zip(names, counts)]
    n = len(names)
    cell = 0.45 if n <= 12 else 0.24
    longest = max((len(nm) for nm in names), default=4)
    label_in = min(3.5, 0.065 * longest + 0.3)
    fig = new_figure(1.6 + label_in + cell * n, 1.0 + label_in + cell * n, dpi=dpi)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(np.ma.masked_invalid(D), cmap="viridis", interpolation="nearest")
    fontsize = 7 if n <= 24 else 6
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    if max((len(nm) for nm in short), default=0) > 3:
        ax.set_xticklabels(
            short, rotation=60, ha="right", rotation_mode="anchor", fontsize=fontsize
        )
    else:
        ax.set_xticklabels(short, fontsize=fontsize)
    ax.set_yticklabels(names, fontsize=fontsize)
    if cols:
        ax.set_xlabel(", ".join(cols), fontsize=8)
        ax.set_ylabel(", ".join(cols), fontsize=8)
    if len(cols) > 1:  # lines between blocks of the first coordinate
        first = np.asarray(distances.coords[cols[0]].values)
        for b in np.flatnonzero(first[1:] != first[:-1]) + 0.5:
            ax.axhline(b, color="white", linewidth=1.2)
            ax.axvline(b, color="white", linewidth=1.2)
    ax.set_xticks(np.arange(-0.5, n, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, n, 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=0.3)
    ax.tick_params(which="minor", length=0)
    mid = np.nanmean([np.nanmin(D), np.nanmax(D)]) if np.isfinite(D).any() else 0.0
    if n <= 12:
        for i in range(n):
            for j in range(n):
                if np.isfinite(D[i, j]):
                    ax.text(
                        j,
                        i,
                        f"{D[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if D[i, j] < mid else "black",
                    )
    cbar = fig.colorbar(im, ax=ax, shrink=0.6)
    cbar.set_label("cosine distance between group centroids", fontsize=8)
    cbar.ax.tick_params(labelsize=7)
    ax.set_title(
        title or f"centroid distances ({distances.attrs.get('grouping', '')}, {n} groups)",
        fontsize=10,
    )
    return save_figure(fig, path, format=format)


def project_2d(X: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-D projection of the rows of ``X`` (see :func:`embstore.plotting.project`).

    Parameters
    ----------
    X : numpy.ndarray
        ``(n, D)`` rows.
    method : {"pca", "tsne", "umap"}, optional
        ``"umap"`` needs the optional ``umap-learn`` package.
    seed : int, optional
        Random state of t-SNE / UMAP.

    Returns
    -------
    numpy.ndarray
        ``(n, 2)``.

    Raises
    ------
    ValidationError
        For an unknown method or fewer than 3 rows.
    MissingDependencyError
        If scikit-learn (or umap for ``"umap"``) is missing.

    Examples
    --------
    >>> project_2d(np.random.default_rng(0).normal(size=(20, 4)), "pca").shape
    (20, 2)
    """
    return project(X, method, seed=seed).points


def _project(X: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, list[str]]:
    """The projection and its two axis labels (PCA: explained variance)."""
    proj = project(X, method, seed=seed)
    return proj.points, proj.axis_labels


def plot_projection(
    X: np.ndarray,
    groups: Sequence[Any] | np.ndarray,
    path: str | os.PathLike,
    method: str = "pca",
    max_points: int = 5000,
    seed: int = 0,
    title: str | None = None,
    dpi: int = DEFAULT_DPI,
    format: str | None = None,
) -> str:
    """Scatter of a 2-D projection, coloured by group.

    Axes are labeled (PCA: the share of variance each component explains);
    legend entries give ``n=`` per group; more than 10 groups put the legend
    beside the plot. Drawn by :func:`embstore.plotting.scatter_projection`.

    Parameters
    ----------
    X : numpy.ndarray
        ``(n, D)`` rows.
    groups : sequence
        ``(n,)`` group label of each row.
    path : str or os.PathLike
        Output file (``.png``, ``.svg`` or ``.pdf``).
    method : {"pca", "tsne", "umap"}, optional
        Projection (see :func:`project_2d`).
    max_points : int, optional
        Random subsample drawn above this many rows.
    seed : int, optional
        Seed of the subsample and the projection.
    title : str, optional
        Figure title.
    dpi : int, optional
        Resolution of a PNG.
    format : {"png", "svg", "pdf"}, optional
        File format (default: from the suffix).

    Returns
    -------
    str
        The path written.

    Examples
    --------
    >>> import os
    >>> X = np.random.default_rng(0).normal(size=(40, 6))
    >>> out = plot_projection(X, np.arange(40) % 4, os.path.join(out_dir, "proj.png"))
    >>> os.path.getsize(out) > 0
    True
    """
    X = np.asarray(X)
    labels = np.asarray([str(g) for g in groups])
    if len(labels) != len(X):
        raise ValidationError(
            f"groups has {len(labels)} labels for {len(X)} rows; give one per row."
        )
    figure_format(path, format)  # refuse a bad format before the projection runs
    if len(X) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(X), max_points, replace=False))
        X, labels = X[keep], labels[keep]
    proj = project(X, method, seed=seed)
    written = scatter_projection(
        proj.points,
        path,
        title=title or f"{method.upper()} projection of {len(X)} rows",
        axis_labels=proj.axis_labels,
        groups=labels,
        dpi=dpi,
        format=format,
    )
    return os.fspath(written)


def plot_gallery(
    paths_by_group: Mapping[str, Sequence[str]],
    path: str | os.PathLike,
    n_per_group: int = 6,
    thumb: int = 96,
    title: str | None = None,
    dpi: int = DEFAULT_DPI,
    format: str | None = None,
) -> str:
    """Grid of example images, one row per group.

    Parameters
    ----------
    paths_by_group : mapping of str to sequence of str
        Image files per group label; unreadable files are skipped (logged).
    path : str or os.PathLike
        Output PNG.
    n_per_group : int, optional
        Images per row.
    thumb : int, optional
        Thumbnail size in pixels.
    title : str, optional
        Figure title.
    dpi : int, optional
        Resolution of a PNG.
    format : {"png", "svg", "pdf"}, optional
        File format (default: from the suffix, else png).

    Returns
    -------
    str
        The path written.

    Raises
    ------
    ValidationError
        If no group is given.
    """
    from PIL import Image

    if not paths_by_group:
        raise ValidationError("paths_by_group is empty; give at least one group with image paths.")
    groups = list(paths_by_group)
    fig = new_figure(1.2 * n_per_group + 1.5, 1.25 * len(groups) + 0.5, dpi=dpi)
    axes = fig.subplots(len(groups), n_per_group, squeeze=False)
    for r, g in enumerate(groups):
        shown = 0
        for p in list(paths_by_group[g]):
            if shown >= n_per_group:
                break
            try:
                with Image.open(p) as im:
                    rgb = im.convert("RGB")
                    rgb.thumbnail((thumb, thumb))
                    axes[r, shown].imshow(np.asarray(rgb))
                shown += 1
            except OSError as exc:
                logger.warning("gallery: cannot read %s (%s)", p, exc)
        for c in range(n_per_group):
            axes[r, c].axis("off")
        axes[r, 0].text(
            -0.1, 0.5, g, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=8
        )
    fig.suptitle(title or "examples per group", fontsize=10)
    return save_figure(fig, path, format=format)
