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

import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._optional import attempt_import
from ..errors import NotAStoreError, ShapeMismatchError, UnknownVariableError

__all__ = [
    "KNOWN_DENSE",
    "KNOWN_RAGGED",
    "LegacyDirSource",
    "is_legacy_dir",
    "legacy_file_name",
    "load_pt",
]

logger = logging.getLogger(__name__)

#: Dense per-image tensors of the old layout and their dims (without the row dim).
KNOWN_DENSE: dict[str, tuple[str, ...]] = {
    "query_embeddings": ("query", "hidden"),
    "decoder_output": ("layer", "query", "hidden"),
    "pred_logits": ("query", "class"),
    "pred_boxes": ("query", "box"),
}

#: Variable-size per-image tensors of the old layout and their dims.
KNOWN_RAGGED: dict[str, tuple[str, ...]] = {
    "encoder_output": ("token", "hidden"),
    "backbone_features": ("channel", "y", "x"),
}

_FILE_RE = re.compile(r"^embedding_(\d+)\.pt$")


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
    return f"embedding_{int(image_id):012d}.pt"


def is_legacy_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory in the old per-image layout.

    A directory counts when it holds a ``metadata.json`` with ``image_ids`` or
    at least one ``embedding_*.pt`` file.

    Parameters
    ----------
    path : str or os.PathLike
        Directory to inspect.

    Returns
    -------
    bool
        True for an old per-image directory.

    Examples
    --------
    >>> is_legacy_dir("/nonexistent")
    False
    """
    p = Path(path)
    if not p.is_dir():
        return False
    meta = p / "metadata.json"
    if meta.is_file():
        try:
            with open(meta, encoding="utf-8") as fh:
                if "image_ids" in json.load(fh):
                    return True
        except (OSError, ValueError):
            pass
    with os.scandir(p) as it:
        return any(_FILE_RE.match(e.name) for e in it)


def load_pt(path: str | os.PathLike) -> dict[str, Any]:
    """Load one old ``.pt`` file safely (``weights_only=True``, on the CPU).

    Files written with the zip format are memory-mapped, so reading a single
    tensor of a large file touches only that tensor's bytes.

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
    NotAStoreError
        If the file does not hold a dict of tensors.
    """
    torch = attempt_import("torch")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:
        # legacy (non-zip) serialisation cannot be memory-mapped
        obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict):
        raise NotAStoreError(
            f"{path} holds a {type(obj).__name__}, not a dict of tensors; "
            "old per-image files store {'query_embeddings': tensor, ...}"
        )
    return obj


def _to_numpy(value: Any) -> np.ndarray:
    """A torch tensor (or array-like) as a NumPy array (bfloat16 -> float32)."""
    if hasattr(value, "detach"):
        t = value.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        return t.numpy()
    return np.asarray(value)


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
    >>> src = LegacyDirSource("embeddings_output")       # doctest: +SKIP
    >>> src.dataarray("query_embeddings").shape          # doctest: +SKIP
    (100, 100, 256)
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
        meta_path = self.path / "metadata.json"
        meta: dict[str, Any] | None = None
        if meta_path.is_file():
            with open(meta_path, encoding="utf-8") as fh:
                meta = json.load(fh)
        with os.scandir(self.path) as it:
            present = {int(m.group(1)) for e in it if (m := _FILE_RE.match(e.name))}
        if meta is not None and "image_ids" in meta:
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
            ids = sorted(present)
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
                arr = _to_numpy(value)
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
            arr = _to_numpy(tensors[name])
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
            dims, shape, dtype = self._schema[name]  # type: ignore[index]
            blocks = []
            for start in range(0, len(self._ids), self.chunk_rows):
                ids = self._ids[start : start + self.chunk_rows]
                task = dask.delayed(self._load_block, pure=True)(
                    ids, name, shape, dtype, dask_key_name=f"legacy-{name}-{start}-{id(self)}"
                )
                blocks.append(da.from_delayed(task, (len(ids),) + shape, dtype=dtype))
            data = da.concatenate(blocks, axis=0)
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
        return _to_numpy(tensors[name])
