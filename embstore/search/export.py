"""Training-label files and preview grids, as the face pipeline wrote them.

``fr_train_{X_class|XK_class}_{Y_data|YK_data}_classes.npy`` holds one class
id per kept item and ``..._data_list.npy`` the item (image path, or id when
paths are unknown) at the same index. Counts below 1000 are written as is,
larger ones in thousands rounded to the nearest integer (``12K``), e.g.
``fr_train_12K_class_3K_data_classes.npy``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ShapeMismatchError, ValidationError
from .results import GroupResult

__all__ = ["export_training_labels", "format_count", "save_group_previews", "training_label_name"]

logger = logging.getLogger(__name__)


def format_count(n: int) -> str:
    """``999 -> "999"``, ``12345 -> "12K"`` (thousands, rounded half up).

    Examples
    --------
    >>> format_count(999), format_count(1500), format_count(12345)
    ('999', '2K', '12K')
    """
    n = int(n)
    if n < 1000:
        return str(n)
    return f"{(n + 500) // 1000}K"


def training_label_name(n_classes: int, n_data: int, prefix: str = "fr_train") -> str:
    """Stem of the label files, e.g. ``fr_train_12K_class_3K_data``.

    Examples
    --------
    >>> training_label_name(12000, 3000)
    'fr_train_12K_class_3K_data'
    """
    return f"{prefix}_{format_count(n_classes)}_class_{format_count(n_data)}_data"


def export_training_labels(
    labels: np.ndarray | GroupResult,
    data_list: Sequence[Any] | np.ndarray,
    out_dir: str | os.PathLike,
    *,
    keep: np.ndarray | None = None,
    min_size: int = 1,
    prefix: str = "fr_train",
) -> dict[str, Any]:
    """Write ``<stem>_classes.npy`` and ``<stem>_data_list.npy``, paired by index.

    Parameters
    ----------
    labels : numpy.ndarray or GroupResult
        Class (cluster) id of every item.
    data_list : sequence
        Item of every row (image path, or id), same length as ``labels``.
    out_dir : path
        Output folder (created).
    keep : numpy.ndarray of bool, optional
        Rows to export (e.g. ``dedup.keep`` to drop near-duplicates first).
    min_size : int
        Drop classes with fewer kept items (1 keeps singletons).
    prefix : str
        File name prefix.

    Returns
    -------
    dict
        ``classes`` and ``data_list`` paths, ``n_classes``, ``n_data``.
        Class ids are renumbered ``0 .. n_classes - 1`` in the order of the
        input ids (largest cluster first for :class:`GroupResult` labels);
        rows keep their input order.

    Examples
    --------
    >>> import tempfile
    >>> out = export_training_labels(np.array([0, 0, 1]), ["a.jpg", "b.jpg", "c.jpg"],
    ...                              tempfile.mkdtemp())
    >>> Path(out["classes"]).name
    'fr_train_2_class_3_data_classes.npy'
    """
    lab = np.asarray(labels.labels if isinstance(labels, GroupResult) else labels)
    items = np.asarray([str(x) for x in data_list]) if len(data_list) else np.zeros(0, dtype=str)
    if lab.ndim != 1 or lab.shape[0] != items.shape[0]:
        raise ShapeMismatchError(
            f"labels ({lab.shape}) and data_list ({items.shape[0]} items) must be 1-D and "
            "the same length: one class per item."
        )
    mask = np.ones(lab.size, bool) if keep is None else np.asarray(keep, bool)
    if mask.shape != lab.shape:
        raise ShapeMismatchError(f"keep has shape {mask.shape}, expected {lab.shape}.")
    if min_size < 1:
        raise ValidationError(f"min_size must be >= 1, got {min_size}.")
    lab, items = lab[mask], items[mask]
    if lab.size:
        _uniq, inverse, counts = np.unique(lab, return_inverse=True, return_counts=True)
        big = counts >= min_size
        sel = big[inverse]
        lab, items, inverse = lab[sel], items[sel], inverse[sel]
        new_id = np.cumsum(big) - 1
        classes = new_id[inverse].astype(np.int64)
        n_classes = int(big.sum())
    else:
        classes, n_classes = np.zeros(0, np.int64), 0
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = training_label_name(n_classes, classes.size, prefix)
    cpath = out / f"{stem}_classes.npy"
    dpath = out / f"{stem}_data_list.npy"
    np.save(cpath, classes)
    np.save(dpath, items)
    logger.info("wrote %s (%d classes, %d items)", cpath, n_classes, classes.size)
    return {
        "classes": cpath,
        "data_list": dpath,
        "n_classes": n_classes,
        "n_data": int(classes.size),
    }


def _thumb(path: Any, size: int) -> Any:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB").resize((size, size))
    except (OSError, ValueError) as exc:
        logger.warning("preview: cannot read %s (%s); using a grey tile", path, exc)
        return Image.new("RGB", (size, size), (128, 128, 128))


def save_group_previews(
    labels: np.ndarray | GroupResult,
    paths: Sequence[Any],
    out_dir: str | os.PathLike,
    *,
    n_groups: int = 50,
    per_group: int = 10,
    size: int = 112,
    min_size: int = 2,
) -> list[Path]:
    """Thumbnails and a grid of the largest groups.

    For group ``g`` (largest first) writes ``group_{g:04d}/{i:02d}.png``
    thumbnails (``size`` x ``size``) of up to ``per_group`` members, in row
    order, and ``group_{g:04d}.png``, the same tiles in one row; plus
    ``index.html``, the same groups as a captioned gallery
    (:func:`embstore.discovery.gallery.write_gallery`: aspect ratio kept,
    labeled placeholders for missing files).

    Parameters
    ----------
    labels : numpy.ndarray or GroupResult
        Group id per row.
    paths : sequence of path
        Image file of every row.
    out_dir : path
        Output folder (created).
    n_groups : int
        Number of groups to preview.
    per_group : int
        Thumbnails per group.
    size : int
        Thumbnail side in pixels.
    min_size : int
        Skip groups smaller than this (singletons by default).

    Returns
    -------
    list of pathlib.Path
        The grid images written.
    """
    from PIL import Image

    lab = np.asarray(labels.labels if isinstance(labels, GroupResult) else labels)
    if len(paths) != lab.size:
        raise ShapeMismatchError(
            f"{len(paths)} paths for {lab.size} labels; give one image path per row."
        )
    if lab.size == 0:
        return []
    uniq, first, counts = np.unique(lab, return_index=True, return_counts=True)
    order = np.lexsort((first, -counts))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    html_groups = []  # the same groups as a captioned HTML gallery (embstore.discovery.gallery)
    for rank, gi in enumerate(order):
        if rank >= n_groups or counts[gi] < min_size:
            break
        members = np.flatnonzero(lab == uniq[gi])[:per_group]
        gdir = out / f"group_{rank:04d}"
        gdir.mkdir(exist_ok=True)
        grid = Image.new("RGB", (size * len(members), size), (255, 255, 255))
        for t, row in enumerate(members):
            tile = _thumb(paths[row], size)
            tile.save(gdir / f"{t:02d}.png")
            grid.paste(tile, (t * size, 0))
        gpath = out / f"group_{rank:04d}.png"
        grid.save(gpath)
        written.append(gpath)
        html_groups.append((f"group {rank} (size {int(counts[gi])})", members))
    if html_groups:
        from ..discovery.gallery import Group, Item, write_gallery

        write_gallery(
            [Group(t, [Item(int(r), str(paths[r])) for r in m]) for t, m in html_groups],
            out,
            title="embstore group previews",
            thumb=max(size, 112),
        )
    logger.info("wrote %d group previews to %s", len(written), out)
    return written
