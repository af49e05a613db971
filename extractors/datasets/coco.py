"""COCO-format JSON (``images`` + ``annotations``, optional FACET attributes)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from embstore.errors import DatasetError

from .files import attach_paths
from .labels import add_person_labels, image_table_from_persons, parse_light, parse_skin
from .records import ImageDataset

__all__ = [
    "coco_dataset",
]


def _coco_attribute_votes(attrs: dict[str, Any]) -> dict[str, Any]:
    """Flatten an annotation's ``attributes`` dict into FACET-style vote columns."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, (dict, list)):
            out[key] = json.dumps(value)
        else:
            out[key] = value
    for key in ("skin", "skin_tone", "monk_skin_tone"):
        value = attrs.get(key)
        if value is not None and not isinstance(value, (dict, list)):
            try:
                tone = parse_skin(value)
            except DatasetError:
                continue
            if tone:
                out[f"skin_tone_{tone}"] = out.get(f"skin_tone_{tone}", 0) + 1
            out.pop(key, None)
            break
    for key in ("lighting", "light"):
        value = attrs.get(key)
        if isinstance(value, str):
            try:
                label = parse_light(value)
            except DatasetError:
                continue
            out[f"lighting_{label}"] = out.get(f"lighting_{label}", 0) + 1
            out.pop(key, None)
            break
    return out


def coco_dataset(
    annotations: str | os.PathLike[str], image_root: str | os.PathLike[str]
) -> ImageDataset:
    """A COCO-format JSON (``images`` + ``annotations``) and its image folder.

    Annotations may carry an ``attributes`` dict (as produced when FACET is
    converted to COCO format): FACET vote columns (``skin_tone_3``,
    ``lighting_well_lit``, ...) or single labels (``"skin": 3`` or
    ``"skin3"``, ``"lighting": "well_lit"``, counted as one vote). Every
    annotation with ``attributes`` is a person; the FACET majority rules
    (:mod:`extractors.datasets.labels`) give per-image ``skin``/``lighting``.

    Parameters
    ----------
    annotations : str or path-like
        The JSON file.
    image_root : str or path-like
        Folder with the images (``file_name`` is relative to it; a base-name
        search under it is the fallback).

    Returns
    -------
    ImageDataset
        Coordinates ``file_name``, ``n_annotations``, and when attributes
        exist ``skin``, ``lighting``, ``n_people``; ``persons`` holds one row
        per attributed annotation (``person_id`` = annotation id, ``x, y, w,
        h`` from ``bbox``, ``category_id``, the attributes, majority labels).

    Raises
    ------
    DatasetError
        Not a COCO JSON (no ``images`` list), or no image exists.
    """
    path = Path(annotations)
    if not path.is_file():
        raise DatasetError(f"COCO annotations {str(path)!r} do not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DatasetError(f"{str(path)!r} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DatasetError(f"{str(path)!r} has no 'images' list; is it a COCO-format JSON?")
    images = pd.DataFrame(data["images"])
    if images.empty or "id" not in images or "file_name" not in images:
        raise DatasetError(f"{str(path)!r}: 'images' entries need 'id' and 'file_name'")
    images = images.drop_duplicates("id").set_index("id").sort_index()
    images.index.name = "image_id"
    table = pd.DataFrame(index=images.index)
    table["file_name"] = images["file_name"].astype(str)
    anns = data.get("annotations") or []
    counts = pd.Series([a.get("image_id") for a in anns], dtype=object).value_counts()
    table["n_annotations"] = counts.reindex(table.index).fillna(0).astype(np.int64).to_numpy()
    rows = []
    for a in anns:
        attrs = a.get("attributes")
        if not isinstance(attrs, dict):
            continue
        bbox = a.get("bbox") or [np.nan] * 4
        row = {
            "person_id": a.get("id"),
            "image_id": a.get("image_id"),
            "category_id": a.get("category_id"),
            "x": float(bbox[0]),
            "y": float(bbox[1]),
            "w": float(bbox[2]),
            "h": float(bbox[3]),
        }
        row.update(_coco_attribute_votes(attrs))
        rows.append(row)
    persons = None
    if rows:
        persons = pd.DataFrame(rows)
        vote_cols = [c for c in persons.columns if re.fullmatch(r"skin_tone_\d+|lighting_\w+", c)]
        persons[vote_cols] = persons[vote_cols].fillna(0)
        persons["file_name"] = persons["image_id"].map(table["file_name"])
        persons = add_person_labels(persons)
        per_image = image_table_from_persons(persons)
        table["skin"] = per_image["skin"].reindex(table.index).fillna(0).astype(np.int64)
        table["lighting"] = per_image["lighting"].reindex(table.index).fillna("na")
        table["n_people"] = per_image["n_people"].reindex(table.index).fillna(0).astype(np.int64)
    table, missing = attach_paths(table, image_root, str(path))
    return ImageDataset.from_table(
        table, persons=persons, missing=missing, kind="coco", source=str(path)
    )
