"""Storage backends of :class:`embstore.Store` (Zarr v3 and HDF5)."""

from __future__ import annotations

from pathlib import Path

from .base import Backend

__all__ = ["Backend", "backend_class"]


def backend_class(path: str | Path) -> type[Backend]:
    """Return the backend class for a path: HDF5 for ``.h5``/``.hdf5``, else Zarr.

    Examples
    --------
    >>> backend_class("run.h5").kind, backend_class("run.zarr").kind
    ('hdf5', 'zarr')
    """
    s = str(path).lower().rstrip("/")
    if s.endswith((".h5", ".hdf5", ".nc")):
        from .hdf5_backend import HDF5Backend

        return HDF5Backend
    from .zarr_backend import ZarrBackend

    return ZarrBackend
