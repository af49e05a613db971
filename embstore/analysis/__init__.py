"""Analysis of stored embeddings: :class:`EmbeddingAnalyzer`.

Modules
-------
core
    Selection, pooling, vectors, matrices, streaming (the analyzer contract).
analyzer
    :class:`EmbeddingAnalyzer`: the core plus typed helpers (``an.index``,
    ``an.fairness``, ``an.discovery``, ``an.plot``, ...) and flat delegates.
accessor
    Accessor plumbing: ``UncachedAccessor``, ``forward``, ``split_spec``.
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

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

__all__ = ["EmbeddingAnalyzer", "cka"]

if TYPE_CHECKING:  # pragma: no cover
    from .analyzer import EmbeddingAnalyzer
    from .similarity import cka

# Bound on first use: the analyzer's method groups (search, fairness, ...)
# import leaf modules of this package (``defaults``), which must not pull the
# analyzer in while those groups are still being imported.
__getattr__, __dir__ = lazy_attributes(
    __name__,
    {"EmbeddingAnalyzer": "embstore.analysis.analyzer", "cka": "embstore.analysis.similarity"},
    globals(),
)
