"""embstore: extract, store and analyse embeddings of image datasets.

One labeled, chunked store per extraction run (Zarr v3 by default, HDF5 as an
alternative), opened as xarray, plus an analysis API.

Examples
--------
>>> from embstore import Store
>>> with Store.open(demo_path) as st:  # demo_path: a small synthetic DETR store
...     q = st.query_embeddings.sel(skin=1)
...     print(q.dims, q.sizes["query"], bool((q.skin == 1).all()))
('image', 'query', 'hidden') 8 True

Importing :mod:`embstore` never imports torch, faiss or matplotlib; the heavy
names below are resolved on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_attributes
from .errors import EmbstoreError

__version__ = "0.1.0"

__all__ = ["EmbeddingAnalyzer", "EmbstoreError", "Store", "__version__"]

_LAZY = {
    "Store": "embstore.store",
    "EmbeddingAnalyzer": "embstore.analysis",
}

if TYPE_CHECKING:  # pragma: no cover
    from .analysis import EmbeddingAnalyzer
    from .store import Store

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
