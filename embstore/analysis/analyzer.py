"""The public :class:`EmbeddingAnalyzer`: the core plus typed helpers over it.

The analyzer is composed, not mixed in: :class:`~embstore.analysis.core.AnalyzerCore`
(selection, pooling, vectors, matrices, streaming) plus one helper object per
concern, each holding a typed reference to the core, in the style of xarray's
accessors:

==================  ==========================================================  ==================
attribute           helper                                                      state
==================  ==========================================================  ==================
``an.index``        :class:`~embstore.search.accessor.SearchAccessor`           the index catalog
``an.discovery``    :class:`~embstore.discovery.accessor.DiscoveryAccessor`     query extractors
``an.legacy``       :class:`~embstore.analysis.compat.LegacyAPI`                a chunk cache
``an.fairness``     :class:`~embstore.fairness.accessor.FairnessAccessor`       none
``an.export``       :class:`~embstore.discovery.exporter.ExportAccessor`        none
``an.plot``         :class:`~embstore.analysis.plots.PlotAccessor`              none
``an.layers``       :class:`~embstore.analysis.layers.LayersAccessor`           none
``an.attention``    :class:`~embstore.analysis.attention.AttentionAccessor`     none
==================  ==========================================================  ==================

Helpers are built on each access (:class:`.accessor.UncachedAccessor` and
properties); their state (the index catalog, the query extractors, the
chunk cache) is created once per analyzer in ``__init__``, which every
analyzer goes through, including those made by :meth:`~AnalyzerCore.sel`.
Only the catalog refers back to its analyzer.
The documented flat methods (``an.search``, ``an.group_stats``, ...) stay:
each is a one-line typed delegate (:func:`.accessor.forward`) with the
helper method's signature and docstring.
"""

from __future__ import annotations

from typing import Any

from ..discovery.accessor import DiscoveryAccessor
from ..discovery.exporter import ExportAccessor
from ..fairness.accessor import FairnessAccessor
from ..search.accessor import SearchAccessor
from ..search.catalog import IndexCatalog
from .accessor import UncachedAccessor, forward
from .attention import AttentionAccessor
from .compat import ChunkCache, LegacyAPI
from .core import AnalyzerCore
from .layers import LayersAccessor
from .plots import PlotAccessor

__all__ = ["EmbeddingAnalyzer"]


class EmbeddingAnalyzer(AnalyzerCore):
    """Analyse the embeddings of a store (or of an old per-image directory).

    Selection by coordinates, pooling over queries, labeled vectors and
    matrices, streaming over stores larger than memory (the core), plus
    helpers: ``index`` (FAISS search, deduplication, clustering and the
    index catalog), ``fairness``, ``discovery`` (outliers, leaks, galleries),
    ``export``, ``plot``, ``layers``, ``attention`` and ``legacy`` (the old
    analyzer's API). Every documented method of the helpers is also a
    method of the analyzer (``an.search(...)`` is ``an.index.search(...)``).

    Parameters
    ----------
    store_or_path : Store, str, os.PathLike, xarray.Dataset or AnalyzerCore
        An open :class:`embstore.Store`, a path to a store (opened
        read-only), an old ``--output_dir`` holding ``metadata.json`` and
        ``embedding_{id:012d}.pt`` files, a plain Dataset, or another
        analyzer (same rows).
    row_dim, id_name : str, optional
        Only for a plain :class:`xarray.Dataset`.

    See Also
    --------
    embstore.analysis.core.AnalyzerCore : the core members.
    embstore.analysis.compat.LegacyAPI : the old API.

    Examples
    --------
    >>> from embstore import EmbeddingAnalyzer
    >>> an = EmbeddingAnalyzer(demo_path)
    >>> pooled = an.sel(skin=[1, 2]).pool(method="confidence")
    >>> pooled.dims
    ('image', 'hidden')
    >>> m, labels = an.matrix("query_embeddings", pool="topk:3")
    >>> m.shape, len(labels)
    ((120, 16), 120)
    >>> an.search(ids=[0], k=3)["rank"].tolist() == an.index.search(ids=[0], k=3)["rank"].tolist()
    True
    """

    def __init__(
        self, store_or_path: Any, *, row_dim: str | None = None, id_name: str | None = None
    ) -> None:
        super().__init__(store_or_path, row_dim=row_dim, id_name=id_name)
        self._catalog = IndexCatalog(self)
        self._query_extractors: dict[tuple[str, str], Any] = {}
        self._chunk_cache: ChunkCache = {}

    @property
    def index(self) -> SearchAccessor:
        """Search, deduplication, clustering and the index catalog (``an.index.catalog``)."""
        return SearchAccessor(self, self._catalog)

    @property
    def discovery(self) -> DiscoveryAccessor:
        """Outliers, leaks, galleries, text and image queries, the explorer."""
        return DiscoveryAccessor(self.index, self._query_extractors)

    @property
    def legacy(self) -> LegacyAPI:
        """The old per-image analyzer's API."""
        return LegacyAPI(self, self._chunk_cache)

    #: Group statistics and detection fairness.
    fairness = UncachedAccessor(FairnessAccessor)
    #: Parquet / datasets exports, training labels, group previews.
    export = UncachedAccessor(ExportAccessor)
    #: Projections (PCA, t-SNE) and their plots.
    plot = UncachedAccessor(PlotAccessor)
    #: Layer-wise metrics and CKA between layers.
    layers = UncachedAccessor(LayersAccessor)
    #: Attention maps.
    attention_maps = UncachedAccessor(AttentionAccessor)

    # ------------------------------------------------------ search (an.index)
    build_index = forward("index", SearchAccessor.build_index)
    search = forward("index", SearchAccessor.search)
    range_search = forward("index", SearchAccessor.range_search)
    duplicate_groups = forward("index", SearchAccessor.duplicate_groups)
    find_duplicates = forward("index", SearchAccessor.find_duplicates)
    remove_duplicates = forward("index", SearchAccessor.remove_duplicates)
    cluster = forward("index", SearchAccessor.cluster)
    pair_recall = forward("index", SearchAccessor.pair_recall)

    # ------------------------------------------------ fairness (an.fairness)
    fairness_stats = forward("fairness", FairnessAccessor.fairness_stats)
    group_stats = forward("fairness", FairnessAccessor.group_stats)
    group_distances = forward("fairness", FairnessAccessor.group_distances)
    person_table = forward("fairness", FairnessAccessor.person_table)
    person_detections = forward("fairness", FairnessAccessor.person_detections)
    matched_embeddings = forward("fairness", FairnessAccessor.matched_embeddings)
    detection_stats = forward("fairness", FairnessAccessor.detection_stats)
    detection_fairness = forward("fairness", FairnessAccessor.detection_fairness)

    # ---------------------------------------------- discovery (an.discovery)
    outliers = forward("discovery", DiscoveryAccessor.outliers)
    leaks = forward("discovery", DiscoveryAccessor.leaks)
    gallery = forward("discovery", DiscoveryAccessor.gallery)
    search_text = forward("discovery", DiscoveryAccessor.search_text)
    search_images = forward("discovery", DiscoveryAccessor.search_images)
    explore = forward("discovery", DiscoveryAccessor.explore)

    # ---------------------------------------------------- exports (an.export)
    to_parquet = forward("export", ExportAccessor.to_parquet)
    to_hf_dataset = forward("export", ExportAccessor.to_hf_dataset)
    export_training_labels = forward("export", ExportAccessor.export_training_labels)
    save_group_previews = forward("export", ExportAccessor.save_group_previews)

    # -------------------------------------- plots, layers, attention maps
    project = forward("plot", PlotAccessor.project)
    layer_profile = forward("layers", LayersAccessor.layer_profile)
    cka_matrix = forward("layers", LayersAccessor.cka_matrix)
    attention = forward("attention_maps", AttentionAccessor.attention)
    plot_attention = forward("attention_maps", AttentionAccessor.plot_attention)

    # ---------------------------------------------- the old API (an.legacy)
    @property
    def metadata(self) -> dict[str, Any]:
        """Old ``metadata.json``-style description of the rows (see :attr:`LegacyAPI.metadata`)."""
        return self.legacy.metadata

    load_embedding = forward("legacy", LegacyAPI.load_embedding)
    load_all_embeddings = forward("legacy", LegacyAPI.load_all_embeddings)
    get_query_embeddings_as_matrix = forward("legacy", LegacyAPI.get_query_embeddings_as_matrix)
    get_embedding_statistics = forward("legacy", LegacyAPI.get_embedding_statistics)
    visualize_embeddings_pca = forward("legacy", LegacyAPI.visualize_embeddings_pca)
    visualize_embeddings_tsne = forward("legacy", LegacyAPI.visualize_embeddings_tsne)
