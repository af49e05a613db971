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
similarity
    Linear CKA between representations (:func:`cka`).
layers
    Layer-wise group metrics and CKA between layers.
"""

from .analyzer import EmbeddingAnalyzer
from .similarity import cka

__all__ = ["EmbeddingAnalyzer", "cka"]
