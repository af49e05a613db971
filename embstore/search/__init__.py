"""FAISS search, near-duplicate removal, threshold clustering and label export.

The functional layer works on anything that yields blocks of vectors (NumPy,
memmap, dask, or a callable streaming a store chunk by chunk) and never
imports faiss before it is needed:

- :func:`build_index` / :class:`SearchIndex` (:mod:`.index`): flat, IVF,
  HNSW or factory-string indexes, cosine / ip / l2, CPU or GPU(s), bytes.
- :func:`knn_search`, :func:`knn_self` (:mod:`.knn`): exact block-wise search
  with bounded memory.
- :func:`find_duplicate_groups`, :func:`threshold_clusters` (:mod:`.graph`):
  connected components of thresholded neighbour graphs, deterministic ids.
- :func:`export_training_labels`, :func:`save_group_previews` (:mod:`.export`).
- :class:`SearchAccessor` (:mod:`.accessor`): the same on an ``EmbeddingAnalyzer``
  (``an.index``), with its :class:`IndexCatalog` (:mod:`.catalog`).

Examples
--------
>>> import numpy as np
>>> from embstore.search import find_duplicate_groups
>>> x = np.array([[1, 0], [1, 0.01], [0, 1]], dtype=np.float32)
>>> find_duplicate_groups(x, threshold=0.9, k=3, device="cpu").n_removed
1
"""

from __future__ import annotations

from .._lazy import lazy_attributes

__all__ = [
    "BlockSource",
    "GroupResult",
    "IndexCatalog",
    "KnnResult",
    "Pairs",
    "RecallReport",
    "SearchAccessor",
    "SearchIndex",
    "as_block_source",
    "build_index",
    "dedup_and_cluster",
    "export_training_labels",
    "find_duplicate_groups",
    "knn_search",
    "knn_self",
    "pair_recall",
    "save_group_previews",
    "threshold_clusters",
    "training_label_name",
]

_WHERE = {
    "BlockSource": ".source",
    "as_block_source": ".source",
    "SearchIndex": ".index",
    "build_index": ".index",
    "knn_search": ".knn",
    "knn_self": ".knn",
    "find_duplicate_groups": ".graph",
    "dedup_and_cluster": ".graph",
    "threshold_clusters": ".graph",
    "GroupResult": ".results",
    "KnnResult": ".results",
    "Pairs": ".results",
    "RecallReport": ".results",
    "pair_recall": ".recall",
    "export_training_labels": ".export",
    "save_group_previews": ".export",
    "training_label_name": ".export",
    "SearchAccessor": ".accessor",
    "IndexCatalog": ".catalog",
}

#: names of the mixin era (before 0.2): FutureWarning, then the accessor
_DEPRECATED = {"SearchMixin": "SearchAccessor"}

__getattr__, __dir__ = lazy_attributes(__name__, _WHERE, globals(), _DEPRECATED)
