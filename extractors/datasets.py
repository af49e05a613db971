"""Image inputs for extraction: folders, text lists, COCO JSON, FACET CSV.

Every input becomes an :class:`ImageDataset`: an iterable of
:class:`ImageRecord` (``image_id``, ``path``, per-image ``coords``) with, for
annotated inputs, an image table and a person table.

Image ids
---------
``ids="auto"`` (folders and annotation files): the integer formed by the
trailing digits of each file's stem (``000000000139.jpg`` -> 139,
``sa_1234.jpg`` -> 1234) when every file has such digits and they are unique,
else the file name relative to the image root (a string). COCO JSON files
carry their own integer ids, which are used. Text lists are streamed and use
the 0-based line number among non-empty lines (``ids="index"``), which is
stable as long as the list is only appended to; ``ids="path"`` uses the line
itself.

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

import ast
import itertools
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from embstore.errors import DatasetError

from .images import IMAGE_EXTENSIONS

__all__ = [
    "LIGHTING_LABELS",
    "ImageDataset",
    "ImageRecord",
    "coco_dataset",
    "facet_dataset",
    "folder_dataset",
    "image_table_from_persons",
    "list_dataset",
    "open_dataset",
    "parse_light",
    "parse_skin",
    "read_facet_annotations",
]

logger = logging.getLogger(__name__)

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

_N_EXAMPLES = 5


@dataclass(frozen=True)
class ImageRecord:
    """One image to extract.

    Parameters
    ----------
    image_id : int or str
        Unique row id in the store.
    path : str
        File to load.
    coords : dict
        Per-image coordinates stored with the row (``file_name``, ``skin``,
        ``lighting``, ``n_people``, ...). ``width``/``height`` are added by
        the pipeline from the decoded image.
    """

    image_id: Any
    path: str
    coords: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------- parsing
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


def _parse_box(text: Any) -> tuple[float, float, float, float]:
    if isinstance(text, dict):
        d = text
    elif isinstance(text, (list, tuple)) and len(text) == 4:
        return tuple(float(v) for v in text)  # type: ignore[return-value]
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
        return tuple(float(v) for v in d)  # type: ignore[return-value]
    try:
        return float(d["x"]), float(d["y"]), float(d["width"]), float(d["height"])
    except (KeyError, TypeError) as exc:
        raise DatasetError(
            f"bounding_box {text!r} lacks x, y, width or height; expected "
            "{'x': ..., 'y': ..., 'width': ..., 'height': ...}"
        ) from exc


def _ids_from_names(names: Sequence[str]) -> list[Any]:
    """Integer ids from trailing stem digits when unique, else the names."""
    ids: list[Any] = []
    for name in names:
        m = re.search(r"(\d+)$", Path(name).stem)
        if m is None:
            return list(names)
        ids.append(int(m.group(1)))
    if len(set(ids)) != len(ids):
        return list(names)
    return ids


def _add_person_labels(persons: pd.DataFrame) -> pd.DataFrame:
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


# ------------------------------------------------------------------ FACET CSV
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
        (see the module notes), ``file_name`` (= ``filename``), the box as
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
            f"FACET annotations file {str(path)!r} does not exist; pass --annotations PATH/annotations.csv"
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
    mapping = dict(zip(names, _ids_from_names(names)))
    df.insert(1, "image_id", df["file_name"].map(mapping))
    if "bounding_box" in df.columns:
        boxes = np.array([_parse_box(b) for b in df["bounding_box"]], dtype=np.float64).reshape(
            -1, 4
        )
        df["x"], df["y"], df["w"], df["h"] = boxes.T
    return _add_person_labels(df)


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


# ------------------------------------------------------------------ datasets
class ImageDataset:
    """An iterable of :class:`ImageRecord` with optional annotation tables.

    Parameters
    ----------
    records : callable
        ``records() -> iterator of ImageRecord``; called once per iteration
        (so text lists are streamed, never held in memory).
    length : int, optional
        Number of records, when known cheaply.
    images : pandas.DataFrame, optional
        Image table (index ``image_id``; columns ``path`` and coordinates).
    persons : pandas.DataFrame, optional
        Person-level annotations, stored with
        :meth:`embstore.Store.write_table` as ``"persons"``.
    missing : list of str, optional
        File names named by the annotations but absent on disk.
    kind : str
        ``"folder"``, ``"list"``, ``"coco"`` or ``"facet"``.
    source : str
        Where the dataset came from (for provenance).

    Examples
    --------
    >>> ds = ImageDataset(lambda: iter([ImageRecord(1, "a.jpg")]), length=1)
    >>> [r.image_id for r in ds], len(ds)
    ([1], 1)
    """

    def __init__(
        self,
        records: Callable[[], Iterator[ImageRecord]],
        *,
        length: int | None = None,
        images: pd.DataFrame | None = None,
        persons: pd.DataFrame | None = None,
        missing: Sequence[str] = (),
        kind: str = "custom",
        source: str = "",
    ) -> None:
        self._records = records
        self._length = length
        self.images = images
        self.persons = persons
        self.missing = list(missing)
        self.kind = kind
        self.source = source

    def __iter__(self) -> Iterator[ImageRecord]:
        return iter(self._records())

    def __len__(self) -> int:
        if self._length is None:
            raise TypeError("this dataset's length is unknown (a streamed list)")
        return self._length

    @property
    def length(self) -> int | None:
        """Number of records if known, else ``None``."""
        return self._length

    @classmethod
    def from_table(
        cls,
        table: pd.DataFrame,
        *,
        persons: pd.DataFrame | None = None,
        missing: Sequence[str] = (),
        kind: str = "custom",
        source: str = "",
    ) -> ImageDataset:
        """Build a dataset from an image table.

        Parameters
        ----------
        table : pandas.DataFrame
            Index = image ids; a ``path`` column; every other column becomes a
            per-image coordinate.
        persons, missing, kind, source
            See :class:`ImageDataset`.

        Returns
        -------
        ImageDataset

        Examples
        --------
        >>> import pandas as pd
        >>> t = pd.DataFrame({"path": ["a.jpg"], "skin": [3]}, index=pd.Index([9], name="image_id"))
        >>> next(iter(ImageDataset.from_table(t))).coords
        {'skin': 3}
        """
        coord_cols = [c for c in table.columns if c != "path"]

        def records() -> Iterator[ImageRecord]:
            ids = table.index.tolist()
            paths = table["path"].tolist()
            values = [table[c].tolist() for c in coord_cols]
            for i, (image_id, path) in enumerate(zip(ids, paths)):
                yield ImageRecord(
                    image_id, str(path), {c: v[i] for c, v in zip(coord_cols, values)}
                )

        return cls(
            records,
            length=len(table),
            images=table,
            persons=persons,
            missing=missing,
            kind=kind,
            source=source,
        )

    def filter(
        self,
        skin: Any = None,
        light: Any = None,
        limit: int | None = None,
    ) -> ImageDataset:
        """Keep images by majority skin tone / lighting, then the first ``limit``.

        Parameters
        ----------
        skin : int, str or sequence, optional
            Monk tone(s) (``1``, ``"skin1"``); an image is kept when its
            majority tone is one of them.
        light : str or sequence, optional
            Lighting label(s) (``"well"``, ``"dimly"``, ...); kept when the
            image's majority lighting is one of them.
        limit : int, optional
            Keep only the first ``limit`` images (after filtering).

        Returns
        -------
        ImageDataset

        Raises
        ------
        DatasetError
            Filtering by skin/light on a dataset without annotations, or a
            bad filter value.

        Examples
        --------
        >>> import pandas as pd
        >>> t = pd.DataFrame({"path": ["a", "b"], "skin": [1, 2], "lighting": ["well_lit"] * 2},
        ...                  index=pd.Index([1, 2], name="image_id"))
        >>> [r.image_id for r in ImageDataset.from_table(t).filter(skin="skin2")]
        [2]
        """
        if limit is not None and limit < 0:
            raise DatasetError(f"limit={limit} is negative; pass a count >= 0")
        if skin is None and light is None:
            if limit is None:
                return self
            if self.images is not None:
                return ImageDataset.from_table(
                    self.images.iloc[:limit],
                    persons=self.persons,
                    missing=self.missing,
                    kind=self.kind,
                    source=self.source,
                )
            base = self._records
            n = None if self._length is None else min(self._length, limit)
            return ImageDataset(
                lambda: itertools.islice(base(), limit),
                length=n,
                kind=self.kind,
                source=self.source,
            )
        table = self.images
        if (
            table is None
            or ("skin" not in table.columns and skin is not None)
            or ("lighting" not in table.columns and light is not None)
        ):
            raise DatasetError(
                f"--skin/--light filters need annotations with skin tone and lighting votes; "
                f"this {self.kind} dataset has none: pass --annotations annotations.csv (FACET) "
                "or a COCO JSON with attributes"
            )
        keep = np.ones(len(table), dtype=bool)
        if skin is not None:
            values = [
                parse_skin(v) for v in (skin if isinstance(skin, (list, tuple, set)) else [skin])
            ]
            keep &= table["skin"].isin(values).to_numpy()
        if light is not None:
            values = [
                parse_light(v)
                for v in (light if isinstance(light, (list, tuple, set)) else [light])
            ]
            keep &= table["lighting"].isin(values).to_numpy()
        sub = table[keep]
        if limit is not None:
            sub = sub.iloc[:limit]
        persons = self.persons
        if persons is not None:
            persons = persons[persons["image_id"].isin(sub.index)]
        return ImageDataset.from_table(
            sub, persons=persons, missing=self.missing, kind=self.kind, source=self.source
        )


def _file_key(path: str) -> tuple[int, int] | None:
    """``(device, inode)`` of what ``path`` points to (None if it cannot be read)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _scan_images(root: Path, extensions: Sequence[str]) -> list[Path]:
    """Image files under ``root``, sorted, each real file once.

    Symlinked directories are followed, but a directory already visited (a
    symlink loop such as ``a/loop -> ..``, or two links to one folder) is
    entered only once, and a file reached through several paths (symlinks,
    hard links) is listed once, at the first path in sorted walk order.
    """
    exts = {e.lower() for e in extensions}
    found: list[Path] = []
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    root_key = _file_key(str(root))
    if root_key is not None:
        seen_dirs.add(root_key)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        keep = []
        for d in sorted(dirnames):
            key = _file_key(os.path.join(dirpath, d))
            if key is None or key in seen_dirs:
                continue  # a loop back to a visited directory, or a second link to one
            seen_dirs.add(key)
            keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            if os.path.splitext(name)[1].lower() in exts:
                path = os.path.join(dirpath, name)
                key = _file_key(path)
                if key is not None:
                    if key in seen_files:
                        continue
                    seen_files.add(key)
                found.append(Path(path))
    return found


def folder_dataset(
    root: str | os.PathLike[str],
    *,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    ids: str = "auto",
) -> ImageDataset:
    """All images under ``root`` (recursive, sorted by relative path).

    Parameters
    ----------
    root : str or path-like
        Directory to scan (symlinked directories are followed; symlink loops
        are detected and every file is listed once).
    extensions : sequence of str
        File extensions to include (case-insensitive).
    ids : {"auto", "path"}
        ``"auto"``: integer ids from trailing stem digits when unique, else
        the relative path; ``"path"``: always the relative path.

    Returns
    -------
    ImageDataset
        Coordinates: ``file_name`` (path relative to ``root``).

    Raises
    ------
    DatasetError
        ``root`` is not a directory or holds no images.

    Examples
    --------
    >>> import tempfile
    >>> folder_dataset(tempfile.mkdtemp())  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    embstore.errors.DatasetError: no images ...
    """
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(f"image folder {str(base)!r} does not exist or is not a directory")
    files = _scan_images(base, extensions)
    if not files:
        raise DatasetError(
            f"no images ({', '.join(extensions)}) found under {str(base)!r}; check the path "
            "or pass a text file listing image paths"
        )
    rel = [f.relative_to(base).as_posix() for f in files]
    if ids == "auto":
        row_ids = _ids_from_names(rel)
    elif ids == "path":
        row_ids = rel
    else:
        raise DatasetError(f"ids={ids!r} is unknown for a folder; use 'auto' or 'path'")
    table = pd.DataFrame(
        {"path": [str(f) for f in files], "file_name": rel},
        index=pd.Index(row_ids, name="image_id"),
    )
    return ImageDataset.from_table(table, kind="folder", source=str(base))


def list_dataset(
    list_file: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    ids: str = "index",
) -> ImageDataset:
    """Images named in a text file, one path per line, streamed.

    Empty lines and lines starting with ``#`` are ignored. Nothing but a line
    count is done up front, so lists with millions of lines cost no memory.

    Parameters
    ----------
    list_file : str or path-like
        The text file.
    root : str or path-like, optional
        Relative paths are resolved against it (default: the current
        directory, as the old scripts did).
    ids : {"index", "path"}
        ``"index"``: 0-based position among the non-empty lines (int);
        ``"path"``: the line itself (str).

    Returns
    -------
    ImageDataset
        Coordinates: ``file_name`` (the line as written).

    Raises
    ------
    DatasetError
        The file does not exist.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "list.txt")
    >>> _ = open(p, "w").write("a.jpg\\n\\nb.jpg\\n")
    >>> [(r.image_id, r.coords["file_name"]) for r in list_dataset(p)]
    [(0, 'a.jpg'), (1, 'b.jpg')]
    """
    path = Path(list_file)
    if not path.is_file():
        raise DatasetError(
            f"image list {str(path)!r} does not exist; pass a folder or a text file of paths"
        )
    if ids not in ("index", "path"):
        raise DatasetError(f"ids={ids!r} is unknown for a text list; use 'index' or 'path'")
    base = Path(root) if root is not None else None

    def lines() -> Iterator[str]:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if line and not line.startswith("#"):
                    yield line

    n = sum(1 for _ in lines())

    def records() -> Iterator[ImageRecord]:
        for i, line in enumerate(lines()):
            full = str(base / line) if base is not None and not os.path.isabs(line) else line
            yield ImageRecord(i if ids == "index" else line, full, {"file_name": line})

    return ImageDataset(records, length=n, kind="list", source=str(path))


def _resolve_files(names: Iterable[str], root: Path) -> tuple[list[str | None], list[str]]:
    """Find each annotated file under ``root``: ``root/name`` or by base name."""
    names = list(names)
    out: list[str | None] = []
    by_base: dict[str, str] | None = None
    missing: list[str] = []
    for name in names:
        direct = root / name
        if direct.is_file():
            out.append(str(direct))
            continue
        if by_base is None:
            by_base = {}
            for f in _scan_images(root, IMAGE_EXTENSIONS + (".gif", ".tif", ".tiff")):
                by_base.setdefault(f.name, str(f))
        found = by_base.get(Path(name).name)
        out.append(found)
        if found is None:
            missing.append(name)
    return out, missing


def _report_missing(missing: Sequence[str], total: int, what: str) -> None:
    if missing:
        logger.warning(
            "%d of %d images named in %s are missing and are skipped; first: %s",
            len(missing),
            total,
            what,
            ", ".join(missing[:_N_EXAMPLES]),
        )


def _attach_paths(
    table: pd.DataFrame, image_root: str | os.PathLike[str], source: str
) -> tuple[pd.DataFrame, list[str]]:
    """Resolve ``table["file_name"]`` under ``image_root`` into a ``path`` column.

    Missing files are reported (count + first examples) and their rows
    dropped; no file at all is an error naming the annotations and folder.
    """
    root = Path(image_root)
    if not root.is_dir():
        raise DatasetError(f"image folder {str(root)!r} does not exist; pass --images DIR")
    paths, missing = _resolve_files(table["file_name"], root)
    table.insert(0, "path", paths)
    _report_missing(missing, len(table), source)
    table = table[table["path"].notna()]
    if table.empty:
        raise DatasetError(
            f"none of the {len(paths)} images named in {source!r} exist under {str(root)!r} "
            f"(e.g. {missing[:3]}); check --images"
        )
    return table, missing


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
        the module notes for the majority rules); ``persons`` holds
        :func:`read_facet_annotations`.

    Raises
    ------
    DatasetError
        Bad CSV, or no annotated image exists under ``image_root``.
    """
    persons = read_facet_annotations(annotations)
    table = image_table_from_persons(persons)
    table, missing = _attach_paths(table, image_root, str(annotations))
    return ImageDataset.from_table(
        table, persons=persons, missing=missing, kind="facet", source=str(annotations)
    )


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
    annotation with ``attributes`` is a person; the FACET majority rules of
    this module give per-image ``skin``/``lighting``.

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
        persons = _add_person_labels(persons)
        per_image = image_table_from_persons(persons)
        table["skin"] = per_image["skin"].reindex(table.index).fillna(0).astype(np.int64)
        table["lighting"] = per_image["lighting"].reindex(table.index).fillna("na")
        table["n_people"] = per_image["n_people"].reindex(table.index).fillna(0).astype(np.int64)
    table, missing = _attach_paths(table, image_root, str(path))
    return ImageDataset.from_table(
        table, persons=persons, missing=missing, kind="coco", source=str(path)
    )


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
            f"--images {str(img)!r} does not exist; pass an image folder or a text file of paths"
        )
    return ds.filter(skin=skin, light=light, limit=limit)
