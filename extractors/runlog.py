"""Running an extraction into an open store and recording the run in it.

Shared by every ``extract_*`` entry point (DETR, face, SigLIP, ``extract
model``) and the Dask client: the dataset's person table is merged into the
store, :func:`extractors.pipeline.run_extraction` runs, and the run (command
line, start time, summary) is appended to the store's ``runs`` attribute.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Callable, Sequence
from typing import Any

from embstore.errors import ValidationError

from .outputs import clean_table, store_exists
from .pipeline import run_extraction
from .summary import ExtractionSummary

__all__ = ["clean_table", "format_command", "open_run_store", "run_and_record", "store_exists"]

logger = logging.getLogger(__name__)


def open_run_store(
    out: str | os.PathLike[str],
    ex: Any,
    *,
    attrs: dict[str, Any],
    overwrite: bool = False,
    row_dim: str = "image",
    id_name: str = "image_id",
    hint: str = "pass a new --out",
    check: Callable[[Any], None] | None = None,
) -> Any:
    """Create ``out`` with the extractor's schema, or open it to resume.

    Parameters
    ----------
    out : str or path-like
        The store.
    ex : extractors.protocol.Extractor
        Gives ``variables``, ``ragged``, ``dtypes``.
    attrs : dict
        Attributes of a new store.
    overwrite : bool, default False
        Replace an existing store instead of resuming it.
    row_dim, id_name : str
        Row dimension and id coordinate.
    hint : str
        Appended to a schema-mismatch error (what to do instead).
    check : callable, optional
        ``check(store)`` on a store being resumed (raise to refuse it; the
        store is closed then).

    Returns
    -------
    embstore.Store
        Open for appending.

    Raises
    ------
    ValidationError
        The existing store has another schema, or ``check`` refused it.
    """
    from embstore import Store

    out_s = os.fspath(out)
    resuming = store_exists(out_s) and not overwrite
    try:  # "a": create if absent, else resume after a schema check; "w": start again
        store = Store.open(
            out_s,
            mode="w" if overwrite else "a",
            row_dim=row_dim,
            id_name=id_name,
            variables=dict(ex.variables),
            ragged=dict(getattr(ex, "ragged", None) or {}),
            dtypes=dict(getattr(ex, "dtypes", None) or {}),
            attrs=attrs,
        )
    except ValidationError as exc:
        raise ValidationError(f"{exc}; {hint}") from None
    if resuming:
        try:
            if check is not None:
                check(store)
        except BaseException:
            store.close()
            raise
        logger.info("resuming into %s (%d rows present)", out_s, len(store))
    return store


def run_and_record(
    ex: Any,
    dataset: Any,
    store: Any,
    *,
    started: str,
    command_line: str | None = None,
    **run_kwargs: Any,
) -> ExtractionSummary:
    """Run an extraction into an open store, then record the run in its attributes.

    The dataset's person table (FACET) is merged into the store first; the
    run (command line, start time, summary, or "interrupted or failed") is
    appended to the store's ``runs`` attribute even when the run raises.
    The store is closed on return.

    Parameters
    ----------
    ex : extractor
        Passed to :func:`extractors.pipeline.run_extraction`.
    dataset : ImageDataset or sequence of Record
        Its ``persons`` table, when it has one, is written to the store.
    store : embstore.Store
        Open for appending; closed on return.
    started : str
        ISO time the run started.
    command_line : str, optional
        Recorded with the run.
    **run_kwargs
        ``batch_size``, ``num_workers``, ``retry_skipped``, ``progress``,
        ``flush_interval`` of :func:`~extractors.pipeline.run_extraction`.

    Returns
    -------
    ExtractionSummary
    """
    with store:
        persons = getattr(dataset, "persons", None)
        if persons is not None:
            store.write_table("persons", _merge_persons(store, clean_table(persons)))
        summary: ExtractionSummary | None = None
        try:
            result = summary = run_extraction(ex, dataset, store, **run_kwargs)
        finally:
            runs = list(store.attrs.get("runs", []) or [])
            runs.append(
                {
                    "command_line": command_line or "",
                    "started": started,
                    "summary": summary.to_dict()
                    if summary is not None
                    else "interrupted or failed",
                }
            )
            try:
                store.update_attrs(runs=runs)
            except Exception:
                logger.exception("could not record the run in the store attributes")
    return result


def _merge_persons(store: Any, persons: Any) -> Any:
    """Union of the stored person table and this run's (runs may use other filters)."""
    import pandas as pd

    from embstore.errors import UnknownVariableError

    if "persons" not in (getattr(store, "tables", None) or []):
        return persons
    try:
        old = store.read_table("persons")
    except UnknownVariableError:
        return persons
    if "person_id" not in old.columns or "person_id" not in persons.columns:
        return persons
    merged = pd.concat([old, persons], ignore_index=True)
    return merged.drop_duplicates("person_id", keep="last").reset_index(drop=True)


def format_command(argv: Sequence[str]) -> str:
    """Quote a command line for the store attributes.

    Parameters
    ----------
    argv : sequence of str

    Returns
    -------
    str

    Examples
    --------
    >>> format_command(["embstore", "extract", "detr", "--out", "a b.zarr"])
    "embstore extract detr --out 'a b.zarr'"
    """
    return shlex.join([str(a) for a in argv])
