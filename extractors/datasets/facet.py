"""FACET: ``annotations/annotations.csv`` (one row per person) and its image folders."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from embstore.errors import DatasetError

from .files import attach_paths, ids_from_names
from .labels import add_person_labels, image_table_from_persons
from .records import ImageDataset

__all__ = [
    "facet_dataset",
    "read_facet_annotations",
]


def _four(v: Any) -> tuple[float, float, float, float]:
    return float(v[0]), float(v[1]), float(v[2]), float(v[3])


def _parse_box(text: Any) -> tuple[float, float, float, float]:
    if isinstance(text, dict):
        d = text
    elif isinstance(text, (list, tuple)) and len(text) == 4:
        return _four(text)
    else:
        try:
            d = ast.literal_eval(str(text))
        except (ValueError, SyntaxError):
            try:
                d = json.loads(str(text))
            except ValueError as exc:
                raise DatasetError(
                    f"bounding_box {text!r} is not a dict string like "
                    "\"{'x': 10, 'y': 20, 'width': 30, 'height': 40}\""
                ) from exc
    if isinstance(d, (list, tuple)) and len(d) == 4:
        return _four(d)
    try:
        return float(d["x"]), float(d["y"]), float(d["width"]), float(d["height"])
    except (KeyError, TypeError) as exc:
        raise DatasetError(
            f"bounding_box {text!r} lacks x, y, width or height; expected "
            "{'x': ..., 'y': ..., 'width': ..., 'height': ...}"
        ) from exc


def read_facet_annotations(csv: str | os.PathLike[str]) -> pd.DataFrame:
    """Read FACET's ``annotations/annotations.csv`` into a person table.

    Parameters
    ----------
    csv : str or path-like
        The CSV file (columns ``person_id, filename, class1, class2,
        bounding_box, skin_tone_1..10, skin_tone_na, lighting_*,
        gender_presentation_*, age_presentation_*, hair_color_*, hairtype_*,
        has_*, visible_*``).

    Returns
    -------
    pandas.DataFrame
        One row per person with every original column, plus ``image_id``
        (see :mod:`extractors.datasets.files`), ``file_name`` (= ``filename``), the box as
        pixels ``x, y, w, h``, and the per-person majority labels ``skin``
        (int, 0 = unknown), ``lighting``, ``gender``, ``age``,
        ``hair_color``, ``hairtype`` (strings, ``"na"`` = unknown).

    Raises
    ------
    DatasetError
        The file is missing, or ``person_id``/``filename`` columns are absent,
        or a bounding box cannot be parsed.

    Examples
    --------
    >>> import io, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "annotations.csv")
    >>> with open(p, "w") as f:
    ...     _ = f.write("person_id,filename,class1,bounding_box,skin_tone_3,skin_tone_na,lighting_well_lit\\n")
    ...     _ = f.write("1,sa_5.jpg,doctor,\\"{'x': 1, 'y': 2, 'width': 3, 'height': 4}\\",2,1,1\\n")
    >>> p_df = read_facet_annotations(p)
    >>> p_df[["image_id", "skin", "lighting", "w"]].values.tolist()
    [[5, 3, 'well_lit', 3.0]]
    """
    path = Path(csv)
    if not path.is_file():
        raise DatasetError(
            f"FACET annotations file {str(path)!r} does not exist; "
            "pass annotations='<FACET root>/annotations/annotations.csv'"
        )
    df = pd.read_csv(path)
    for col in ("person_id", "filename"):
        if col not in df.columns:
            raise DatasetError(
                f"{str(path)!r} has no {col!r} column (columns: {list(df.columns)[:12]}...); "
                "is this FACET's annotations/annotations.csv?"
            )
    df["file_name"] = df["filename"].astype(str)
    names = sorted(df["file_name"].unique())
    mapping = dict(zip(names, ids_from_names(names)))
    df.insert(1, "image_id", df["file_name"].map(mapping))
    if "bounding_box" in df.columns:
        boxes = np.array([_parse_box(b) for b in df["bounding_box"]], dtype=np.float64).reshape(
            -1, 4
        )
        df["x"], df["y"], df["w"], df["h"] = boxes.T
    return add_person_labels(df)


def facet_dataset(
    annotations: str | os.PathLike[str], image_root: str | os.PathLike[str]
) -> ImageDataset:
    """FACET: ``annotations.csv`` plus the folder(s) holding its images.

    Files are looked up as ``image_root/filename`` and otherwise by base name
    anywhere under ``image_root`` (FACET ships ``imgs_1/``, ``imgs_2/``, ...).
    Images named in the CSV but absent on disk are reported (count and first
    examples, logged as a warning, listed in :attr:`ImageDataset.missing`)
    and skipped.

    Parameters
    ----------
    annotations : str or path-like
        FACET's ``annotations/annotations.csv``.
    image_root : str or path-like
        Directory with the images.

    Returns
    -------
    ImageDataset
        Coordinates ``file_name``, ``skin``, ``lighting``, ``n_people`` (see
        :mod:`extractors.datasets.labels` for the majority rules); ``persons`` holds
        :func:`read_facet_annotations`.

    Raises
    ------
    DatasetError
        Bad CSV, or no annotated image exists under ``image_root``.
    """
    persons = read_facet_annotations(annotations)
    table = image_table_from_persons(persons)
    table, missing = attach_paths(table, image_root, str(annotations))
    return ImageDataset.from_table(
        table, persons=persons, missing=missing, kind="facet", source=str(annotations)
    )
