"""embstore: extract, store and analyse embeddings of image datasets.

One labeled, chunked store per extraction run (Zarr v3 by default, HDF5 as an
alternative), opened as xarray, plus an analysis API.

Examples
--------
>>> from embstore import Store                                # doctest: +SKIP
>>> Store.open("run.zarr").query_embeddings.sel(skin=1)       # doctest: +SKIP

Importing :mod:`embstore` never imports torch, faiss or matplotlib; the heavy
names below are resolved on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import EmbstoreError

__version__ = "0.1.0"

__all__ = ["Store", "EmbeddingAnalyzer", "EmbstoreError", "__version__"]

_LAZY = {
    "Store": "embstore.store",
    "EmbeddingAnalyzer": "embstore.analysis",
}

if TYPE_CHECKING:  # pragma: no cover
    from .analysis import EmbeddingAnalyzer
    from .store import Store


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'embstore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
