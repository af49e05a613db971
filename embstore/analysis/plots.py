"""2-D / 3-D projections (PCA, t-SNE) of an analyzer's vectors.

The projection and scatter functions live in :mod:`embstore.plotting` (one
stack for the analyzer and the fairness plots) and are re-exported here.
matplotlib and scikit-learn are imported when a function runs, never at
``import embstore``.

Examples
--------
>>> import os
>>> reduced, pca = pca_projection(np.random.default_rng(0).normal(size=(40, 6)))
>>> path = scatter_projection(reduced, os.path.join(out_dir, "pca.png"), title="PCA",
...                           axis_labels=["PC1", "PC2"])
>>> path.suffix
'.png'
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import xarray as xr

from ..errors import ValidationError
from ..plotting.projection import pca_projection, scatter_projection, tsne_projection
from .accessor import split_spec
from .core import AnalyzerCore
from .defaults import resolve_variable
from .spec import VectorSpec

__all__ = ["PlotAccessor", "pca_projection", "scatter_projection", "tsne_projection"]

logger = logging.getLogger(__name__)


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
