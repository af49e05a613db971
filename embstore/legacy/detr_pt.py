"""Import (and export) DETR per-image ``.pt`` directories.

The old extractor wrote one ``embedding_{image_id:012d}.pt`` per image (a dict
of tensors) plus ``metadata.json`` (``image_ids``, ``num_images``,
``extract_type``, ``embedding_keys``). :func:`import_detr_dir` turns such a
directory into one store with the same variables:

=====================  ============================  ======
key                    store dims (after ``image``)  kind
=====================  ============================  ======
``query_embeddings``   ``query, hidden``             dense
``decoder_output``     ``layer, query, hidden``      dense
``pred_logits``        ``query, class``              dense
``pred_boxes``         ``query, box``                dense
``encoder_output``     ``token, hidden``             ragged
``backbone_features``  ``channel, y, x``             ragged
other keys             ``<key>_dim0, ...``           dense
=====================  ============================  ======

Ragged variables are stored without padding; when ``backbone_features`` is in
the same file, its ``(h, w)`` is recorded as the grid of ``encoder_output``.
Ids come from ``metadata.json`` (or, without it, from the file names).

Safety: every file is read with ``torch.load(..., weights_only=True)``, which
refuses pickles that would run code. Such files, files that are missing or
unreadable, and files whose shapes disagree with the first good file are
**counted and listed, not fatal**: see :class:`ImportReport` (they are also
recorded with :meth:`embstore.Store.record_skipped`).

Examples
--------
Export an example store to the old layout, then import it back:

>>> import os
>>> from embstore.legacy.detr_pt import export_detr_dir, import_detr_dir
>>> old = os.path.join(out_dir, "embeddings_output")
>>> export_detr_dir(demo_path, old, variables=["query_embeddings", "pred_boxes"], ids=range(8))
8
>>> rep = import_detr_dir(old, os.path.join(out_dir, "facet.zarr"))
>>> print(rep)  # doctest: +ELLIPSIS
imported 8 of 8 files (0 unreadable, 0 missing) in ... s (... files/s)
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._optional import attempt_import
from ..errors import DatasetError, StoreExistsError, ValidationError
from ._finite import count_nonfinite
from .pt_format import KNOWN_DIMS, RAGGED_KEYS, load_pt, pt_filename, read_metadata

__all__ = [
    "KNOWN_DIMS",
    "RAGGED_KEYS",
    "ImportReport",
    "export_detr_dir",
    "import_detr_dir",
    "load_pt",
    "pt_filename",
    "read_metadata",
]

logger = logging.getLogger(__name__)


@dataclass
class ImportReport:
    """What an import did.

    Attributes
    ----------
    imported : int
        Rows written in this run.
    already_present : int
        Ids the store already had (resumed import).
    missing : list of (id, str)
        Ids from the metadata whose file does not exist, with the expected path.
    unreadable : list of (str, str)
        ``(file, reason)`` for files that could not be loaded safely or did
        not match the schema.
    seconds : float
        Wall time.
    store : str or None
        The store path.
    nonfinite : list of (str, int)
        ``(file, count)`` for imported files holding NaN/Inf values (they are
        imported as they are, and reported here and in the log).
    """

    imported: int = 0
    already_present: int = 0
    missing: list[tuple[Any, str]] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    store: str | None = None
    nonfinite: list[tuple[str, int]] = field(default_factory=list)

    @property
    def files_per_s(self) -> float:
        """Rows imported per second."""
        return self.imported / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-serialisable).

        Returns
        -------
        dict
        """
        return {
            "imported": self.imported,
            "already_present": self.already_present,
            "missing": [[_jsonable(i), p] for i, p in self.missing],
            "unreadable": [list(u) for u in self.unreadable],
            "seconds": self.seconds,
            "files_per_s": self.files_per_s,
            "store": self.store,
            "nonfinite": [list(u) for u in self.nonfinite],
        }

    def __str__(self) -> str:
        total = self.imported + len(self.unreadable) + len(self.missing)
        return (
            f"imported {self.imported} of {total} files ({len(self.unreadable)} unreadable, "
            f"{len(self.missing)} missing"
            + (f", {self.already_present} already in the store" if self.already_present else "")
            + (f", {len(self.nonfinite)} with NaN/Inf values" if self.nonfinite else "")
            + f") in {self.seconds:.1f} s ({self.files_per_s:.1f} files/s)"
        )


def _jsonable(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _schema(sample: Mapping[str, np.ndarray], keys: Sequence[str]) -> tuple[dict, dict, dict]:
    dense: dict[str, tuple[str, ...]] = {}
    ragged: dict[str, tuple[str, ...]] = {}
    dtypes: dict[str, str] = {}
    for key in keys:
        arr = sample[key]
        dims = KNOWN_DIMS.get(key) or tuple(f"{key}_dim{i}" for i in range(arr.ndim))
        if len(dims) != arr.ndim:
            dims = tuple(f"{key}_dim{i}" for i in range(arr.ndim))
        (ragged if key in RAGGED_KEYS else dense)[key] = dims
        dtypes[key] = str(arr.dtype)
    return dense, ragged, dtypes


def import_detr_dir(
    directory: str | os.PathLike,
    store: Any,
    *,
    variables: Sequence[str] | None = None,
    dtypes: Mapping[str, str] | None = None,
    batch_rows: int = 16,
    chunk_rows: int | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> ImportReport:
    """Import a DETR per-image ``.pt`` directory into one store.

    Parameters
    ----------
    directory : path
        Folder with ``metadata.json`` and ``embedding_{id:012d}.pt`` files.
    store : path or embstore.Store
        Target. A path is created (``row_dim="image"``, ``id_name="image_id"``);
        an existing store at that path is resumed (ids it has are skipped)
        unless ``overwrite``.
    variables : sequence of str, optional
        Keys to import (default: every tensor key of the first readable file).
    dtypes : mapping, optional
        Storage dtype per variable. Default: the files' own dtype (float32),
        so values are kept exactly; pass e.g. ``{"encoder_output": "float16"}``
        to halve the size.
    batch_rows : int, default 16
        Files appended per :meth:`embstore.Store.append` call.
    chunk_rows : int, optional
        Passed to :meth:`embstore.Store.create`.
    overwrite : bool, default False
        Replace an existing store.
    progress : bool, optional
        tqdm bar (default: only on a TTY).
    storage_options : mapping, optional
        fsspec options for remote stores.

    Returns
    -------
    ImportReport
        Counts and lists of missing/unreadable files.

    Raises
    ------
    DatasetError
        If the directory has no metadata and no ``.pt`` files, or no file at
        all could be read.
    ValidationError
        If a requested variable is in none of the files.
    """
    from tqdm.auto import tqdm

    from ..store import Store

    t0 = time.perf_counter()
    d = Path(directory)
    meta = read_metadata(d)
    ids = meta["image_ids"]
    report = ImportReport(store=os.fspath(store) if isinstance(store, (str, os.PathLike)) else None)

    # first readable file defines the schema
    sample = None
    bad_first: set[int] = set()
    for pos, iid in enumerate(ids):
        path = d / pt_filename(iid)
        if not path.is_file():
            continue
        try:
            sample = load_pt(path)
            break
        except ValidationError as exc:
            report.unreadable.append((str(path), str(exc)))
            bad_first.add(pos)
    if sample is None:
        raise DatasetError(
            f"none of the {len(ids)} files listed for {os.fspath(directory)!r} could be read "
            f"({len(report.unreadable)} unreadable, the rest missing); nothing to import"
        )
    keys = list(variables) if variables is not None else list(sample)
    unknown = [k for k in keys if k not in sample]
    if unknown:
        raise ValidationError(
            f"variables {unknown} are not in {d}/{'embedding_*.pt'} (keys: {sorted(sample)}); "
            "pass a subset of those keys"
        )
    dense, ragged, file_dtypes = _schema(sample, keys)
    store_dtypes = {**file_dtypes, **dict(dtypes or {})}

    own = isinstance(store, (str, os.PathLike))
    fs_options = dict(storage_options) if storage_options is not None else None
    if own:
        attrs = {
            "source": "legacy DETR .pt directory",
            "legacy_dir": os.fspath(directory),
            "legacy_metadata": {k: v for k, v in meta.items() if k != "image_ids"},
            "extract_type": meta.get("extract_type", "custom"),
            "extract_variables": list(keys),
        }
        try:
            st = Store.create(
                store,
                row_dim="image",
                id_name="image_id",
                variables=dense,
                ragged=ragged,
                dtypes=store_dtypes,
                chunk_rows=chunk_rows,
                overwrite=overwrite,
                attrs=attrs,
                storage_options=fs_options,
            )
        except StoreExistsError:
            st = Store.open(store, mode="a", storage_options=fs_options)
            logger.info("store %s exists: resuming the import", store)
    else:
        st = store
    try:
        todo_ids = ids
        if len(st):
            todo = set(st.missing(list(ids)))
            todo_ids = [i for i in ids if i in todo]
            report.already_present = len(ids) - len(todo_ids)
        show = sys.stderr.isatty() if progress is None else bool(progress)
        bar = tqdm(total=len(todo_ids), unit="file", desc="import", disable=not show)
        rows: list[tuple[Any, dict[str, np.ndarray]]] = []
        already_bad = {p for p, _ in report.unreadable}
        skipped_ids: list[Any] = []
        skipped_reasons: list[str] = []

        # appends run on one background thread so that reading the next files
        # overlaps with encoding/writing the previous block (at most 2 blocks queued)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embstore-import")
        pending: list[Future] = []

        def append_block(block: list[tuple[Any, dict[str, np.ndarray]]]) -> int:
            row_ids = [r[0] for r in block]
            data: dict[str, Any] = {}
            for k in dense:
                data[k] = np.stack([r[1][k] for r in block])
            hw: dict[str, list[tuple[int, int]]] = {}
            for k in ragged:
                data[k] = [r[1][k] for r in block]
            if "encoder_output" in ragged and all("backbone_features" in r[1] for r in block):
                grids = [
                    (
                        int(r[1]["backbone_features"].shape[-2]),
                        int(r[1]["backbone_features"].shape[-1]),
                    )
                    for r in block
                ]
                if all(
                    g[0] * g[1] == r[1]["encoder_output"].shape[0] for g, r in zip(grids, block)
                ):
                    hw["encoder_output"] = grids
            st.append(np.asarray(row_ids), data, ragged_hw=hw or None, allow_nonfinite=True)
            return len(block)

        def write_rows(wait: bool = False) -> None:
            if rows:
                pending.append(pool.submit(append_block, list(rows)))
                rows.clear()
            while pending and (wait or len(pending) > 2):
                report.imported += pending.pop(0).result()

        for iid in todo_ids:
            path = d / pt_filename(iid)
            bar.update(1)
            if str(path) in already_bad:
                skipped_ids.append(iid)
                skipped_reasons.append(f"unreadable: {path}")
                continue
            if not path.is_file():
                report.missing.append((iid, str(path)))
                skipped_ids.append(iid)
                skipped_reasons.append(f"missing file: {path}")
                continue
            try:
                arrays = load_pt(path)
                reason = _check_row(arrays, keys, dense, ragged, sample)
            except ValidationError as exc:
                reason = str(exc)
            if reason is not None:
                report.unreadable.append((str(path), reason))
                skipped_ids.append(iid)
                skipped_reasons.append(f"unreadable: {reason}")
                continue
            bad = count_nonfinite(arrays[k] for k in keys)
            if bad:
                report.nonfinite.append((str(path), bad))
            rows.append((iid, {k: arrays[k] for k in keys}))
            if len(rows) >= batch_rows:
                write_rows()
        try:
            write_rows(wait=True)
        finally:
            for fut in pending:  # an error above: let queued appends finish before closing
                fut.exception()
            pool.shutdown(wait=True)
        bar.close()
        if skipped_ids:
            st.record_skipped(skipped_ids, skipped_reasons)
        st.flush()
    finally:
        if own:
            st.close()
    report.seconds = time.perf_counter() - t0
    for bad_path, reason in report.unreadable:
        logger.warning("not imported: %s (%s)", bad_path, reason)
    if report.nonfinite:
        logger.warning(
            "%d imported files hold NaN/Inf values, e.g. %s (%d values)",
            len(report.nonfinite),
            report.nonfinite[0][0],
            report.nonfinite[0][1],
        )
    if report.missing:
        logger.warning(
            "%d listed files are missing, e.g. %s", len(report.missing), report.missing[0][1]
        )
    return report


def _check_row(
    arrays: Mapping[str, np.ndarray],
    keys: Sequence[str],
    dense: Mapping[str, Any],
    ragged: Mapping[str, Any],
    sample: Mapping[str, np.ndarray],
) -> str | None:
    for k in keys:
        if k not in arrays:
            return f"key {k!r} is missing (keys: {sorted(arrays)})"
        if k in dense and arrays[k].shape != sample[k].shape:
            return f"{k} has shape {arrays[k].shape}, the first file had {sample[k].shape}"
        if k in ragged and arrays[k].ndim != sample[k].ndim:
            return f"{k} has {arrays[k].ndim} dims, the first file had {sample[k].ndim}"
        if k in ragged and arrays[k].shape[1:] != sample[k].shape[1:] and k == "encoder_output":
            return f"{k} has shape {arrays[k].shape}, hidden size differs from {sample[k].shape}"
        if k == "backbone_features" and arrays[k].shape[0] != sample[k].shape[0]:
            return f"{k} has {arrays[k].shape[0]} channels, the first file had {sample[k].shape[0]}"
    return None


def export_detr_dir(
    store: Any,
    directory: str | os.PathLike,
    *,
    variables: Sequence[str] | None = None,
    ids: Sequence[Any] | None = None,
    dtype: str | None = "float32",
    extract_type: str | None = None,
    overwrite: bool = False,
) -> int:
    """Write a store back as per-image ``.pt`` files plus ``metadata.json``.

    For tools that still read the old layout. Files are written with
    ``torch.save`` as dicts of tensors (ragged variables unpadded).

    Parameters
    ----------
    store : path or embstore.Store
        Source store (``row_dim="image"``).
    directory : path
        Output folder (created).
    variables : sequence of str, optional
        Variables to write (default: all dense and ragged ones).
    ids : sequence, optional
        Rows to write (default: all, in commit order).
    dtype : str or None, default "float32"
        Tensor dtype in the files (the old layout was float32); ``None``
        keeps the store's dtype.
    extract_type : str, optional
        ``extract_type`` for the metadata (default: the store's
        ``legacy_metadata`` attribute, else ``"custom"``).
    overwrite : bool, default False
        Overwrite existing files.

    Returns
    -------
    int
        Number of files written.

    Raises
    ------
    StoreExistsError
        If a target file exists and ``overwrite`` is False.
    """
    torch = attempt_import("torch")
    from ..store import Store

    own = isinstance(store, (str, os.PathLike))
    st = Store.open(store, mode="r") if own else store
    try:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        names = (
            list(variables)
            if variables is not None
            else list(st.variables) + list(st.ragged_variables)
        )
        row_ids = list(st.ids) if ids is None else list(ids)
        legacy = dict(st.attrs.get("legacy_metadata", {}) or {})
        import pandas as pd

        id_index = pd.Index(st.ids)
        pos_all = id_index.get_indexer(row_ids)
        if (pos_all < 0).any():
            bad = [row_ids[i] for i in np.flatnonzero(pos_all < 0)[:5]]
            raise ValidationError(f"ids {bad} are not in the store; pass ids from store.ids")
        n = 0
        for start in range(0, len(row_ids), 256):
            block = row_ids[start : start + 256]
            pos = pos_all[start : start + 256]
            dense = {
                v: np.asarray(st[v].isel({st.row_dim: pos}).values)
                for v in names
                if v in st.variables
            }
            for j, iid in enumerate(block):
                iid = _jsonable(iid)
                path = out / pt_filename(iid)
                if path.exists() and not overwrite:
                    raise StoreExistsError(
                        f"{path} exists; pass overwrite=True (--overwrite) to replace it"
                    )
                entry = {}
                for v in names:
                    arr = dense[v][j] if v in dense else st.get_ragged(v, iid)
                    arr = np.asarray(arr)
                    if dtype is not None:
                        arr = arr.astype(dtype)
                    entry[v] = torch.from_numpy(np.ascontiguousarray(arr))
                torch.save(entry, path)
                n += 1
        meta = {
            "image_ids": [_jsonable(i) for i in row_ids],
            "num_images": len(row_ids),
            "extract_type": extract_type
            or legacy.get("extract_type")
            or st.attrs.get("extract_type")
            or "custom",
            "embedding_keys": names,
        }
        (out / "metadata.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    finally:
        if own:
            st.close()
    return n
