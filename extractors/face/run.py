"""``extract_face``: a folder or image list through a face model into a store (resumable).

The Python form of ``embstore extract face``; it runs
:func:`extractors.pipeline.run_extraction` with a
:class:`~extractors.face.FaceExtractor`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..summary import ExtractionSummary

if TYPE_CHECKING:  # pragma: no cover
    from .extractor import FaceExtractor

__all__ = ["extract_face"]


def extract_face(
    weights: str | os.PathLike,
    input: str | os.PathLike,
    out: Any,
    arch: str = "r50",
    *,
    l2_norm: bool = False,
    pre_fc: bool = False,
    batch_size: int = 1024,
    num_workers: int = 8,
    device: str = "auto",
    num_features: int = 512,
    dtype: str = "float16",
    autocast: str | None = None,
    limit: int | None = None,
    progress: bool | None = None,
    extractor: FaceExtractor | None = None,
    overwrite: bool = False,
    retry_skipped: bool = False,
) -> ExtractionSummary:
    """Extract face embeddings of a folder or image list into a store (resumable).

    The Python form of ``embstore extract face``. The store has
    ``row_dim="image"``, ``id_name="index"`` (input order), the coordinate
    ``path`` (plus ``width``/``height`` of the decoded image), variable
    ``embedding`` (``[N, 512]``) and, with ``pre_fc``, ``pre_fc_features``.
    Re-running on an existing store extracts only the missing rows.

    Parameters
    ----------
    weights : path
        iresnet ``.pth`` (ignored when ``extractor`` is given).
    input : path
        Folder or text file (see :func:`face_dataset`).
    out : path or embstore.Store
        Output store.
    arch : str, default "r50"
        ``r18``/``r34``/``r50``/``r100``/``r200``.
    l2_norm : bool, default False
        Store L2-normalised embeddings.
    pre_fc : bool, default False
        Also store the 25088-d ``pre_fc_features``.
    batch_size : int, default 1024
        Images per forward pass.
    num_workers : int, default 8
        DataLoader workers.
    device : str, default "auto"
        Every GPU when present, else the CPU.
    num_features : int, default 512
        Embedding size of the checkpoint.
    dtype : str, default "float16"
        Storage dtype.
    autocast : {None, "fp16", "bf16"}, optional
        Mixed precision.
    limit : int, optional
        Only the first ``limit`` images.
    progress : bool, optional
        Progress bar (default: on a TTY only).
    extractor : FaceExtractor, optional
        Use this extractor instead of loading ``weights``.
    overwrite : bool, default False
        Replace an existing store at ``out`` instead of resuming it.
    retry_skipped : bool, default False
        Retry images an earlier run recorded as skipped (unreadable).

    Returns
    -------
    extractors.pipeline.ExtractionSummary
        Rows written, skipped, already done, images/s.
    """
    from ..pipeline import run_extraction
    from ..runlog import open_run_store
    from .extractor import FaceExtractor, face_dataset

    fx = extractor or FaceExtractor.from_checkpoint(
        weights,
        arch=arch,
        device=device,
        num_features=num_features,
        l2_norm=l2_norm,
        pre_fc=pre_fc,
        dtype=dtype,
        autocast=autocast,
    )
    dataset = face_dataset(input, limit=limit)
    own = isinstance(out, (str, os.PathLike))
    st = out
    if own:
        st = open_run_store(
            out,
            fx,
            attrs={**fx.provenance(), "input": os.fspath(input)},
            overwrite=overwrite,
            id_name="index",
            hint=f"this face run (id 'index', variables {list(fx.variables)}) cannot resume it: "
            "choose another --out",
        )
    try:
        summary = run_extraction(
            fx,
            dataset,
            st,
            batch_size=batch_size,
            num_workers=num_workers,
            progress=progress,
            retry_skipped=retry_skipped,
        )
    finally:
        if own:
            st.close()
    return summary
