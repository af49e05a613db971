"""2-D / 3-D projections (PCA, t-SNE) of embeddings, saved as PNG files.

matplotlib and scikit-learn are imported when a function runs, never at
``import embstore``. Figures are drawn on a :class:`matplotlib.figure.Figure`
with the Agg canvas directly: no pyplot, no global backend switch, no window,
safe in threads and on headless machines.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .._optional import attempt_import
from ..errors import ValidationError
from .accessor import split_spec
from .core import AnalyzerCore
from .defaults import resolve_variable
from .spec import VectorSpec

__all__ = ["PlotAccessor", "pca_projection", "scatter_projection", "tsne_projection"]

logger = logging.getLogger(__name__)


def _check_components(n_components: int, n: int, d: int) -> None:
    if n_components not in (2, 3):
        raise ValidationError(f"n_components must be 2 or 3, got {n_components!r}")
    if n < n_components + 1 or d < n_components:
        raise ValidationError(
            f"need more than {n_components} vectors of at least {n_components} "
            f"dimensions to project, got a [{n}, {d}] matrix; select more rows"
        )


def pca_projection(matrix: np.ndarray, n_components: int = 2) -> tuple[np.ndarray, Any]:
    """Project rows on their first principal components.

    Parameters
    ----------
    matrix : numpy.ndarray
        ``[n, d]`` vectors.
    n_components : {2, 3}
        Number of components.

    Returns
    -------
    reduced : numpy.ndarray
        ``[n, n_components]``.
    pca : sklearn.decomposition.PCA
        The fitted estimator.

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(50, 8))
    >>> pca_projection(x)[0].shape
    (50, 2)
    """
    attempt_import("sklearn")
    from sklearn.decomposition import PCA

    matrix = np.asarray(matrix, dtype=np.float32)
    _check_components(n_components, *matrix.shape)
    pca = PCA(n_components=n_components)
    return pca.fit_transform(matrix), pca


def tsne_projection(
    matrix: np.ndarray,
    n_components: int = 2,
    perplexity: float = 30.0,
    random_state: int = 42,
) -> np.ndarray:
    """t-SNE embedding of the rows (the old analyzer's settings by default).

    Parameters
    ----------
    matrix : numpy.ndarray
        ``[n, d]`` vectors.
    n_components : {2, 3}
        Output dimensions.
    perplexity : float, default 30
        Lowered to ``n - 1`` when there are not enough points (scikit-learn
        requires ``perplexity < n``).
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

    matrix = np.asarray(matrix, dtype=np.float32)
    n = matrix.shape[0]
    _check_components(n_components, *matrix.shape)
    if perplexity >= n:
        logger.warning("perplexity %.1f >= %d points: using %d", perplexity, n, n - 1)
        perplexity = float(n - 1)
    tsne = TSNE(
        n_components=n_components,
        perplexity=perplexity,
        random_state=random_state,
        init="pca",
    )
    return tsne.fit_transform(matrix)


def scatter_projection(
    points: np.ndarray,
    save_path: str | os.PathLike,
    title: str = "",
    axis_labels: list[str] | None = None,
    groups: np.ndarray | None = None,
    group_name: str | None = None,
    figsize: tuple[float, float] = (10, 8),
    dpi: int = 150,
) -> Path:
    """Scatter plot of 2-D or 3-D points saved to a PNG.

    Parameters
    ----------
    points : numpy.ndarray
        ``[n, 2]`` or ``[n, 3]``.
    save_path : str or os.PathLike
        Output file (parent directories are created).
    title : str
        Figure title.
    axis_labels : list of str, optional
        One label per axis.
    groups : numpy.ndarray, optional
        One label per point; each group gets its own colour and a legend
        entry with its ``n=`` (at most 20 groups are listed).
    group_name : str, optional
        Legend title.
    figsize : tuple of float, default (10, 8)
        Figure size in inches.
    dpi : int, default 150
        Resolution of a PNG (the format follows the suffix: ``.png``,
        ``.svg`` or ``.pdf``).

    Returns
    -------
    pathlib.Path
        The written file.

    Examples
    --------
    >>> scatter_projection(np.zeros((3, 2)), "p.png")    # doctest: +SKIP
    PosixPath('p.png')
    """
    attempt_import("matplotlib")
    from matplotlib.figure import Figure

    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] not in (2, 3):
        raise ValidationError(f"points must be [n, 2] or [n, 3], got shape {points.shape}")
    if groups is not None and len(groups) != len(points):
        raise ValidationError(
            f"groups has {len(groups)} labels for {len(points)} points; pass one per point"
        )
    fig = Figure(figsize=figsize)
    three_d = points.shape[1] == 3
    ax = fig.add_subplot(111, projection="3d" if three_d else None)
    cols = [points[:, i] for i in range(points.shape[1])]
    if groups is None:
        ax.scatter(*cols, alpha=0.5, s=10)
    else:
        uniq = list(dict.fromkeys(np.asarray(groups).tolist()))
        for g in uniq:
            m = np.asarray(groups) == g
            ax.scatter(*[c[m] for c in cols], alpha=0.6, s=10, label=f"{g} (n={int(m.sum())})")
        if len(uniq) <= 20:
            ax.legend(title=group_name, markerscale=2, fontsize="small")
    labels = axis_labels or []
    setters = [ax.set_xlabel, ax.set_ylabel] + ([ax.set_zlabel] if three_d else [])
    for setter, label in zip(setters, labels):
        setter(label)
    ax.set_title(title)
    path = Path(save_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    logger.info("saved %s", path)
    return path


class PlotAccessor:
    """Labeled projections of an analyzer's vectors (``an.plot``).

    Parameters
    ----------
    core : AnalyzerCore
        The analyzer whose vectors are projected.

    Examples
    --------
    >>> from embstore import EmbeddingAnalyzer
    >>> an = EmbeddingAnalyzer(demo_path)
    >>> an.plot.project(method="pca").dims
    ('vector', 'component')
    """

    def __init__(self, core: AnalyzerCore) -> None:
        self._an = core

    def project(
        self,
        variable: str | None = None,
        pool: str | None = "mean",
        method: str = "pca",
        n_components: int = 2,
        *,
        layer: int | None = None,
        color_by: str | None = None,
        save_path: str | os.PathLike | None = None,
        max_points: int | None = None,
        seed: int = 0,
        dpi: int = 150,
        spec: VectorSpec | None = None,
        **pool_kwargs: Any,
    ) -> xr.DataArray:
        """PCA or t-SNE projection of the vectors, labeled, optionally plotted.

        Parameters
        ----------
        variable, pool, layer, **pool_kwargs
            Which vectors (as in :meth:`vectors`).
        method : {"pca", "tsne"}
            Projection.
        n_components : {2, 3}
            Output dimensions.
        color_by : str, optional
            Row coordinate used to colour the points (e.g. ``"skin"``).
        save_path : str or os.PathLike, optional
            PNG to write.
        max_points : int, optional
            Random subset (``seed``) for large stores.
        seed : int, default 0
            Subset seed; also the t-SNE ``random_state``.
        dpi : int, default 150
            PNG resolution.
        spec : VectorSpec, optional
            The vectors as one :class:`~embstore.analysis.spec.VectorSpec`
            (see :meth:`~embstore.analysis.core.AnalyzerCore.vectors`).

        Returns
        -------
        xarray.DataArray
            ``(vector, component)`` with every vector label as coordinates.

        Examples
        --------
        >>> import os
        >>> from embstore import EmbeddingAnalyzer
        >>> an = EmbeddingAnalyzer(demo_path)
        >>> png = os.path.join(out_dir, "pca.png")
        >>> proj = an.project(pool="mean", color_by="skin", save_path=png)
        >>> proj.shape, os.path.exists(png)
        ((120, 2), True)
        """
        variable, pool, layer, extra = split_spec(
            spec, variable, pool, layer, what="project()", allow_over=True
        )
        pool_kwargs = extra | pool_kwargs
        variable = resolve_variable(self._an, variable)
        if method not in ("pca", "tsne"):
            raise ValidationError(f"method must be 'pca' or 'tsne', got {method!r}")
        vec = self._an.vectors(variable, pool=pool, layer=layer, **pool_kwargs)
        n = vec.shape[0]
        if max_points is not None and n > max_points:
            keep = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
            vec = vec.isel(vector=keep)
        matrix = np.asarray(
            vec.data.compute() if hasattr(vec.data, "compute") else vec.data, dtype=np.float32
        )
        if method == "pca":
            reduced, pca = pca_projection(matrix, n_components)
            ratio = pca.explained_variance_ratio_
            names = [f"PC{i + 1}" for i in range(n_components)]
            axis = [f"PC{i + 1} ({ratio[i]:.2%})" for i in range(n_components)]
            attrs = {"explained_variance_ratio": ratio.tolist()}
        else:
            reduced = tsne_projection(matrix, n_components, random_state=seed)
            names = [f"tSNE{i + 1}" for i in range(n_components)]
            axis = [f"t-SNE {i + 1}" for i in range(n_components)]
            attrs = {}
        coords = {
            str(c): ("vector", np.asarray(vec[c].values))
            for c in vec.coords
            if vec[c].dims == ("vector",)
        }
        out = xr.DataArray(
            reduced.astype(np.float32),
            dims=("vector", "component"),
            coords=coords | {"component": names},
            name=f"{variable}_{method}",
            attrs=attrs | {"method": method, "pool": str(pool)},
        )
        if save_path is not None:
            groups = None
            if color_by is not None:
                if color_by not in coords:
                    raise ValidationError(
                        f"color_by={color_by!r} is not a coordinate; available: {sorted(coords)}"
                    )
                groups = coords[color_by][1]
            scatter_projection(
                reduced,
                save_path,
                title=f"{method.upper()} of {variable} (pool={pool})",
                axis_labels=axis,
                groups=groups,
                group_name=color_by,
                dpi=dpi,
            )
        return out
