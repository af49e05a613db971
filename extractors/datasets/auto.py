"""Open any supported image input (folder, list, FACET, COCO) from its paths."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from embstore.errors import DatasetError

from .coco import coco_dataset
from .facet import facet_dataset
from .files import folder_dataset, list_dataset
from .records import ImageDataset

__all__ = [
    "open_dataset",
]

logger = logging.getLogger(__name__)


def open_dataset(
    images: str | os.PathLike[str],
    annotations: str | os.PathLike[str] | None = None,
    *,
    skin: Any = None,
    light: Any = None,
    limit: int | None = None,
) -> ImageDataset:
    """Open any supported input, then apply filters and ``limit``.

    Parameters
    ----------
    images : str or path-like
        An image folder or a text file listing image paths.
    annotations : str or path-like, optional
        FACET ``annotations.csv`` (``.csv``) or a COCO JSON (``.json``). When
        omitted and ``images`` is a folder containing
        ``annotations/annotations.csv`` (FACET's layout, as the old
        ``--coco_path`` pointed to), that file is used; a COCO root
        (``annotations/instances_val2017.json`` and ``val2017/``) uses the
        val2017 split, as the old script's evaluation did.
    skin, light, limit
        See :meth:`ImageDataset.filter`.

    Returns
    -------
    ImageDataset

    Raises
    ------
    DatasetError
        Unknown annotation format, missing paths, or bad filters.
    """
    img = Path(images)
    if annotations is None and img.is_dir():
        if (img / "annotations" / "annotations.csv").is_file():
            annotations = img / "annotations" / "annotations.csv"
            logger.info("using FACET annotations %s", annotations)
        elif (img / "annotations" / "instances_val2017.json").is_file() and (
            img / "val2017"
        ).is_dir():
            annotations = img / "annotations" / "instances_val2017.json"
            img = img / "val2017"
            logger.info("COCO root: using %s with images in %s", annotations, img)
    if annotations is not None:
        ann = Path(annotations)
        if ann.suffix.lower() == ".csv":
            ds = facet_dataset(ann, img)
        elif ann.suffix.lower() == ".json":
            ds = coco_dataset(ann, img)
        else:
            raise DatasetError(
                f"annotations {str(ann)!r}: unknown format; pass FACET's annotations.csv or a COCO .json"
            )
    elif img.is_dir():
        ds = folder_dataset(img)
    elif img.is_file():
        ds = list_dataset(img)
    else:
        raise DatasetError(
            f"images={str(img)!r} does not exist; pass an image folder or a text file of paths"
        )
    return ds.filter(skin=skin, light=light, limit=limit)
