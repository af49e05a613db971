"""Lazy reader of the old DETR output: one ``embedding_{id:012d}.pt`` per image.

The old ``extract_embeddings.py`` wrote, per image, a ``torch.save``'d dict of
tensors (``query_embeddings [100, 256]``, ``decoder_output [6, 100, 256]``,
``encoder_output [h*w, 256]``, ``backbone_features [2048, h, w]``,
``pred_logits [100, 92]``, ``pred_boxes [100, 4]``) plus a ``metadata.json``
(``image_ids``, ``num_images``, ``extract_type``, ``embedding_keys``).

:class:`LegacyDirSource` exposes such a directory with the same internal
interface as a store, so :class:`~embstore.analysis.EmbeddingAnalyzer` works on
it unchanged: dense variables become lazy dask arrays (one task per block of
files), variable-size ones (``encoder_output``, ``backbone_features``) are read
per image. Nothing is read at construction except ``metadata.json`` and a
directory listing; the first ``.pt`` file is opened when a schema is needed.

torch is imported inside the functions that read files, and files are loaded
with ``torch.load(weights_only=True)`` (no arbitrary pickle code runs).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import NotAStoreError, ShapeMismatchError, UnknownVariableError
from ..legacy.pt_format import (
    KNOWN_DENSE,
    KNOWN_RAGGED,
    file_ids,
    is_legacy_dir,
    load_pt_tensors,
    pt_filename,
    read_metadata_file,
    to_numpy,
)

__all__ = [
    "KNOWN_DENSE",
    "KNOWN_RAGGED",
    "LegacyDirSource",
    "is_legacy_dir",
    "legacy_file_name",
    "load_pt",
]

logger = logging.getLogger(__name__)


def legacy_file_name(image_id: int) -> str:
    """File name of an image's tensors in the old layout.

    Parameters
    ----------
    image_id : int
        COCO/FACET image id.

    Returns
    -------
    str
        ``embedding_{image_id:012d}.pt``.

    Examples
    --------
    >>> legacy_file_name(42)
    'embedding_000000000042.pt'
    """
    return pt_filename(int(image_id))


def load_pt(path: str | os.PathLike) -> dict[str, Any]:
    """Load one old ``.pt`` file safely (``weights_only=True``, on the CPU, memory-mapped).

    See :func:`embstore.legacy.pt_format.load_pt_tensors`, which this calls.

    Parameters
    ----------
    path : str or os.PathLike
        File to load.

    Returns
    -------
    dict
        Mapping of names to torch tensors.

    Raises
    ------
    MissingDependencyError
        If torch is not installed (``pip install "embstore[extract]"``).
    ValidationError
        If the file cannot be read safely (missing, truncated, a pickle that
        would run code) or does not hold a dict of tensors; names the file.

    Examples
    --------
    >>> import os, torch
    >>> path = os.path.join(out_dir, legacy_file_name(1))
    >>> torch.save({"pred_boxes": torch.zeros(2, 4)}, path)
    >>> sorted(load_pt(path))
    ['pred_boxes']
    """
    return load_pt_tensors(path, mmap=True)


class LegacyDirSource:
    """An old per-image ``.pt`` directory seen through the store interface.

    Parameters
    ----------
    path : str or os.PathLike
        Directory holding ``metadata.json`` and ``embedding_{id:012d}.pt``.
    chunk_rows : int, default 64
        Number of files read by one task of the lazy (dask) arrays.

    Attributes
    ----------
    row_dim : str
        Always ``"image"``.
    id_name : str
        Always ``"image_id"``.
    store : None
        There is no :class:`~embstore.Store` behind a legacy directory.

    Raises
    ------
    NotAStoreError
        If the directory has neither ``metadata.json`` nor ``.pt`` files.

    Notes
    -----
    Ids come from ``metadata.json`` (in its order), keeping only those whose
    file exists, like the old analyzer that skipped missing files. Without a
    ``metadata.json`` the ids are taken from the file names (sorted) and
    :attr:`metadata` is synthesised from them.

    Examples
    --------
    >>> import os
    >>> from embstore.legacy import export_detr_dir
    >>> old = os.path.join(out_dir, "embeddings_output")
    >>> export_detr_dir(demo_path, old, variables=["query_embeddings"], ids=[0, 1, 2])
    3
    >>> src = LegacyDirSource(old)
    >>> src.dataarray("query_embeddings").shape
    (3, 8, 16)
    """

    row_dim = "image"
    id_name = "image_id"
    store = None

    def __init__(self, path: str | os.PathLike, chunk_rows: int = 64) -> None:
        self.path = Path(path)
        self.chunk_rows = int(chunk_rows)
        if not self.path.is_dir():
            raise NotAStoreError(
                f"{str(self.path)!r} is not a directory; pass the old --output_dir "
                "holding metadata.json and embedding_*.pt files"
            )
        meta = read_metadata_file(self.path)
        present = set(file_ids(self.path))
        if meta is not None:
            listed = [int(i) for i in meta["image_ids"]]
            ids = [i for i in listed if i in present]
            if len(ids) < len(listed):
                logger.warning(
                    "%s: %d of %d image ids in metadata.json have no .pt file; they are skipped",
                    self.path,
                    len(listed) - len(ids),
                    len(listed),
                )
            self._metadata: dict[str, Any] = dict(meta)
        elif present:
            ids = file_ids(self.path)
            self._metadata = {
                "image_ids": ids,
                "num_images": len(ids),
                "extract_type": None,
                "embedding_keys": None,
            }
            logger.warning(
                "%s has no metadata.json; using the %d embedding_*.pt files found",
                self.path,
                len(ids),
            )
        else:
            raise NotAStoreError(
                f"{str(self.path)!r} has neither metadata.json nor embedding_*.pt "
                "files; pass an old extraction --output_dir or a store path"
            )
        self._ids = np.asarray(ids, dtype=np.int64)
        self._schema: dict[str, tuple[tuple[str, ...], tuple[int, ...], np.dtype]] | None = None
        self._ragged: dict[str, tuple[str, ...]] | None = None
        self._lock = threading.Lock()
        self._arrays: dict[str, Any] = {}

    # ------------------------------------------------------------------ basics
    @property
    def metadata(self) -> dict[str, Any]:
        """The ``metadata.json`` content (synthesised when the file is missing)."""
        return self._metadata

    @property
    def ids(self) -> np.ndarray:
        """Image ids with a file, in ``metadata.json`` order."""
        return self._ids

    @property
    def coords(self) -> pd.DataFrame:
        """Row coordinates: none in the old layout (an empty frame indexed by id)."""
        return pd.DataFrame(index=pd.Index(self._ids, name=self.id_name))

    def file(self, image_id: int) -> Path:
        """Path of one image's file."""
        return self.path / legacy_file_name(image_id)

    def load(self, image_id: int) -> dict[str, Any]:
        """All tensors of one image (a dict of torch tensors)."""
        return load_pt(self.file(image_id))

    def _probe(self) -> None:
        with self._lock:
            if self._schema is not None:
                return
            if len(self._ids) == 0:
                raise NotAStoreError(
                    f"{str(self.path)!r}: metadata.json lists no image with a .pt file"
                )
            first = self.load(int(self._ids[0]))
            schema = {}
            ragged = {}
            for key, value in first.items():
                arr = to_numpy(value)
                if key in KNOWN_DENSE and arr.ndim == len(KNOWN_DENSE[key]):
                    schema[key] = (KNOWN_DENSE[key], arr.shape, arr.dtype)
                elif key in KNOWN_RAGGED and arr.ndim == len(KNOWN_RAGGED[key]):
                    ragged[key] = KNOWN_RAGGED[key]
                else:
                    # unknown tensors: read per image, shapes may vary
                    ragged[key] = tuple(f"{key}_dim_{i}" for i in range(arr.ndim))
            self._schema = schema
            self._ragged = ragged

    @property
    def variables(self) -> dict[str, tuple[str, ...]]:
        """Dense variables (same shape in every file) and their dims."""
        self._probe()
        return {k: v[0] for k, v in (self._schema or {}).items()}

    @property
    def ragged_variables(self) -> dict[str, tuple[str, ...]]:
        """Per-image variables whose shape varies (read one image at a time)."""
        self._probe()
        return dict(self._ragged or {})

    def _unknown(self, name: str) -> UnknownVariableError:
        known = sorted(self.variables) + sorted(self.ragged_variables)
        return UnknownVariableError(
            f"variable {name!r} is not in {str(self.path)!r}; available: {known}"
        )

    # -------------------------------------------------------------- data access
    def _load_block(
        self, ids: np.ndarray, name: str, shape: tuple[int, ...], dtype: np.dtype
    ) -> np.ndarray:
        out = np.empty((len(ids),) + shape, dtype=dtype)
        for j, image_id in enumerate(ids):
            tensors = self.load(int(image_id))
            if name not in tensors:
                raise ShapeMismatchError(
                    f"{self.file(int(image_id))} has no {name!r} tensor (keys: "
                    f"{sorted(tensors)}); re-extract it or select images that have it"
                )
            arr = to_numpy(tensors[name])
            if arr.shape != shape:
                raise ShapeMismatchError(
                    f"{self.file(int(image_id))}: {name!r} has shape {arr.shape}, "
                    f"expected {shape} like the first file; read it per image "
                    "with load_embedding() instead"
                )
            out[j] = arr
        return out

    def dataarray(self, name: str):
        """Lazy (dask) array of a dense variable, ``(image, *dims)``, no coords.

        Parameters
        ----------
        name : str
            A key of :attr:`variables`.

        Returns
        -------
        xarray.DataArray
            dask-backed; each chunk of ``chunk_rows`` images is one task.
        """
        import dask
        import dask.array as da
        import xarray as xr

        schema = self.variables
        if name not in schema:
            raise self._unknown(name)
        if name not in self._arrays:
            dims, shape, dtype = (self._schema or {})[name]
            blocks = []
            for start in range(0, len(self._ids), self.chunk_rows):
                ids = self._ids[start : start + self.chunk_rows]
                task = dask.delayed(self._load_block, pure=True)(
                    ids, name, shape, dtype, dask_key_name=f"legacy-{name}-{start}-{id(self)}"
                )
                # dask.array ships no annotations: its calls are untyped
                block = da.from_delayed(task, (len(ids),) + shape, dtype=dtype)  # type: ignore[no-untyped-call]
                blocks.append(block)
            data = da.concatenate(blocks, axis=0)  # type: ignore[no-untyped-call]
            self._arrays[name] = xr.DataArray(data, dims=(self.row_dim,) + dims, name=name)
        return self._arrays[name]

    def get_ragged(self, name: str, image_id: Any) -> np.ndarray:
        """One image's variable-size tensor as NumPy, in its declared layout.

        Parameters
        ----------
        name : str
            Any tensor name in the files (dense ones work too).
        image_id : int
            Image id.

        Returns
        -------
        numpy.ndarray
            The tensor, e.g. ``[h*w, 256]`` for ``encoder_output``.
        """
        if name not in self.ragged_variables and name not in self.variables:
            raise self._unknown(name)
        tensors = self.load(int(image_id))
        if name not in tensors:
            raise ShapeMismatchError(
                f"{self.file(int(image_id))} has no {name!r} tensor (keys: {sorted(tensors)})"
            )
        return to_numpy(tensors[name])
