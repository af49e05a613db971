"""Export to / import from the face pipeline's ``.npy`` layout.

The users' ``01_extract.py`` wrote, and ``02_cluster.py`` reads, one of:

- merged: ``final_embs.npy`` (or ``final_embs_norm.npy`` when the embeddings
  are L2-normalised) ``[N, D]``, ``final_fpaths.npy`` (``[N]`` paths) and
  ``final_indices.npy`` (``[N]`` input-order indices);
- split: ``embs_0.npy`` (or ``embs_norm_0.npy``), ``fpaths_0.npy``,
  ``indices_0.npy``, ``embs_1.npy``, ... each holding consecutive rows.

:func:`export_face_npy` writes the merged layout, or the split one when the
store has more rows than ``split_threshold`` (the old ``--split-threshold``,
default 1,000,000 rows per file), streaming block by block so memory stays
bounded. :func:`import_face_npy` reads either layout (memory-mapped) into a
store with ``row_dim="image"``, ``id_name="index"`` and the coordinate
``path``, i.e. the layout :func:`extractors.face.extract_face` writes.

Paths are saved as a fixed-width unicode array (``<U``), which
``np.load(allow_pickle=False)`` reads. Older files saved as object arrays
need ``allow_pickle=True``: only do that for files you trust, since
unpickling can run code.

Examples
--------
>>> import os
>>> from embstore.legacy.face_npy import export_face_npy, import_face_npy
>>> folder = os.path.join(out_dir, "current")
>>> files = export_face_npy(face_path, folder, path_coord="person")
>>> [os.path.basename(f) for f in files]
['final_embs_norm.npy', 'final_fpaths.npy', 'final_indices.npy']
>>> res = import_face_npy(folder, os.path.join(out_dir, "faces_again.zarr"))
>>> res["rows"], res["normalized"]
(80, True)
"""

from __future__ import annotations

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

__all__ = ["DEFAULT_SPLIT_THRESHOLD", "export_face_npy", "find_face_npy", "import_face_npy"]

logger = logging.getLogger(__name__)

#: Rows per file above which the export is split (the old ``--split-threshold``).
DEFAULT_SPLIT_THRESHOLD = 1_000_000

_SPLIT = re.compile(r"^(embs|embs_norm|fpaths|indices)_(\d+)\.npy$")


def _is_normalized(st: Any, variable: str, sample: np.ndarray) -> bool:
    attrs = st.attrs or {}
    if "l2_norm" in attrs:
        return bool(attrs["l2_norm"])
    if len(sample) == 0:
        return False
    norms = np.linalg.norm(sample.astype(np.float64), axis=1)
    tol = 2e-3 if sample.dtype == np.float16 else 1e-4
    return bool(np.all(np.abs(norms - 1.0) < tol))


def export_face_npy(
    store: Any,
    directory: str | os.PathLike,
    *,
    variable: str = "embedding",
    normalized: bool | None = None,
    split_threshold: int = DEFAULT_SPLIT_THRESHOLD,
    path_coord: str = "path",
    dtype: str = "float32",
    block_rows: int = 65536,
    overwrite: bool = False,
) -> list[str]:
    """Write a face store as ``final_*.npy`` (or split ``embs_0.npy`` ...) files.

    Parameters
    ----------
    store : path or embstore.Store
        Face store (2-D ``variable``; ids = input-order indices).
    directory : path
        Output folder (created).
    variable : str, default "embedding"
        Variable to export.
    normalized : bool, optional
        Name the embeddings ``*_embs_norm*``; default: the store's ``l2_norm``
        attribute, else whether every row has unit norm.
    split_threshold : int, default 1_000_000
        At most this many rows per file; more rows -> split layout.
    path_coord : str, default "path"
        Coordinate holding the file paths (``file_name`` is tried next).
    dtype : str, default "float32"
        dtype of the embeddings files (the old layout was float32).
    block_rows : int, default 65536
        Rows read from the store at a time.
    overwrite : bool, default False
        Replace existing files.

    Returns
    -------
    list of str
        The files written.

    Raises
    ------
    StoreExistsError
        If an output file exists and ``overwrite`` is False.
    ValidationError
        If ``variable`` is not 2-D or ``split_threshold < 1``.
    """
    if int(split_threshold) < 1:
        raise ValidationError(f"split_threshold must be >= 1 row, got {split_threshold!r}")
    st, own = open_store(store)
    try:
        if variable not in st.variables or len(st.variables[variable]) != 1:
            raise ValidationError(
                f"variable {variable!r} is not a 2-D (row, hidden) variable of the store "
                f"(variables: {dict(st.variables)}); pass variable=..."
            )
        arr = st[variable]
        n, dim = int(arr.shape[0]), int(arr.shape[1])
        coords = st.coords
        col = (
            path_coord
            if path_coord in coords.columns
            else ("file_name" if "file_name" in coords.columns else None)
        )
        if col is None:
            raise ValidationError(
                f"the store has no {path_coord!r} coordinate (coordinates: {list(coords.columns)}); "
                "pass path_coord=..."
            )
        paths = coords[col].astype(str).to_numpy()
        indices = np.asarray(coords.index.to_numpy())
        if indices.dtype.kind not in "iu":
            indices = np.arange(n, dtype=np.int64)
            logger.info("store ids are not integers: writing 0..N-1 as final_indices")
        if normalized is None:
            normalized = _is_normalized(st, variable, np.asarray(arr[: min(n, 256)].values))
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        split = n > int(split_threshold)
        parts = range(0, n, int(split_threshold)) if split else [0]
        emb_stem = "embs_norm" if normalized else "embs"
        written: list[str] = []
        for part, start in enumerate(parts):
            stop = min(n, start + int(split_threshold)) if split else n
            if split:
                names = (f"{emb_stem}_{part}.npy", f"fpaths_{part}.npy", f"indices_{part}.npy")
            else:
                names = (f"final_{emb_stem}.npy", "final_fpaths.npy", "final_indices.npy")
            for name in names:
                if (out / name).exists() and not overwrite:
                    raise StoreExistsError(
                        f"{out / name} exists; pass overwrite=True (--overwrite) to replace it"
                    )
            emb = np.lib.format.open_memmap(
                out / names[0], mode="w+", dtype=np.dtype(dtype), shape=(stop - start, dim)
            )
            for b in range(start, stop, int(block_rows)):
                e = min(stop, b + int(block_rows))
                emb[b - start : e - start] = np.asarray(arr[b:e].values)
            emb.flush()
            del emb
            np.save(out / names[1], paths[start:stop].astype(str), allow_pickle=False)
            np.save(out / names[2], indices[start:stop].astype(np.int64), allow_pickle=False)
            written.extend(str(out / nm) for nm in names)
    finally:
        if own:
            st.close()
    return written


def find_face_npy(directory: str | os.PathLike) -> list[tuple[Path, Path | None, Path | None]]:
    """Find the ``(embs, fpaths, indices)`` file triples of a face output folder.

    Parameters
    ----------
    directory : path
        Folder with the merged or split layout.

    Returns
    -------
    list of tuple
        One ``(embeddings, fpaths or None, indices or None)`` per part, in order.

    Raises
    ------
    DatasetError
        If neither layout is present, or both normalised and raw embeddings are.
    """
    d = Path(directory)
    if not d.is_dir():
        raise DatasetError(f"face npy folder {os.fspath(directory)!r} does not exist")

    def opt(name: str) -> Path | None:
        return d / name if (d / name).is_file() else None

    merged = [p for p in ("final_embs.npy", "final_embs_norm.npy") if (d / p).is_file()]
    if len(merged) == 2:
        raise DatasetError(
            f"{d} holds both final_embs.npy and final_embs_norm.npy; move one away to choose"
        )
    if merged:
        return [(d / merged[0], opt("final_fpaths.npy"), opt("final_indices.npy"))]
    parts: dict[int, dict[str, Path]] = {}
    for name in os.listdir(d):
        m = _SPLIT.match(name)
        if m:
            parts.setdefault(int(m.group(2)), {})[m.group(1)] = d / name
    if not parts:
        raise DatasetError(
            f"{d} has no final_embs.npy / final_embs_norm.npy and no embs_0.npy ... files; "
            "point at the folder 01_extract.py wrote (--output)"
        )
    out = []
    for i in sorted(parts):
        p = parts[i]
        if "embs" in p and "embs_norm" in p:
            raise DatasetError(f"{d} holds both embs_{i}.npy and embs_norm_{i}.npy; move one away")
        emb = p.get("embs") or p.get("embs_norm")
        if emb is None:
            raise DatasetError(f"{d}: part {i} has fpaths/indices but no embs_{i}.npy")
        out.append((emb, p.get("fpaths"), p.get("indices")))
    if sorted(parts) != list(range(len(parts))):
        raise DatasetError(f"{d}: split parts {sorted(parts)} are not numbered 0..{len(parts) - 1}")
    return out


def _load(path: Path, allow_pickle: bool, mmap: bool = False) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=allow_pickle, mmap_mode="r" if mmap else None)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DatasetError(
                f"{path} is an object (pickled) array; re-run with allow_pickle=True "
                "(--allow-pickle) only if you trust the file, since unpickling can run code"
            ) from exc
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc


def import_face_npy(
    directory: str | os.PathLike,
    store: Any,
    *,
    dtype: str | None = None,
    allow_pickle: bool = False,
    block_rows: int = 65536,
    chunk_rows: int | None = None,
    overwrite: bool = False,
    attrs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Import a face ``.npy`` folder (merged or split) into a store.

    Parameters
    ----------
    directory : path
        Folder (see :func:`find_face_npy`).
    store : path or embstore.Store
        Target (a path is created with ``row_dim="image"``, ``id_name="index"``,
        variable ``embedding`` ``("hidden",)`` and coordinate ``path``).
    dtype : str, optional
        Storage dtype (default: the files' dtype, i.e. lossless).
    allow_pickle : bool, default False
        Allow object-array path files (see the module docstring).
    block_rows : int, default 65536
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
        ``rows``, ``parts``, ``normalized``, ``nonfinite`` (list of
        ``(file, rows)``: rows holding NaN/Inf values, imported as they are),
        ``seconds``.

    Raises
    ------
    DatasetError
        Missing/inconsistent files (lengths differ, not 2-D).
    """

    t0 = time.perf_counter()
    parts = find_face_npy(directory)
    normalized = "norm" in parts[0][0].name
    first = _load(parts[0][0], False, mmap=True)
    if first.ndim != 2:
        raise DatasetError(f"{parts[0][0]} has shape {first.shape}; expected [N, D] embeddings")
    dim = int(first.shape[1])
    store_dtype = str(np.dtype(dtype)) if dtype is not None else str(first.dtype)
    own = isinstance(store, (str, os.PathLike))
    st = vector_store(
        store,
        directory,
        source="legacy face npy",
        row_dim="image",
        id_name="index",
        dtype=store_dtype,
        chunk_rows=chunk_rows,
        overwrite=overwrite,
        attrs={"l2_norm": bool(normalized), **dict(attrs or {})},
    )
    rows = 0
    nonfinite: list[tuple[str, int]] = []
    try:
        offset = 0
        for emb_path, fp_path, ix_path in parts:
            emb = _load(emb_path, False, mmap=True)
            if emb.ndim != 2 or emb.shape[1] != dim:
                raise DatasetError(f"{emb_path} has shape {emb.shape}; expected [N, {dim}]")
            n = int(emb.shape[0])
            fpaths = _load(fp_path, allow_pickle) if fp_path is not None else None
            indices = _load(ix_path, allow_pickle) if ix_path is not None else None
            if fpaths is None:
                logger.warning("%s: no paths file; the 'path' coordinate is left empty", emb_path)
                fpaths = np.array([""] * n)
            if indices is None:
                indices = np.arange(offset, offset + n, dtype=np.int64)
            fpaths = np.asarray(fpaths).reshape(-1)
            indices = np.asarray(indices).reshape(-1).astype(np.int64)
            if len(fpaths) != n or len(indices) != n:
                raise DatasetError(
                    f"{emb_path} has {n} rows but its paths/indices files have "
                    f"{len(fpaths)}/{len(indices)}; the files do not belong together"
                )
            bad_rows = 0
            for b in range(0, n, int(block_rows)):
                e = min(n, b + int(block_rows))
                block = np.asarray(emb[b:e])
                if count_nonfinite(block):
                    bad_rows += int(np.count_nonzero(~np.isfinite(block).all(axis=1)))
                st.append(
                    indices[b:e],
                    {"embedding": block},
                    coords={"path": fpaths[b:e].astype(str)},
                    allow_nonfinite=True,
                )
                rows += e - b
            if bad_rows:
                nonfinite.append((str(emb_path), bad_rows))
                logger.warning(
                    "%s: %d of %d rows hold NaN/Inf values (imported as they are)",
                    emb_path,
                    bad_rows,
                    n,
                )
            offset += n
        st.flush()
    finally:
        if own:
            st.close()
    return {
        "rows": rows,
        "parts": len(parts),
        "normalized": normalized,
        "nonfinite": nonfinite,
        "seconds": time.perf_counter() - t0,
    }
