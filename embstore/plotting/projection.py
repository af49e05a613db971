"""PCA / t-SNE / UMAP projections with labelled axes, and their scatter plot.

One stack for every projection embstore draws: :func:`project` returns the
points together with axis labels that say what the axes show (PCA: the share
of variance each component explains); :func:`scatter_projection` draws 2-D
or 3-D points coloured by group, every legend entry saying ``n=``, and saves
the figure at 150 dpi (or as SVG / PDF).

Examples
--------
>>> import os
>>> X = np.random.default_rng(0).normal(size=(60, 8))
>>> proj = project(X, "pca")
>>> proj.points.shape, proj.axis_labels[0].startswith("PC1 (")
((60, 2), True)
>>> path = scatter_projection(proj.points, os.path.join(out_dir, "pca.png"),
...                           axis_labels=proj.axis_labels, groups=np.arange(60) % 3)
>>> path.stat().st_size > 0
True
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._optional import attempt_import
from ..errors import ValidationError
from .figures import DEFAULT_DPI, new_figure, save_figure

__all__ = [
    "METHODS",
    "Projection",
    "check_components",
    "pca_projection",
    "project",
    "scatter_projection",
    "tsne_projection",
    "umap_projection",
]

logger = logging.getLogger(__name__)

#: Projection methods understood by :func:`project`.
METHODS = ("pca", "tsne", "umap")


def check_components(n_components: int, n: int, d: int) -> None:
    """Refuse a projection to other than 2 or 3 components, or of too small a matrix.

    Parameters
    ----------
    n_components : int
        Requested output dimensions.
    n, d : int
        Shape of the matrix.

    Raises
    ------
    ValidationError
        If ``n_components`` is not 2 or 3, or the matrix has too few rows or columns.

    Examples
    --------
    >>> check_components(2, 10, 4)
    >>> check_components(4, 10, 4)
    Traceback (most recent call last):
    embstore.errors.ValidationError: n_components must be 2 or 3, got 4
    """
    if n_components not in (2, 3):
        raise ValidationError(f"n_components must be 2 or 3, got {n_components!r}")
    if n < n_components + 1 or d < n_components:
        raise ValidationError(
            f"need more than {n_components} vectors of at least {n_components} "
            f"dimensions to project, got a [{n}, {d}] matrix; select more rows"
        )


def _matrix(matrix: Any, n_components: int) -> np.ndarray:
    x = np.asarray(matrix, dtype=np.float32)
    if x.ndim != 2:
        raise ValidationError(f"need a 2-D matrix to project, got shape {x.shape}.")
    check_components(n_components, *x.shape)
    return x


def pca_projection(
    matrix: np.ndarray, n_components: int = 2, random_state: int | None = None
) -> tuple[np.ndarray, Any]:
    """Project rows on their first principal components.

    Parameters
    ----------
    matrix : numpy.ndarray
        ``[n, d]`` vectors.
    n_components : {2, 3}
        Number of components.
    random_state : int, optional
        Passed to scikit-learn (matters only for its randomised solver).

    Returns
    -------
    reduced : numpy.ndarray
        ``[n, n_components]``.
    pca : sklearn.decomposition.PCA
        The fitted estimator (``explained_variance_ratio_``...).

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(50, 8))
    >>> pca_projection(x)[0].shape
    (50, 2)
    """
    attempt_import("sklearn")
    from sklearn.decomposition import PCA

    x = _matrix(matrix, n_components)
    pca = PCA(n_components=n_components, random_state=random_state)
    return np.asarray(pca.fit_transform(x)), pca


def tsne_projection(
    matrix: np.ndarray,
    n_components: int = 2,
    perplexity: float | None = 30.0,
    random_state: int = 42,
) -> np.ndarray:
    """t-SNE embedding of the rows (the old analyzer's settings by default).

    Parameters
    ----------
    matrix : numpy.ndarray
        ``[n, d]`` vectors.
    n_components : {2, 3}
        Output dimensions.
    perplexity : float or None, default 30
        Lowered to ``n - 1`` when there are not enough points (scikit-learn
        requires ``perplexity < n``). None picks ``min(30, max(2, (n - 1) / 3))``.
    random_state : int, default 42
        Seed (results are deterministic for a given seed).

    Returns
    -------
    numpy.ndarray
        ``[n, n_components]``.

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(40, 8))
    >>> tsne_projection(x).shape
    (40, 2)
    """
    attempt_import("sklearn")
    from sklearn.manifold import TSNE

    x = _matrix(matrix, n_components)
    n = x.shape[0]
    if perplexity is None:
        perplexity = _auto_perplexity(n)
    elif perplexity >= n:
        logger.warning("perplexity %.1f >= %d points: using %d", perplexity, n, n - 1)
        perplexity = float(n - 1)
    tsne = TSNE(
        n_components=n_components, perplexity=perplexity, random_state=random_state, init="pca"
    )
    return np.asarray(tsne.fit_transform(x))


def _auto_perplexity(n: int) -> float:
    return float(min(30.0, max(2.0, (n - 1) / 3)))


def umap_projection(matrix: np.ndarray, n_components: int = 2, random_state: int = 0) -> np.ndarray:
    """UMAP embedding of the rows (needs the optional ``umap-learn`` package).

    Parameters
    ----------
    matrix : numpy.ndarray
        ``[n, d]`` vectors.
    n_components : {2, 3}
        Output dimensions.
    random_state : int, default 0
        Seed.

    Returns
    -------
    numpy.ndarray
        ``[n, n_components]``.

    Raises
    ------
    MissingDependencyError
        If umap-learn is not installed (``pip install "embstore[viz]"``).
    """
    umap = attempt_import("umap")
    x = _matrix(matrix, n_components)
    reducer = umap.UMAP(
        n_components=n_components, random_state=random_state, n_neighbors=min(15, len(x) - 1)
    )
    return np.asarray(reducer.fit_transform(x))


@dataclass(frozen=True)
class Projection:
    """A projection and what its axes show.

    Attributes
    ----------
    points : numpy.ndarray
        ``[n, n_components]`` projected rows.
    method : str
        ``"pca"``, ``"tsne"`` or ``"umap"``.
    axis_labels : list of str
        One readable label per axis, e.g. ``"PC1 (12.3% of variance)"``.
    names : list of str
        Short component names (``"PC1"``, ``"tSNE1"``, ``"UMAP1"``...).
    attrs : dict
        Method details (PCA: ``explained_variance_ratio``; t-SNE: ``perplexity``).
    """

    points: np.ndarray
    method: str
    axis_labels: list[str]
    names: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)


def project(
    X: np.ndarray,
    method: str = "pca",
    n_components: int = 2,
    seed: int = 0,
    perplexity: float | None = None,
) -> Projection:
    """Project the rows of ``X`` to 2 or 3 dimensions, with labelled axes.

    Parameters
    ----------
    X : numpy.ndarray
        ``(n, D)`` rows (at least ``n_components + 1``).
    method : {"pca", "tsne", "umap"}, optional
        ``"umap"`` needs the optional ``umap-learn`` package.
    n_components : {2, 3}, optional
        Output dimensions.
    seed : int, optional
        Random state of PCA / t-SNE / UMAP.
    perplexity : float, optional
        t-SNE perplexity (default: ``min(30, max(2, (n - 1) / 3))``).

    Returns
    -------
    Projection

    Raises
    ------
    ValidationError
        For an unknown method or too small a matrix.
    MissingDependencyError
        If scikit-learn (or umap for ``"umap"``) is missing.

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(30, 5))
    >>> proj = project(X, "pca", n_components=3)
    >>> proj.points.shape, proj.names
    ((30, 3), ['PC1', 'PC2', 'PC3'])
    >>> project(X, "mds")
    Traceback (most recent call last):
    embstore.errors.ValidationError: projection method 'mds' is unknown; use 'pca', 'tsne' or 'umap'.
    """
    if method not in METHODS:
        raise ValidationError(
            f"projection method {method!r} is unknown; use 'pca', 'tsne' or 'umap'."
        )
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or len(X) < 3:
        raise ValidationError(
            f"need a 2-D matrix with at least 3 rows to project, got shape {X.shape}."
        )
    axes = range(1, n_components + 1)
    if method == "pca":
        P, pca = pca_projection(X, n_components, random_state=seed)
        ratio = np.asarray(pca.explained_variance_ratio_, dtype=float)
        labels = [f"PC{i} ({ratio[i - 1]:.1%} of variance)" for i in axes]
        return Projection(
            P,
            method,
            labels,
            [f"PC{i}" for i in axes],
            {"explained_variance_ratio": ratio.tolist()},
        )
    if method == "tsne":
        perp = _auto_perplexity(len(X)) if perplexity is None else float(perplexity)
        P = tsne_projection(X, n_components, perplexity=perp, random_state=seed)
        perp = min(perp, float(len(X) - 1))
        labels = [f"t-SNE 1 (perplexity {perp:.0f})"] + [f"t-SNE {i}" for i in axes][1:]
        return Projection(P, method, labels, [f"tSNE{i}" for i in axes], {"perplexity": perp})
    P = umap_projection(X, n_components, random_state=seed)
    return Projection(P, method, [f"UMAP {i}" for i in axes], [f"UMAP{i}" for i in axes])


def _natural_key(s: str) -> list[tuple[int, int, str]]:
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", s)]


def scatter_projection(
    points: np.ndarray,
    save_path: str | os.PathLike,
    title: str = "",
    axis_labels: Sequence[str] | None = None,
    groups: Sequence[Any] | np.ndarray | None = None,
    group_name: str | None = None,
    figsize: tuple[float, float] | None = None,
    dpi: int = DEFAULT_DPI,
    format: str | None = None,
) -> Path:
    """Scatter plot of 2-D or 3-D points, coloured by group, saved to a file.

    Groups are sorted naturally (``2`` before ``10``); each gets its own
    colour (and marker beyond 20 groups) and a legend entry with its ``n=``;
    more than 10 groups put the legend beside the plot, more than 48 leave it
    out.

    Parameters
    ----------
    points : numpy.ndarray
        ``[n, 2]`` or ``[n, 3]``.
    save_path : str or os.PathLike
        Output file (parent directories are created).
    title : str
        Figure title.
    axis_labels : sequence of str, optional
        One label per axis (see :attr:`Projection.axis_labels`).
    groups : sequence, optional
        One label per point.
    group_name : str, optional
        Legend title.
    figsize : tuple of float, optional
        Figure size in inches (default 6.5 x 5.5, wider with a side legend).
    dpi : int, default 150
        Resolution of a PNG.
    format : {"png", "svg", "pdf"}, optional
        File format (default: from the suffix, else png).

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ValidationError
        For points that are not ``[n, 2]``/``[n, 3]``, a ``groups`` of another
        length, or an unknown format.

    Examples
    --------
    >>> import os
    >>> pts = np.random.default_rng(0).normal(size=(30, 3))
    >>> scatter_projection(pts, os.path.join(out_dir, "p3"), format="svg").read_bytes()[:5]
    b'<?xml'
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] not in (2, 3):
        raise ValidationError(f"points must be [n, 2] or [n, 3], got shape {points.shape}")
    labels = None if groups is None else np.asarray([str(g) for g in groups])
    if labels is not None and len(labels) != len(points):
        raise ValidationError(
            f"groups has {len(labels)} labels for {len(points)} points; give one per point"
        )
    names = [] if labels is None else sorted(set(labels.tolist()), key=_natural_key)
    wide = 10 < len(names) <= 48
    if figsize is None:
        figsize = (9.0 if wide else 6.5, 5.5)
    fig = new_figure(*figsize, dpi=dpi)
    three_d = points.shape[1] == 3
    ax = fig.add_subplot(1, 1, 1, projection="3d" if three_d else None)
    cols = [points[:, i] for i in range(points.shape[1])]
    if labels is None:
        ax.scatter(*cols, s=8, alpha=0.6)
    else:
        import matplotlib

        cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
        markers = "osD^v<>"
        for i, name in enumerate(names):
            m = labels == name
            ax.scatter(
                *[c[m] for c in cols],
                s=8,
                alpha=0.7,
                color=cmap(i % cmap.N),
                marker=markers[(i // cmap.N) % len(markers)],
                label=f"{name} (n={int(m.sum())})",
            )
        if wide:
            ax.legend(
                title=group_name,
                fontsize=6,
                markerscale=2,
                loc="upper left",
                bbox_to_anchor=(1.01, 1.0),
                frameon=False,
                ncols=1 if len(names) <= 24 else 2,
            )
        elif len(names) <= 10:
            ax.legend(title=group_name, fontsize=7, markerscale=2, loc="best", frameon=False)
    setters = [ax.set_xlabel, ax.set_ylabel] + ([ax.set_zlabel] if three_d else [])
    for setter, label in zip(setters, axis_labels or []):
        setter(label, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=10)
    path = Path(save_figure(fig, save_path, format=format))
    logger.info("saved %s", path)
    return path
