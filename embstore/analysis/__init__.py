"""Analysis of stored embeddings: :class:`EmbeddingAnalyzer`.

Modules
-------
core
    Selection, pooling, vectors, matrices, streaming (the analyzer contract).
pooling
    Pooling kernels (mean, max, confidence, top-k) on NumPy and xarray.
compat
    The old per-image analyzer API.
legacy_dir
    Lazy reader of old ``embedding_{id:012d}.pt`` directories.
plots
    PCA / t-SNE projections and PNG scatter plots.
sources
    Adapters over a Store, a Dataset or an old directory.
"""

from .analyzer import EmbeddingAnalyzer

__all__ = ["EmbeddingAnalyzer"]
