"""Export to / import from the SigLIP visual-embedding cache layout.

The users' ``build_vis_cache.py`` wrote, per COCO-panoptic segment, one file
``<image_id>_<segment_id>.npy`` (float16 ``[D]``, L2-normalised; the image id
zero-padded to 12 digits, e.g. ``000000397133_15466.npy``) and an index
``inst2feat.tsv``::

    image_id	segment_id	feat_file
    000000397133	15466	000000397133_15466.npy

Stores use ``row_dim="instance"`` with the int64 id
``instance_id = image_id * 2**24 + segment_id`` (the same rule as
:func:`extractors.siglip.panoptic.instance_id`) and the coordinates
``image_id`` and ``segment_id``.

Examples
--------
Write a two-segment cache, import it into a store and export it back:

>>> import os
>>> import numpy as np
>>> cache = os.path.join(out_dir, "vis_embed")
>>> os.mkdir(cache)
>>> rows = ["image_id\\tsegment_id\\tfeat_file"]
>>> for image_id, segment_id in [(397133, 15466), (42, 1)]:
...     name = f"{image_id:012d}_{segment_id}.npy"
...     np.save(os.path.join(cache, name), np.full(4, 0.5, dtype=np.float16))
...     rows.append(f"{image_id:012d}\\t{segment_id}\\t{name}")
>>> _ = open(os.path.join(cache, "inst2feat.tsv"), "w").write("\\n".join(rows) + "\\n")
>>> res = import_siglip_cache(cache, os.path.join(out_dir, "siglip.zarr"))
>>> res["rows"], res["missing"], res["unreadable"]
(2, [], [])
>>> export_siglip_cache(os.path.join(out_dir, "siglip.zarr"), os.path.join(out_dir, "back"))
2
"""

from __future__ import annotations

import csv
import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError, StoreExistsError, ValidationError
from ._finite import count_nonfinite
from ._target import open_store, vector_store

__all__ = ["TSV_HEADER", "TSV_NAME", "cache_filename", "export_siglip_cache", "import_siglip_cache"]

logger = logging.getLogger(__name__)

TSV_NAME = "inst2feat.tsv"
TSV_HEADER = ("image_id", "segment_id", "feat_file")
_SEGMENT_RANGE = 1 << 24
_MAX_IMAGE_ID = 1 << 39
_FILE = re.compile(r"^(\d+)_(\d+)\.npy$")


def cache_filename(image_id: int, segment_id: int) -> str:
    """Cache file name of a segment: ``{image_id:012d}_{segment_id}.npy``.

    Parameters
    ----------
    image_id, segment_id : int
        Ids.

    Returns
    -------
    str

    Examples
    --------
    >>> cache_filename(397133, 15466)
    '000000397133_15466.npy'
    """
    return f"{int(image_id):012d}_{int(segment_id)}.npy"


def export_siglip_cache(
    store: Any,
    directory: str | os.PathLike,
    *,
    variable: str = "embedding",
    dtype: str = "float16",
    overwrite: bool = False,
    block_rows: int = 4096,
) -> int:
    """Write an instance store as ``<image_id>_<segment_id>.npy`` files plus ``inst2feat.tsv``.

    Parameters
    ----------
    store : path or embstore.Store
        Store with ``image_id`` and ``segment_id`` coordinates.
    directory : path
        Output folder (created).
    variable : str, default "embedding"
        2-D variable to write.
    dtype : str, default "float16"
        dtype of the files (the cache was fp16).
    overwrite : bool, default False
        Replace existing files.
    block_rows : int, default 4096
        Rows read at a time.

    Returns
    -------
    int
        Number of ``.npy`` files written.

    Raises
    ------
    ValidationError
        If the store lacks the coordinates or the variable.
    StoreExistsError
        If a file exists and ``overwrite`` is False.
    """

    st, own = open_store(store)
    try:
        if variable not in st.variables:
            raise ValidationError(
                f"variable {variable!r} not in the store ({list(st.variables)}); pass variable=..."
            )
        coords = st.coords
        for c in ("image_id", "segment_id"):
            if c not in coords.columns:
                raise ValidationError(
                    f"the store has no {c!r} coordinate (coordinates: {list(coords.columns)}); "
                    "export needs an instance store from `embstore extract siglip`"
                )
        img = coords["image_id"].to_numpy().astype(np.int64)
        seg = coords["segment_id"].to_numpy().astype(np.int64)
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tsv = out / TSV_NAME
        if tsv.exists() and not overwrite:
            raise StoreExistsError(
                f"{tsv} exists; pass overwrite=True (--overwrite) to replace the cache"
            )
        arr = st[variable]
        n = int(arr.shape[0])
        names = [cache_filename(i, s) for i, s in zip(img, seg)]
        for b in range(0, n, int(block_rows)):
            e = min(n, b + int(block_rows))
            block = np.asarray(arr[b:e].values).astype(dtype)
            for j in range(e - b):
                path = out / names[b + j]
                if path.exists() and not overwrite:
                    raise StoreExistsError(
                        f"{path} exists; pass overwrite=True (--overwrite) to replace it"
                    )
                np.save(path, block[j], allow_pickle=False)
        with open(tsv, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(TSV_HEADER)
            for i, s, name in zip(img, seg, names):
                w.writerow((f"{int(i):012d}", int(s), name))
    finally:
        if own:
            st.close()
    return n


def _read_index(d: Path) -> list[tuple[int, int, str]]:
    tsv = d / TSV_NAME
    if tsv.is_file():
        rows = []
        with open(tsv, encoding="utf-8", newline="") as f:
            reader = csv.reader(f, delimiter="\t")
            header = next(reader, None)
            if header is None or [h.strip() for h in header[:3]] != list(TSV_HEADER):
                raise DatasetError(
                    f"{tsv} must start with the header {'<TAB>'.join(TSV_HEADER)}, got {header!r}"
                )
            for lineno, rec in enumerate(reader, start=2):
                if not rec or not "".join(rec).strip():
                    continue
                try:
                    rows.append((int(rec[0]), int(rec[1]), rec[2].strip()))
                except (ValueError, IndexError) as exc:
                    raise DatasetError(
                        f"{tsv}, line {lineno}: cannot parse {rec!r} ({exc})"
                    ) from exc
        return rows
    rows = []
    for name in sorted(os.listdir(d)):
        m = _FILE.match(name)
        if m:
            rows.append((int(m.group(1)), int(m.group(2)), name))
    if not rows:
        raise DatasetError(
            f"{d} has no {TSV_NAME} and no <image_id>_<segment_id>.npy files; point at the cache "
            "folder (e.g. cache/vis_embed)"
        )
    logger.warning("%s has no %s: importing %d files by their names", d, TSV_NAME, len(rows))
    return rows


def import_siglip_cache(
    directory: str | os.PathLike,
    store: Any,
    *,
    dtype: str | None = None,
    block_rows: int = 4096,
    chunk_rows: int | None = None,
    overwrite: bool = False,
    attrs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Import a SigLIP cache folder into an instance store.

    Missing or unreadable ``.npy`` files (and files whose shape differs from
    the first one) are counted, listed and recorded with
    :meth:`embstore.Store.record_skipped`; they do not stop the import.

    Parameters
    ----------
    directory : path
        Cache folder with ``inst2feat.tsv`` (or just the ``.npy`` files).
    store : path or embstore.Store
        Target (a path is created with ``row_dim="instance"``,
        ``id_name="instance_id"``, variable ``embedding`` ``("hidden",)``).
    dtype : str, optional
        Storage dtype (default: the files' dtype, float16).
    block_rows : int, default 4096
        Rows appended per call.
    chunk_rows : int, optional
        Passed to :meth:`embstore.Store.create`.
    overwrite : bool, default False
        Replace an existing store.
    attrs : mapping, optional
        Extra store attributes.

    Returns
    -------
    dict
        ``rows``, ``missing`` (list of paths), ``unreadable`` (list of
        ``(path, reason)``), ``nonfinite`` (list of ``(path, count)`` for
        imported files holding NaN/Inf values), ``seconds``.

    Raises
    ------
    DatasetError
        If the index is malformed or no file can be read.
    ValidationError
        If an id pair cannot form an int64 instance id (``image_id >= 2**39``).
    """

    t0 = time.perf_counter()
    d = Path(directory)
    if not d.is_dir():
        raise DatasetError(f"cache folder {os.fspath(directory)!r} does not exist")
    index = _read_index(d)
    missing: list[str] = []
    unreadable: list[tuple[str, str]] = []
    nonfinite: list[tuple[str, int]] = []
    skipped_ids: list[int] = []
    skipped_reasons: list[str] = []
    st: Any = None
    own = isinstance(store, (str, os.PathLike))
    dim = None
    rows = 0
    buf_ids: list[int] = []
    buf_vecs: list[np.ndarray] = []
    buf_img: list[int] = []
    buf_seg: list[int] = []

    def flush() -> None:
        nonlocal rows
        if buf_ids:
            st.append(
                np.asarray(buf_ids, dtype=np.int64),
                {"embedding": np.stack(buf_vecs)},
                coords={
                    "image_id": np.asarray(buf_img, dtype=np.int64),
                    "segment_id": np.asarray(buf_seg, dtype=np.int64),
                },
                allow_nonfinite=True,
            )
            rows += len(buf_ids)
            buf_ids.clear()
            buf_vecs.clear()
            buf_img.clear()
            buf_seg.clear()

    try:
        for image_id, segment_id, name in index:
            if not (0 <= image_id < _MAX_IMAGE_ID and 0 <= segment_id < _SEGMENT_RANGE):
                raise ValidationError(
                    f"{d / TSV_NAME}: image_id {image_id} / segment_id {segment_id} cannot form an int64 "
                    f"instance id (need 0 <= image_id < 2**39 and 0 <= segment_id < 2**24); "
                    "renumber the images"
                )
            iid = image_id * _SEGMENT_RANGE + segment_id
            path = d / name
            if not path.is_file():
                missing.append(str(path))
                skipped_ids.append(iid)
                skipped_reasons.append(f"missing file: {path}")
                continue
            try:
                vec = np.load(path, allow_pickle=False)
                if vec.ndim == 2 and vec.shape[0] == 1:
                    vec = vec[0]
                if vec.ndim != 1 or (dim is not None and vec.shape[0] != dim):
                    raise ValueError(f"shape {vec.shape}, expected ({dim or 'D'},)")
            except (ValueError, OSError, EOFError) as exc:
                unreadable.append((str(path), str(exc)))
                skipped_ids.append(iid)
                skipped_reasons.append(f"unreadable: {path}: {exc}")
                continue
            if st is None:
                dim = int(vec.shape[0])
                store_dtype = str(np.dtype(dtype)) if dtype is not None else str(vec.dtype)
                st = vector_store(
                    store,
                    directory,
                    source="legacy siglip cache",
                    row_dim="instance",
                    id_name="instance_id",
                    dtype=store_dtype,
                    chunk_rows=chunk_rows,
                    overwrite=overwrite,
                    attrs={"instance_id": "image_id * 2**24 + segment_id", **dict(attrs or {})},
                )
            bad = count_nonfinite(vec)
            if bad:
                nonfinite.append((str(path), bad))
            buf_ids.append(iid)
            buf_vecs.append(vec)
            buf_img.append(image_id)
            buf_seg.append(segment_id)
            if len(buf_ids) >= block_rows:
                flush()
        if st is None:
            raise DatasetError(
                f"none of the {len(index)} cache files in {d} could be read "
                f"({len(missing)} missing, {len(unreadable)} unreadable)"
            )
        flush()
        if skipped_ids:
            st.record_skipped(skipped_ids, skipped_reasons)
        st.flush()
    finally:
        if own and st is not None:
            st.close()
    for p, r in unreadable:
        logger.warning("not imported: %s (%s)", p, r)
    if nonfinite:
        logger.warning(
            "%d imported files hold NaN/Inf values, e.g. %s (%d values)",
            len(nonfinite),
            nonfinite[0][0],
            nonfinite[0][1],
        )
    return {
        "rows": rows,
        "missing": missing,
        "unreadable": unreadable,
        "nonfinite": nonfinite,
        "seconds": time.perf_counter() - t0,
    }
