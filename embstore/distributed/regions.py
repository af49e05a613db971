"""Partition an input list into chunk-aligned row regions of one store.

A parallel extraction preallocates ``n_rows`` rows
(``Store.create(..., n_rows=n_rows)``) and gives every task one region
``(start, stop)`` of them (``Store.open(path, mode="a", region=(start, stop))``).
Item ``p`` of the input list (its position) belongs to the region holding row
``p``, so the store lists rows in input order, exactly as a single-process
run would, whichever worker finishes first.

The plan is saved in the store's attributes (``"distributed"``) with a
fingerprint of the ids: a later run resumes with the same regions and is
refused if the input list changed.

Examples
--------
>>> plan = plan_regions(10, chunk_rows=4, rows_per_task=8)
>>> plan.regions, plan.item_slices
([(0, 8), (8, 12)], [(0, 8), (8, 10)])
>>> RegionPlan.from_json(plan.to_json()) == plan
True
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import ValidationError

__all__ = ["RegionPlan", "default_rows_per_task", "ids_fingerprint", "plan_regions"]


def ids_fingerprint(ids: Iterable[Any]) -> str:
    """SHA-256 of an ordered id list (type-aware: ``1`` and ``"1"`` differ).

    Parameters
    ----------
    ids : iterable of int or str
        Row ids in input order.

    Returns
    -------
    str
        Hex digest.

    Examples
    --------
    >>> ids_fingerprint([1, 2]) == ids_fingerprint([1, 2]), ids_fingerprint([1, 2]) == ids_fingerprint([2, 1])
    (True, False)
    >>> ids_fingerprint([1]) == ids_fingerprint(["1"])
    False
    """
    h = hashlib.sha256()
    for v in ids:
        v = v.item() if hasattr(v, "item") else v
        tag = b"s" if isinstance(v, str) else b"i"
        h.update(tag + str(v).encode("utf-8") + b"\x00")
    return h.hexdigest()


def default_rows_per_task(
    n_items: int, chunk_rows: int, n_workers: int, tasks_per_worker: int = 4
) -> int:
    """Rows per task: about ``tasks_per_worker`` tasks per worker, whole chunks.

    Several tasks per worker balance the load (a slow or restarted worker
    holds back less work) while each task still writes whole chunks.

    Parameters
    ----------
    n_items : int
        Images to extract.
    chunk_rows : int
        Rows per chunk of the store.
    n_workers : int
        Dask workers.
    tasks_per_worker : int, default 4
        Target number of tasks per worker.

    Returns
    -------
    int
        A positive multiple of ``chunk_rows``.

    Examples
    --------
    >>> default_rows_per_task(1000, 16, 2)
    128
    """
    target = max(1, int(n_workers) * int(tasks_per_worker))
    rows = max(1, math.ceil(int(n_items) / target))
    return int(math.ceil(rows / chunk_rows) * chunk_rows)


@dataclass(frozen=True)
class RegionPlan:
    """Regions of a preallocated store and the input items each one holds.

    Parameters
    ----------
    n_items : int
        Input items (rows to extract).
    chunk_rows : int
        Rows per store chunk (regions are aligned to it).
    rows_per_task : int
        Rows per region (a multiple of ``chunk_rows``).
    fingerprint : str, optional
        :func:`ids_fingerprint` of the input ids (checked on resume).

    Attributes
    ----------
    n_rows : int
        Preallocated rows: ``n_items`` rounded up to whole chunks.
    regions : list of (int, int)
        Store rows ``(start, stop)`` of each task.
    item_slices : list of (int, int)
        Input positions ``(start, stop)`` of each task.
    """

    n_items: int
    chunk_rows: int
    rows_per_task: int
    fingerprint: str = ""

    def __post_init__(self) -> None:
        for name in ("n_items", "chunk_rows", "rows_per_task"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValidationError(f"{name}={value!r} must be an int")
        if self.n_items < 1:
            raise ValidationError(
                f"n_items={self.n_items}: nothing to extract; pass at least one image"
            )
        if self.chunk_rows < 1:
            raise ValidationError(f"chunk_rows={self.chunk_rows} must be positive")
        if self.rows_per_task < 1 or self.rows_per_task % self.chunk_rows:
            raise ValidationError(
                f"rows_per_task={self.rows_per_task} must be a positive multiple of chunk_rows={self.chunk_rows} "
                f"(regions are chunk-aligned), e.g. {max(1, math.ceil(self.rows_per_task / self.chunk_rows)) * self.chunk_rows}"
            )

    @property
    def n_rows(self) -> int:
        """Rows to preallocate: ``n_items`` rounded up to whole chunks."""
        return int(math.ceil(self.n_items / self.chunk_rows) * self.chunk_rows)

    @property
    def regions(self) -> list[tuple[int, int]]:
        """Store rows ``(start, stop)`` of each task."""
        n = self.n_rows
        return [(s, min(s + self.rows_per_task, n)) for s in range(0, n, self.rows_per_task)]

    @property
    def item_slices(self) -> list[tuple[int, int]]:
        """Input positions ``(start, stop)`` of each task (same order as :attr:`regions`)."""
        return [(s, min(e, self.n_items)) for s, e in self.regions]

    def __len__(self) -> int:
        return len(self.regions)

    def to_json(self) -> dict[str, Any]:
        """The plan as a JSON-friendly dict (saved in the store attributes).

        Returns
        -------
        dict
        """
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RegionPlan:
        """Rebuild a plan saved by :meth:`to_json`.

        Parameters
        ----------
        data : dict

        Returns
        -------
        RegionPlan

        Raises
        ------
        ValidationError
            The dict lacks a field.
        """
        try:
            return cls(
                int(data["n_items"]),
                int(data["chunk_rows"]),
                int(data["rows_per_task"]),
                str(data.get("fingerprint", "")),
            )
        except (KeyError, TypeError) as exc:
            raise ValidationError(
                f"stored region plan {data!r} is incomplete ({exc}); the store was not made by a "
                "distributed extraction: pass a new output path"
            ) from exc


def plan_regions(
    n_items: int,
    chunk_rows: int,
    rows_per_task: int | None = None,
    *,
    n_workers: int = 1,
    ids: Iterable[Any] | None = None,
) -> RegionPlan:
    """Plan the regions of a parallel extraction.

    Parameters
    ----------
    n_items : int
        Images to extract.
    chunk_rows : int
        Rows per store chunk.
    rows_per_task : int, optional
        Rows per task; default :func:`default_rows_per_task`. Must be a
        multiple of ``chunk_rows``.
    n_workers : int, default 1
        Workers (for the default ``rows_per_task``).
    ids : iterable, optional
        Input ids, fingerprinted into the plan.

    Returns
    -------
    RegionPlan

    Raises
    ------
    ValidationError
        Non-positive sizes or a ``rows_per_task`` not aligned to chunks.

    Examples
    --------
    >>> plan_regions(5, chunk_rows=2, rows_per_task=2).regions
    [(0, 2), (2, 4), (4, 6)]
    """
    if rows_per_task is None:
        rows_per_task = default_rows_per_task(n_items, chunk_rows, n_workers)
    fp = ids_fingerprint(ids) if ids is not None else ""
    return RegionPlan(int(n_items), int(chunk_rows), int(rows_per_task), fp)
