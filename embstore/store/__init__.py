"""The embstore store: one labeled, chunked, crash-safe store per extraction run.

:class:`Store` is the entry point (also available as ``embstore.Store``).
Zarr v3 directories are the default backend; ``.h5``/``.hdf5`` paths use HDF5.

Examples
--------
>>> from embstore.store import Store
>>> Store.create                                     # doctest: +ELLIPSIS
<bound method Store.create of <class 'embstore.store.core.Store'>>
"""

from __future__ import annotations

from .core import Store
from .schema import FORMAT_VERSION, default_dtype

__all__ = ["FORMAT_VERSION", "Store", "default_dtype"]
