"""One figure and projection stack for every plot embstore draws.

- :mod:`embstore.plotting.figures`: a headless matplotlib figure of a bounded
  size and saving it as PNG (150 dpi), SVG or PDF (:func:`new_figure`,
  :func:`save_figure`).
- :mod:`embstore.plotting.projection`: PCA / t-SNE / UMAP projections with
  labelled axes (PCA: the explained variance) and the scatter plot of a
  projection coloured by group (:func:`project`, :func:`scatter_projection`).

The analyzer's plots (:mod:`embstore.analysis.plots`) and the fairness plots
(:mod:`embstore.fairness.plots`) both draw through these functions.
matplotlib, scikit-learn and umap are imported when a function runs, never
at ``import embstore``.
"""

from __future__ import annotations

from .figures import DEFAULT_DPI, FORMATS, MAX_FIGURE_INCHES, new_figure, save_figure
from .projection import (
    METHODS,
    Projection,
    pca_projection,
    project,
    scatter_projection,
    tsne_projection,
    umap_projection,
)

__all__ = [
    "DEFAULT_DPI",
    "FORMATS",
    "MAX_FIGURE_INCHES",
    "METHODS",
    "Projection",
    "new_figure",
    "pca_projection",
    "project",
    "save_figure",
    "scatter_projection",
    "tsne_projection",
    "umap_projection",
]
