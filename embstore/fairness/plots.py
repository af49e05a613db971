"""Fairness plots saved as PNG: group bars with intervals, distance heatmaps,
2-D projections coloured by group, and image galleries per group.

matplotlib (and scikit-learn / umap for projections) are imported when a
function runs, never at ``import embstore``. Figures are drawn on a
:class:`matplotlib.figure.Figure` with the Agg canvas directly (no pyplot, no
global backend switch): safe on headless machines and in threads.

Examples
--------
>>> import pandas as pd, tempfile, os
>>> t = pd.DataFrame({"skin": [1, 2], "grouping": "skin", "count": [30, 40],
...                   "recall": [0.9, 0.7], "recall_lo": [0.8, 0.6], "recall_hi": [0.95, 0.8]})
>>> out = plot_group_bars(t, "recall", os.path.join(tempfile.mkdtemp(), "r.png"), by=["skin"])
>>> os.path.getsize(out) > 0
True
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .._optional import attempt_import
from ..errors import ValidationError
from .disparity import group_label

__all__ = [
    "plot_group_bars",
    "plot_distance_heatmap",
    "project_2d",
    "plot_projection",
    "plot_gallery",
]

logger = logging.getLogger(__name__)


def _figure(width: float, height: float) -> Any:
    attempt_import("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=80, layout="tight")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | os.PathLike) -> str:
    path = os.fspath(path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def plot_group_bars(
    table: pd.DataFrame,
    figure: str,
    path: str | os.PathLike,
    by: Sequence[str],
    groupings: Sequence[str] | None = None,
    title: str | None = None,
    reference: float | None = None,
) -> str:
    """Horizontal bars of one figure per group, with bootstrap intervals.

    One panel per grouping (``skin``, ``lighting``, ``skin*lighting``...).
    Groups without a value (below ``min_count``) are listed with their count
    and no bar.

    Parameters
    ----------
    table : pandas.DataFrame
        A group table (``group_stats`` / ``detection_fairness``).
    figure : str
        Column to draw; ``<figure>_lo``/``_hi`` are used when present.
    path : str or os.PathLike
        Output PNG.
    by : sequence of str
        The grouping coordinates (for the labels).
    groupings : sequence of str, optional
        Panels to draw (default: every grouping in the table).
    title : str, optional
        Figure title (default: the figure name).
    reference : float, optional
        Draw a dashed vertical line here (e.g. 1 for a ratio).

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
    if "grouping" in table.columns:
        names = list(groupings) if groupings is not None else list(dict.fromkeys(table["grouping"]))
        parts = [(g, table[table["grouping"] == g]) for g in names]
    else:
        parts = [("+".join(by), table)]
    heights = [max(len(p), 1) for _, p in parts]
    fig = _figure(6.5, 0.9 + 0.28 * sum(heights) + 0.5 * len(parts))
    axes = fig.subplots(len(parts), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, (gname, sub) in zip(axes, parts):
        labels = [f"{group_label(r, by)} (n={int(r['count'])})" if "count" in sub.columns else group_label(r, by)
                  for _, r in sub.iterrows()]
        y = np.arange(len(sub))[::-1]
        v = pd.to_numeric(sub[figure], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(v)
        ax.barh(y[ok], v[ok], color="#4c72b0", height=0.7)
        lo_c, hi_c = f"{figure}_lo", f"{figure}_hi"
        if lo_c in sub.columns and hi_c in sub.columns:
            lo = pd.to_numeric(sub[lo_c], errors="coerce").to_numpy(dtype=float)
            hi = pd.to_numeric(sub[hi_c], errors="coerce").to_numpy(dtype=float)
            ci = ok & np.isfinite(lo) & np.isfinite(hi)
            ax.errorbar(
                v[ci], y[ci], xerr=[v[ci] - lo[ci], hi[ci] - v[ci]], fmt="none", ecolor="black", capsize=3
            )
        for yy in y[~ok]:
            ax.text(0, yy, "  too few rows", va="center", fontsize=8, color="grey")
        if reference is not None:
            ax.axvline(reference, color="grey", linestyle="--", linewidth=1)
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_title(gname, fontsize=9, loc="left")
    axes[-1].set_xlabel(figure)
    fig.suptitle(title or figure, fontsize=11)
    return _save(fig, path)


def plot_distance_heatmap(distances: xr.DataArray, path: str | os.PathLike, title: str | None = None) -> str:
    """Heatmap of a between-group distance matrix.

    Parameters
    ----------
    distances : xarray.DataArray
        Square matrix with dims ``("group", "other")`` (``GroupStats.distances``).
    path : str or os.PathLike
        Output PNG.
    title : str, optional
        Figure title.

    Returns
    -------
    str
        The path written.
    """
    D = np.asarray(distances.values, dtype=float)
    names = [str(v) for v in distances[distances.dims[0]].values]
    n = len(names)
    fig = _figure(2.5 + 0.45 * n, 2.0 + 0.45 * n)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(np.ma.masked_invalid(D), cmap="viridis")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_yticklabels(names, fontsize=7)
    mid = np.nanmean([np.nanmin(D), np.nanmax(D)]) if np.isfinite(D).any() else 0.0
    if n <= 12:
        for i in range(n):
            for j in range(n):
                if np.isfinite(D[i, j]):
                    ax.text(j, i, f"{D[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if D[i, j] < mid else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="cosine distance")
    ax.set_title(title or f"centroid distances ({distances.attrs.get('grouping', '')})", fontsize=10)
    return _save(fig, path)


def project_2d(X: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-D projection of the rows of ``X``.

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
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or len(X) < 3:
        raise ValidationError(f"need a 2-D matrix with at least 3 rows to project, got shape {X.shape}.")
    attempt_import("sklearn")
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(X)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(2.0, (len(X) - 1) / 3)))
        return TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(X)
    if method == "umap":
        umap = attempt_import("umap")
        return umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, len(X) - 1)).fit_transform(X)
    raise ValidationError(f"projection method {method!r} is unknown; use 'pca', 'tsne' or 'umap'.")


def plot_projection(
    X: np.ndarray,
    groups: Sequence[Any] | np.ndarray,
    path: str | os.PathLike,
    method: str = "pca",
    max_points: int = 5000,
    seed: int = 0,
    title: str | None = None,
) -> str:
    """Scatter of a 2-D projection, coloured by group.

    Parameters
    ----------
    X : numpy.ndarray
        ``(n, D)`` rows.
    groups : sequence
        ``(n,)`` group label of each row.
    path : str or os.PathLike
        Output PNG.
    method : {"pca", "tsne", "umap"}, optional
        Projection (see :func:`project_2d`).
    max_points : int, optional
        Random subsample drawn above this many rows.
    seed : int, optional
        Seed of the subsample and the projection.
    title : str, optional
        Figure title.

    Returns
    -------
    str
        The path written.
    """
    X = np.asarray(X)
    groups = np.asarray([str(g) for g in groups])
    if len(groups) != len(X):
        raise ValidationError(f"groups has {len(groups)} labels for {len(X)} rows; give one per row.")
    rng = np.random.default_rng(seed)
    if len(X) > max_points:
        keep = np.sort(rng.choice(len(X), max_points, replace=False))
        X, groups = X[keep], groups[keep]
    P = project_2d(X, method, seed)
    fig = _figure(6.5, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    names = sorted(set(groups), key=lambda s: (len(s), s))
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    for i, name in enumerate(names):
        m = groups == name
        ax.scatter(P[m, 0], P[m, 1], s=8, alpha=0.7, color=cmap(i % cmap.N), label=f"{name} ({int(m.sum())})")
    ax.legend(fontsize=7, markerscale=2, loc="best", frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"{method.upper()} projection", fontsize=10)
    return _save(fig, path)


def plot_gallery(
    paths_by_group: Mapping[str, Sequence[str]],
    path: str | os.PathLike,
    n_per_group: int = 6,
    thumb: int = 96,
    title: str | None = None,
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
    fig = _figure(1.2 * n_per_group + 1.5, 1.25 * len(groups) + 0.5)
    axes = fig.subplots(len(groups), n_per_group, squeeze=False)
    for r, g in enumerate(groups):
        shown = 0
        for p in list(paths_by_group[g]):
            if shown >= n_per_group:
                break
            try:
                with Image.open(p) as im:
                    im = im.convert("RGB")
                    im.thumbnail((thumb, thumb))
                    axes[r, shown].imshow(np.asarray(im))
                shown += 1
            except OSError as exc:
                logger.warning("gallery: cannot read %s (%s)", p, exc)
        for c in range(n_per_group):
            axes[r, c].axis("off")
        axes[r, 0].text(-0.1, 0.5, g, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=8)
    fig.suptitle(title or "examples per group", fontsize=10)
    return _save(fig, path)

