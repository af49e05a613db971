"""Discovery and curation: outliers, cross-split leaks, exports, galleries.

Free functions work on anything :func:`embstore.search.as_block_source`
accepts; :class:`DiscoveryAccessor` (:mod:`.accessor`, ``an.discovery``) and
:class:`ExportAccessor` (:mod:`.exporter`, ``an.export``) offer them on
:class:`embstore.EmbeddingAnalyzer`, also flat as ``outliers``, ``leaks``,
``to_hf_dataset`` ...

- :func:`outlier_scores` (:mod:`.outliers`): mean distance to the k nearest
  neighbours, streamed through the search package's block-wise kNN.
- :func:`cross_pairs` (:mod:`.leaks`): every pair across two sets of vectors
  above a threshold.
- :func:`~.gallery.write_gallery` (:mod:`.gallery`, groups from
  :mod:`.gallery_views`): captioned, paginated, self-contained HTML galleries.
- :func:`~.explorer.write_explorer` (:mod:`.explorer`): the interactive
  Plotly page (streamed PCA, hover thumbnails, lasso ids).
- :mod:`.export`: Parquet files and Hugging Face datasets.
- :mod:`.queries`: rebuild a store's extractor from its provenance for
  text and image queries.

Nothing here imports faiss, torch or matplotlib at import time.
"""

from __future__ import annotations

from .._lazy import lazy_attributes

__all__ = ["DiscoveryAccessor", "ExportAccessor", "cross_pairs", "outlier_scores"]

_WHERE = {
    "DiscoveryAccessor": ".accessor",
    "ExportAccessor": ".exporter",
    "outlier_scores": ".outliers",
    "cross_pairs": ".leaks",
}

#: names of the mixin era (before 0.2): FutureWarning, then the accessor
_DEPRECATED = {"DiscoveryMixin": "DiscoveryAccessor"}

__getattr__, __dir__ = lazy_attributes(__name__, _WHERE, globals(), _DEPRECATED)
