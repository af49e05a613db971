"""The records every image input yields: :class:`ImageRecord` and :class:`ImageDataset`."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from embstore.errors import DatasetError

from .labels import parse_light, parse_skin

__all__ = [
    "ImageDataset",
    "ImageRecord",
]


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
                f"skin/light filters need annotations with skin tone and lighting votes; "
                f"this {self.kind} dataset has none: pass annotations='annotations.csv' (FACET) "
                "or a COCO JSON with attributes"
            )
        keep = np.ones(len(table), dtype=bool)
        if skin is not None:
            values = [
                parse_skin(v) for v in (skin if isinstance(skin, (list, tuple, set)) else [skin])
            ]
            keep &= table["skin"].isin(values).to_numpy()
        if light is not None:
            labels = [
                parse_light(v)
                for v in (light if isinstance(light, (list, tuple, set)) else [light])
            ]
            keep &= table["lighting"].isin(labels).to_numpy()
        sub = table[keep]
        if limit is not None:
            sub = sub.iloc[:limit]
        persons = self.persons
        if persons is not None:
            persons = persons[persons["image_id"].isin(sub.index)]
        return ImageDataset.from_table(
            sub, persons=persons, missing=self.missing, kind=self.kind, source=self.source
        )
