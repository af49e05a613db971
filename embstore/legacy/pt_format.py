"""The old per-image DETR ``.pt`` layout: file names, metadata and safe loading.

This module is the one place that knows the layout the old
``extract_embeddings.py`` wrote: one ``embedding_{image_id:012d}.pt`` per image
(a ``torch.save``'d dict of tensors) plus a ``metadata.json`` (``image_ids``,
``num_images``, ``extract_type``, ``embedding_keys``). Both the importer
(:mod:`embstore.legacy.detr_pt`) and the lazy analyzer source
(:mod:`embstore.analysis.legacy_dir`) read files through it.

Every file is read with ``torch.load(..., weights_only=True)``, which refuses
pickles that would run code; every load error (malicious, truncated or not a
dict of tensors) becomes a :class:`~embstore.errors.ValidationError` naming
the file. torch is imported only when a file is read.

Examples
--------
>>> pt_filename(139)
'embedding_000000000139.pt'
>>> import torch
>>> from pathlib import Path
>>> folder = Path(out_dir) / "old_output"
>>> folder.mkdir()
>>> torch.save({"query_embeddings": torch.zeros(2, 3)}, folder / pt_filename(7))
>>> is_legacy_dir(folder), read_metadata(folder)["image_ids"]
(True, [7])
>>> load_pt(folder / pt_filename(7))["query_embeddings"].shape
(2, 3)
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._optional import attempt_import
from ..errors import DatasetError, ValidationError

__all__ = [
    "KNOWN_DENSE",
    "KNOWN_DIMS",
    "KNOWN_RAGGED",
    "RAGGED_KEYS",
    "file_ids",
    "is_legacy_dir",
    "load_pt",
    "load_pt_tensors",
    "pt_filename",
    "read_metadata",
    "read_metadata_file",
    "to_numpy",
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

#: Trailing dims of every known DETR key.
KNOWN_DIMS: dict[str, tuple[str, ...]] = {**KNOWN_DENSE, **KNOWN_RAGGED}

#: Keys whose size varies per image (stored ragged).
RAGGED_KEYS: tuple[str, ...] = tuple(KNOWN_RAGGED)

FILE_RE = re.compile(r"^embedding_(\d+)\.pt$")


def pt_filename(image_id: Any) -> str:
    """File name of an image's ``.pt`` file: ``embedding_{image_id:012d}.pt``.

    Parameters
    ----------
    image_id : int or str
        Integer ids are zero-padded to 12 digits; strings are used as is.

    Returns
    -------
    str

    Examples
    --------
    >>> pt_filename(139)
    'embedding_000000000139.pt'
    >>> pt_filename("a")
    'embedding_a.pt'
    """
    if isinstance(image_id, (int, np.integer)):
        return f"embedding_{int(image_id):012d}.pt"
    return f"embedding_{image_id}.pt"


def file_ids(directory: str | os.PathLike) -> list[int]:
    """Image ids of the ``embedding_*.pt`` files in a folder, sorted.

    Parameters
    ----------
    directory : path
        The legacy directory (must exist).

    Returns
    -------
    list of int

    Examples
    --------
    >>> from pathlib import Path
    >>> (Path(out_dir) / "embedding_000000000003.pt").touch()
    >>> file_ids(out_dir)
    [3]
    """
    with os.scandir(os.fspath(directory)) as it:
        return sorted(int(m.group(1)) for e in it if (m := FILE_RE.match(e.name)))


def read_metadata_file(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The parsed ``metadata.json`` of a folder, or None when there is none.

    Parameters
    ----------
    directory : path
        The legacy directory.

    Returns
    -------
    dict or None
        The JSON object, with ``image_ids`` as a list.

    Raises
    ------
    DatasetError
        If the file exists but is not JSON or lacks an ``image_ids`` list.

    Examples
    --------
    >>> read_metadata_file(out_dir) is None
    True
    """
    meta_path = Path(directory) / "metadata.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        meta["image_ids"] = list(meta["image_ids"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(
            f"{meta_path} is not a valid metadata file ({exc!r}); it needs an 'image_ids' list. "
            "Delete or fix it to read the folder by its file names"
        ) from exc
    return dict(meta)


def read_metadata(directory: str | os.PathLike) -> dict[str, Any]:
    """Read ``metadata.json``; without it, derive the ids from the file names.

    Parameters
    ----------
    directory : path
        The legacy directory.

    Returns
    -------
    dict
        At least ``image_ids`` (list), plus whatever the JSON held.

    Raises
    ------
    DatasetError
        If the directory does not exist, the JSON is malformed, or there is
        neither a metadata file nor any ``embedding_*.pt`` file.

    Examples
    --------
    >>> from pathlib import Path
    >>> (Path(out_dir) / "embedding_000000000005.pt").touch()
    >>> read_metadata(out_dir)
    {'image_ids': [5], 'num_images': 1}
    """
    d = Path(directory)
    if not d.is_dir():
        raise DatasetError(
            f"legacy directory {os.fspath(directory)!r} does not exist or is not a directory"
        )
    meta = read_metadata_file(d)
    if meta is not None:
        return meta
    ids = file_ids(d)
    if not ids:
        raise DatasetError(
            f"{os.fspath(directory)!r} has no metadata.json and no embedding_*.pt files; "
            "point at the folder the old extract_embeddings.py wrote (its output_dir)"
        )
    logger.warning("%s has no metadata.json: reading %d files by their names", d, len(ids))
    return {"image_ids": ids, "num_images": len(ids)}


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
    >>> is_legacy_dir("/nonexistent"), is_legacy_dir(out_dir)
    (False, False)
    """
    p = Path(path)
    if not p.is_dir():
        return False
    try:
        if read_metadata_file(p) is not None:
            return True
    except DatasetError:
        pass
    return bool(file_ids(p))


def load_pt_tensors(path: str | os.PathLike, *, mmap: bool = False) -> dict[str, Any]:
    """Load one legacy ``.pt`` file safely as a dict of torch tensors (on the CPU).

    Parameters
    ----------
    path : path
        The file.
    mmap : bool, default False
        Memory-map zip-format files, so reading one tensor of a large file
        touches only that tensor's bytes (old non-zip files are read whole).

    Returns
    -------
    dict
        Mapping of names to torch tensors (non-tensor entries are kept).

    Raises
    ------
    MissingDependencyError
        If torch is not installed (``pip install "embstore[extract]"``).
    ValidationError
        If the file cannot be unpickled with ``weights_only=True`` (it is
        missing, truncated, or would run code), or does not hold a dict; the
        message names the file.

    Examples
    --------
    >>> import os, torch
    >>> path = os.path.join(out_dir, "one.pt")
    >>> torch.save({"pred_boxes": torch.ones(3, 4)}, path)
    >>> load_pt_tensors(path, mmap=True)["pred_boxes"].shape
    torch.Size([3, 4])
    >>> torch.save([1, 2], os.path.join(out_dir, "list.pt"))
    >>> load_pt_tensors(os.path.join(out_dir, "list.pt"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    embstore.errors.ValidationError: '.../list.pt' holds a list, not a dict of tensors; ...
    """
    torch = attempt_import("torch")
    name = os.fspath(path)
    try:
        try:
            obj = torch.load(name, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError:
            if not mmap:
                raise
            # legacy (non-zip) serialisation cannot be memory-mapped
            obj = torch.load(name, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise ValidationError(
            f"cannot load {name!r} safely with torch.load(weights_only=True): "
            f"{type(exc).__name__}: {first}. The file is missing, corrupt or holds objects "
            "that would run code when unpickled; it was not read"
        ) from exc
    if not isinstance(obj, Mapping):
        raise ValidationError(
            f"{name!r} holds a {type(obj).__name__}, not a dict of tensors; old per-image "
            "files store {'query_embeddings': tensor, ...}. It was not read"
        )
    return {str(k): v for k, v in obj.items()}


def to_numpy(value: Any) -> np.ndarray:
    """A torch tensor (or array-like) as a NumPy array (bfloat16 becomes float32).

    Parameters
    ----------
    value : torch.Tensor or array-like
        The value.

    Returns
    -------
    numpy.ndarray

    Examples
    --------
    >>> import torch
    >>> to_numpy(torch.ones(2, dtype=torch.bfloat16)).dtype
    dtype('float32')
    """
    if hasattr(value, "detach"):
        t = value.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        return np.asarray(t.numpy())
    return np.asarray(value)


def load_pt(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load one legacy ``.pt`` file safely as a dict of numpy arrays.

    Entries that are neither tensors nor arrays are dropped.

    Parameters
    ----------
    path : path
        The file.

    Returns
    -------
    dict of numpy.ndarray

    Raises
    ------
    ValidationError
        As :func:`load_pt_tensors`: the file cannot be read safely or does
        not hold a dict; the message names the file.

    Examples
    --------
    >>> import os, torch
    >>> path = os.path.join(out_dir, "x.pt")
    >>> torch.save({"x": torch.arange(3), "note": "text"}, path)
    >>> load_pt(path)
    {'x': array([0, 1, 2])}
    """
    out: dict[str, np.ndarray] = {}
    for key, value in load_pt_tensors(path).items():
        if hasattr(value, "detach") or isinstance(value, np.ndarray):
            out[key] = to_numpy(value)
        else:
            logger.debug("%s: ignoring non-tensor entry %r", path, key)
    return out
