"""ExtractionSummary: what an extraction run did, local or on Dask.

:func:`extractors.pipeline.run_extraction`, the Dask
:func:`extractors.distributed.extract_distributed`, every ``extract_*``
entry point (DETR, face, SigLIP, ``extract model``) and the Dask region tasks
return this one type. :class:`RegionResult` is a Dask task's part of it.

Examples
--------
>>> s = ExtractionSummary(written=3, seconds=1.5, images_per_s=2.0)
>>> str(s)
'wrote 3 rows in 1.5 s (2.00 images/s); 0 already in the store; skipped 0'
>>> s.to_dict()["written"]
3
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DistributedSummary", "ExtractionSummary", "RegionResult"]


@dataclass
class RegionResult:
    """What one Dask region task did.

    Attributes
    ----------
    region : (int, int)
        Store rows of the task.
    written : int
        Rows committed by this attempt.
    already_done : int
        Rows the region already had (an earlier attempt or run).
    skipped : list of (id, reason)
        Rows that could not be read.
    seconds : float
        Wall time of the attempt.
    worker : str
        Address of the worker that ran it.
    device : str
        Compute device used.
    """

    region: tuple[int, int]
    written: int = 0
    already_done: int = 0
    skipped: list[tuple[Any, str]] = field(default_factory=list)
    seconds: float = 0.0
    worker: str = ""
    device: str = ""


#: Keys of the old SigLIP summary dict that are not field names.
_DICT_ALIASES = {"instances_per_s": "images_per_s"}


@dataclass
class ExtractionSummary:
    """What a run did (one process or a Dask cluster).

    Attributes
    ----------
    written : int
        Rows appended (committed) in this run.
    skipped : int
        Rows skipped in this run (bad or missing files, empty masks).
    skipped_reasons : dict of str to int
        Counts per reason category (``"missing file"``, ...).
    skipped_examples : list of (id, reason)
        The first few skipped rows.
    already_done : int
        Rows not extracted because the store already had them (resume).
    previously_skipped : int
        Rows not retried because an earlier run recorded them as skipped.
    seconds : float
        Wall time of the run.
    images_per_s : float
        ``written / seconds`` (rows per second).
    interrupted : bool
        The run was stopped by Ctrl-C / SIGTERM (committed rows are kept).
    writer_seconds : float
        Time the writer thread was busy (local runs).
    store : str or None
        Path of the store, when the entry point opened it.
    scheduler : {"local", "dask"}
        Where the run ran.
    n_tasks, n_workers : int
        Dask: region tasks run and workers of the cluster.
    regions : list of RegionResult
        Dask: per-task results.
    failed : list of str
        Dask: errors of tasks that failed for good.

    Notes
    -----
    ``summary["written"]`` (the dict the SigLIP entry point returned
    before) still works but warns with a ``FutureWarning``: use the
    attributes.
    """

    written: int = 0
    skipped: int = 0
    skipped_reasons: dict[str, int] = field(default_factory=dict)
    skipped_examples: list[tuple[Any, str]] = field(default_factory=list)
    already_done: int = 0
    previously_skipped: int = 0
    seconds: float = 0.0
    images_per_s: float = 0.0
    interrupted: bool = False
    writer_seconds: float = 0.0
    store: str | None = None
    scheduler: str = "local"
    n_tasks: int = 0
    n_workers: int = 0
    regions: list[RegionResult] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def instances_per_s(self) -> float:
        """Alias of :attr:`images_per_s` (rows are instances in a SigLIP store)."""
        return self.images_per_s

    def __getitem__(self, key: str) -> Any:
        """Deprecated dict access (``summary["written"]``); use attributes.

        Parameters
        ----------
        key : str
            A field name (or ``"instances_per_s"``).

        Returns
        -------
        object
        """
        warnings.warn(
            f"summary[{key!r}] is deprecated; ExtractionSummary is a dataclass: use "
            f"summary.{_DICT_ALIASES.get(key, key)}",
            FutureWarning,
            stacklevel=2,
        )
        name = _DICT_ALIASES.get(key, key)
        if name not in self.__dataclass_fields__:
            from embstore.errors import ValidationError

            raise ValidationError(
                f"no summary field {key!r}; fields: {sorted(self.__dataclass_fields__)}"
            )
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        """The summary as a plain dict (JSON-friendly).

        Returns
        -------
        dict
        """
        out: dict[str, Any] = {
            "written": self.written,
            "skipped": self.skipped,
            "skipped_reasons": dict(self.skipped_reasons),
            "skipped_examples": [[str(i), r] for i, r in self.skipped_examples],
            "already_done": self.already_done,
            "previously_skipped": self.previously_skipped,
            "seconds": round(self.seconds, 3),
            "images_per_s": round(self.images_per_s, 3),
            "interrupted": self.interrupted,
            "writer_seconds": round(self.writer_seconds, 3),
        }
        if self.store is not None:
            out["store"] = self.store
        if self.scheduler == "dask":
            out.update(
                scheduler="dask",
                n_tasks=self.n_tasks,
                n_workers=self.n_workers,
                failed=list(self.failed),
            )
        return out

    def __str__(self) -> str:
        rate = f"{self.written} rows in {self.seconds:.1f} s ({self.images_per_s:.2f} images/s)"
        if self.scheduler == "dask":
            return (
                f"wrote {rate} with {self.n_tasks} Dask tasks on {self.n_workers} workers; "
                f"{self.already_done} already in the store; skipped {self.skipped}"
                + (f"; {len(self.failed)} tasks FAILED" if self.failed else "")
            )
        text = f"wrote {rate}; {self.already_done} already in the store; skipped {self.skipped}"
        if self.skipped_reasons:
            text += (
                " (" + ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped_reasons.items())) + ")"
            )
        if self.previously_skipped:
            text += f"; {self.previously_skipped} skipped by an earlier run"
        if self.interrupted:
            text += "; INTERRUPTED (re-run to resume)"
        return text


def DistributedSummary(**kwargs: Any) -> ExtractionSummary:
    """An :class:`ExtractionSummary` of a Dask run (the old class name).

    Parameters
    ----------
    **kwargs
        Fields of :class:`ExtractionSummary`.

    Returns
    -------
    ExtractionSummary
        With ``scheduler="dask"``.
    """
    kwargs.setdefault("scheduler", "dask")
    return ExtractionSummary(**kwargs)
