"""The public :class:`EmbeddingAnalyzer`: the core plus its method groups.

Each method group (search, fairness, discovery, layer-wise analysis,
attention maps) is written in its own module as a mixin over
:class:`~embstore.analysis.core.AnalyzerCore`; they are imported directly,
so a broken module fails loudly at import instead of silently dropping
methods.
"""

from __future__ import annotations

from ..discovery.mixin import DiscoveryMixin
from ..fairness.mixin import FairnessMixin
from ..search.mixin import SearchMixin
from .attention import AttentionMixin
from .core import AnalyzerCore
from .layers import LayersMixin

__all__ = ["EmbeddingAnalyzer"]


class EmbeddingAnalyzer(
    LayersMixin, AttentionMixin, DiscoveryMixin, SearchMixin, FairnessMixin, AnalyzerCore
):
    """Analyse the embeddings of a store (or of an old per-image directory).

    Selection by coordinates, pooling over queries, labeled vectors and
    matrices, streaming over stores larger than memory, projections and
    plots, the old analyzer's API, plus FAISS search / deduplication /
    clustering and fairness statistics from the mixins.

    Parameters
    ----------
    store_or_path : Store, str, os.PathLike or xarray.Dataset
        An open :class:`embstore.Store`, a path to a store (opened
        read-only), an old ``--output_dir`` holding ``metadata.json`` and
        ``embedding_{id:012d}.pt`` files, or a plain Dataset.
    row_dim, id_name : str, optional
        Only for a plain :class:`xarray.Dataset`.

    See Also
    --------
    embstore.analysis.core.AnalyzerCore : the core members.
    embstore.analysis.compat.LegacyAPIMixin : the old API.

    Examples
    --------
    >>> from embstore import EmbeddingAnalyzer                      # doctest: +SKIP
    >>> an = EmbeddingAnalyzer("facet_detr.zarr")                    # doctest: +SKIP
    >>> pooled = an.sel(skin=[1, 2]).pool(method="confidence")       # doctest: +SKIP
    >>> m, labels = an.matrix("query_embeddings", pool="topk:10")    # doctest: +SKIP
    """
