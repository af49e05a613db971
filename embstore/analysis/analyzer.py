"""The public :class:`EmbeddingAnalyzer`: core + search + fairness methods.

The search and fairness mixins are written in their own packages; until a
mixin module exists (or when it fails to import) an empty stand-in is used,
so the analyzer always works with the core features.
"""

from __future__ import annotations

import logging

from .core import AnalyzerCore
from .attention import AttentionMixin
from .layers import LayersMixin

__all__ = ["EmbeddingAnalyzer"]

logger = logging.getLogger(__name__)

try:
    from ..search.mixin import SearchMixin
except ImportError as _exc:  # pragma: no cover - depends on the build state
    logger.debug("search mixin unavailable: %s", _exc)

    class SearchMixin:  # type: ignore[no-redef]
        """Stand-in until :mod:`embstore.search.mixin` is available."""


try:
    from ..fairness.mixin import FairnessMixin
except ImportError as _exc:  # pragma: no cover - depends on the build state
    logger.debug("fairness mixin unavailable: %s", _exc)

    class FairnessMixin:  # type: ignore[no-redef]
        """Stand-in until :mod:`embstore.fairness.mixin` is available."""


class EmbeddingAnalyzer(LayersMixin, AttentionMixin, SearchMixin, FairnessMixin, AnalyzerCore):
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
