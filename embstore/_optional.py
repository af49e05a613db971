"""Lazy imports of optional dependencies with messages that name the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

__all__ = ["attempt_import"]

#: module name -> (pip extra that provides it, pip package name)
_EXTRAS: dict[str, tuple[str, str]] = {
    "faiss": ("faiss", "faiss-cpu"),
    "h5py": ("hdf5", "h5py"),
    "h5netcdf": ("hdf5", "h5netcdf"),
    "torch": ("extract", "torch"),
    "torchvision": ("extract", "torchvision"),
    "open_clip": ("extract", "open-clip-torch"),
    "matplotlib": ("plot", "matplotlib"),
    "matplotlib.pyplot": ("plot", "matplotlib"),
    "sklearn": ("stats", "scikit-learn"),
    "distributed": ("dask", "distributed"),
    "dask.distributed": ("dask", "distributed"),
    "s3fs": ("s3", "s3fs"),
    "umap": ("viz", "umap-learn"),
    "pyarrow": ("export", "pyarrow"),
    "pyarrow.parquet": ("export", "pyarrow"),
    "datasets": ("export", "datasets"),
    "plotly": ("viz", "plotly"),
    "plotly.graph_objects": ("viz", "plotly"),
    "timm": ("models", "timm"),
    "transformers": ("models", "transformers"),
}


def attempt_import(name: str) -> ModuleType:
    """Import an optional dependency or raise an error naming the extra.

    Parameters
    ----------
    name : str
        Module to import, e.g. ``"faiss"``.

    Returns
    -------
    module
        The imported module.

    Raises
    ------
    MissingDependencyError
        If the module is not installed; the message says which
        ``pip install "embstore[extra]"`` provides it.

    Examples
    --------
    >>> np = attempt_import("numpy")
    >>> np.__name__
    'numpy'
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        extra, package = _EXTRAS.get(name, (None, name))
        hint = f'pip install "embstore[{extra}]"' if extra else f"pip install {package}"
        raise MissingDependencyError(
            f"{name!r} is required for this feature but could not be imported "
            f"({exc}). Install it with: {hint}"
        ) from exc
