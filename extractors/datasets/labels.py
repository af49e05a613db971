"""FACET labels: parsing skin/lighting filter values and the majority rules.

Shared by the FACET CSV (:mod:`.facet`) and COCO JSON (:mod:`.coco`) inputs,
and by :meth:`~extractors.datasets.ImageDataset.filter`.

FACET majority rules (per person and per image)
-----------------------------------------------
``skin``
    Monk skin tone 1..10. Votes ``skin_tone_1..skin_tone_10`` are summed (per
    person: that person's annotators; per image: over all people of the
    image, so every annotator vote counts once). The tone with most votes
    wins; **ties go to the lower (lighter) tone**. ``skin_tone_na`` votes are
    ignored; a person or image with no tone votes at all gets ``skin = 0``
    ("unknown").
``lighting``
    The same rule over ``lighting_well_lit, lighting_dimly_lit,
    lighting_underexposed, lighting_overexposed``; ties go to the earlier
    label in that order; only-NA gives ``"na"``. Values are the label
    without the prefix: ``"well_lit"``, ``"dimly_lit"``, ``"underexposed"``,
    ``"overexposed"``, ``"na"``.
``gender``, ``age``, ``hair_color``, ``hairtype`` (persons only)
    The same rule over the ``gender_presentation_*``, ``age_presentation_*``,
    ``hair_color_*`` and ``hairtype_*`` columns, in file column order.

Filters (:meth:`ImageDataset.filter`) use the *image's* majority label:
``skin=1`` keeps images whose majority tone is 1 (``"skin1"`` and
``"skin_1"`` are accepted); ``light="well"`` keeps images whose majority
lighting is ``well_lit`` (``"dimly"``/``"dim"``, ``"under"``, ``"over"``,
``"na"`` likewise). Several values are OR-ed; skin and light are AND-ed.

Examples
--------
>>> import pandas as pd
>>> persons = pd.DataFrame({"person_id": [1, 2], "image_id": [7, 7],
...     "skin_tone_1": [0, 2], "skin_tone_2": [3, 0], "skin_tone_na": [0, 0]})
>>> image_table_from_persons(persons)["skin"].tolist()
[2]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from embstore.errors import DatasetError

__all__ = [
    "LIGHTING_LABELS",
    "image_table_from_persons",
    "parse_light",
    "parse_skin",
]

#: Lighting labels in tie-breaking order (earlier wins a tie).
LIGHTING_LABELS: tuple[str, ...] = ("well_lit", "dimly_lit", "underexposed", "overexposed")

_LIGHT_ALIASES = {
    "well": "well_lit",
    "well_lit": "well_lit",
    "welllit": "well_lit",
    "dim": "dimly_lit",
    "dimly": "dimly_lit",
    "dimly_lit": "dimly_lit",
    "dimlylit": "dimly_lit",
    "under": "underexposed",
    "underexposed": "underexposed",
    "over": "overexposed",
    "overexposed": "overexposed",
    "na": "na",
}


def parse_skin(value: Any) -> int:
    """Parse a skin-tone filter value: ``1``, ``"1"``, ``"skin1"``, ``"skin_1"``.

    Parameters
    ----------
    value : int or str

    Returns
    -------
    int
        Monk tone 1..10 (0 = unknown).

    Raises
    ------
    DatasetError
        Not a tone 0..10.

    Examples
    --------
    >>> parse_skin("skin3"), parse_skin(4), parse_skin("skin_tone_10")
    (3, 4, 10)
    """
    text = str(value).strip().lower()
    match = re.fullmatch(r"(?:skin(?:_?tone)?_?)?(\d+)", text)
    if match is None or not 0 <= int(match.group(1)) <= 10:
        raise DatasetError(
            f"skin filter {value!r} is not a Monk skin tone; use 1..10 (or 'skin1'..'skin10', 0 = unknown)"
        )
    return int(match.group(1))


def parse_light(value: Any) -> str:
    """Parse a lighting filter value (``"well"``, ``"dimly"``, ``"well_lit"``...).

    Parameters
    ----------
    value : str

    Returns
    -------
    str
        One of :data:`LIGHTING_LABELS` or ``"na"``.

    Raises
    ------
    DatasetError
        Unknown lighting label.

    Examples
    --------
    >>> parse_light("well"), parse_light("dimly"), parse_light("lighting_overexposed")
    ('well_lit', 'dimly_lit', 'overexposed')
    """
    text = str(value).strip().lower().replace("-", "_")
    text = text.removeprefix("lighting_")
    if text not in _LIGHT_ALIASES:
        raise DatasetError(
            f"light filter {value!r} is unknown; use one of well, dimly, under, over, na "
            f"(or {', '.join(LIGHTING_LABELS)})"
        )
    return _LIGHT_ALIASES[text]


def _majority(votes: np.ndarray, labels: Sequence[Any], none: Any) -> list[Any]:
    """Row-wise argmax of vote counts; ties -> first label; no votes -> ``none``."""
    votes = np.nan_to_num(np.asarray(votes, dtype=np.float64), nan=0.0)
    if votes.ndim != 2 or votes.shape[1] == 0:
        return [none] * (votes.shape[0] if votes.ndim else 0)
    best = votes.argmax(axis=1)  # first maximum = tie-break to the earlier label
    has = votes.sum(axis=1) > 0
    return [labels[b] if h else none for b, h in zip(best, has)]


def _category_columns(columns: Sequence[str], prefix: str) -> tuple[list[str], list[str]]:
    """Vote columns ``prefix<label>`` (excluding ``na``) and their labels."""
    cols = [c for c in columns if c.startswith(prefix) and c[len(prefix) :] != "na"]
    return cols, [c[len(prefix) :] for c in cols]


def _skin_columns(columns: Sequence[str]) -> tuple[list[str], list[int]]:
    pairs = []
    for c in columns:
        m = re.fullmatch(r"skin_tone_(\d+)", c)
        if m:
            pairs.append((int(m.group(1)), c))
    pairs.sort()
    return [c for _, c in pairs], [t for t, _ in pairs]


def add_person_labels(persons: pd.DataFrame) -> pd.DataFrame:
    """Add per-person majority columns (skin, lighting, gender, age, hair)."""
    cols = list(persons.columns)
    skin_cols, tones = _skin_columns(cols)
    persons["skin"] = np.asarray(
        _majority(persons[skin_cols].to_numpy(), tones, 0) if skin_cols else [0] * len(persons),
        dtype=np.int64,
    )
    light_cols = [f"lighting_{x}" for x in LIGHTING_LABELS if f"lighting_{x}" in cols]
    persons["lighting"] = (
        _majority(persons[light_cols].to_numpy(), [c[len("lighting_") :] for c in light_cols], "na")
        if light_cols
        else "na"
    )
    for out, prefix in (
        ("gender", "gender_presentation_"),
        ("age", "age_presentation_"),
        ("hair_color", "hair_color_"),
        ("hairtype", "hairtype_"),
    ):
        c, labels = _category_columns(cols, prefix)
        if c:
            persons[out] = _majority(persons[c].to_numpy(), labels, "na")
    return persons


def image_table_from_persons(persons: pd.DataFrame) -> pd.DataFrame:
    """Aggregate a person table to one row per image with majority labels.

    Parameters
    ----------
    persons : pandas.DataFrame
        From :func:`read_facet_annotations` (or any table with ``image_id``
        and FACET vote columns ``skin_tone_*``, ``lighting_*``).

    Returns
    -------
    pandas.DataFrame
        Index ``image_id`` (sorted); columns ``file_name`` (when present),
        ``skin`` (int, Monk 1..10 by the summed votes of all the image's
        people, ties -> lower tone, no votes -> 0), ``lighting`` (str, same
        rule, ties -> earlier of :data:`LIGHTING_LABELS`, no votes ->
        ``"na"``) and ``n_people``.

    Raises
    ------
    DatasetError
        ``image_id`` column missing.

    Examples
    --------
    >>> import pandas as pd
    >>> persons = pd.DataFrame({"image_id": [1, 1, 2], "skin_tone_2": [1, 0, 0],
    ...     "skin_tone_5": [0, 1, 0], "skin_tone_na": [0, 0, 3]})
    >>> image_table_from_persons(persons)[["skin", "n_people"]].values.tolist()
    [[2, 2], [0, 1]]
    """
    if "image_id" not in persons.columns:
        raise DatasetError(
            f"person table has no 'image_id' column (columns: {list(persons.columns)[:12]}); "
            "build it with read_facet_annotations()"
        )
    cols = list(persons.columns)
    skin_cols, tones = _skin_columns(cols)
    light_cols = [f"lighting_{x}" for x in LIGHTING_LABELS if f"lighting_{x}" in cols]
    numeric = persons[["image_id"] + skin_cols + light_cols].copy()
    numeric[skin_cols + light_cols] = numeric[skin_cols + light_cols].fillna(0)
    grouped = numeric.groupby("image_id", sort=True)
    sums = grouped.sum()
    table = pd.DataFrame(index=sums.index)
    if "file_name" in persons.columns:
        table["file_name"] = persons.groupby("image_id", sort=True)["file_name"].first().astype(str)
    table["skin"] = np.asarray(
        _majority(sums[skin_cols].to_numpy(), tones, 0) if skin_cols else [0] * len(table),
        dtype=np.int64,
    )
    table["lighting"] = (
        _majority(sums[light_cols].to_numpy(), [c[len("lighting_") :] for c in light_cols], "na")
        if light_cols
        else "na"
    )
    table["n_people"] = grouped.size().astype(np.int64)
    table.index.name = "image_id"
    return table
