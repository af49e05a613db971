"""Storage backends of :class:`embstore.Store`: Zarr v3 (local directory or fsspec URL) and HDF5."""

from __future__ import annotations

from pathlib import Path

from .base import Backend

__all__ = ["Backend", "backend_class"]


def backend_class(path: str | Path) -> type[Backend]:
    """Return the backend class for a path: HDF5 for ``.h5``/``.hdf5``, else Zarr (local or fsspec).

    Examples
    --------
    >>> backend_class("run.h5").kind, backend_class("run.zarr").kind
    ('hdf5', 'zarr')
    >>> backend_class("memory://run.zarr").__name__
    'FsspecZarrBackend'
    """
    s = str(path).lower().rstrip("/")
    if s.endswith((".h5", ".hdf5", ".nc")):
        from .hdf5_backend import HDF5Backend

        return HDF5Backend
    from .zarr_backend import zarr_class

    return zarr_class(str(path))
