"""``extract_detr``: a whole DETR extraction run, from checkpoint to store.

This is the Python entry behind ``embstore extract detr``::

    from extractors.detr.run import extract_detr
    summary = extract_detr("detr-r50-e632da11.pth", images="FACET/", out="facet.zarr",
                           extract_type="decoder", skin=1, device="cuda")

Re-running with the same ``out`` resumes: only images the store lacks are
extracted. The store records the model name, the checkpoint's SHA-256, the
architecture, the preprocessing, the dataset and filters and every command
line that wrote to it.

Examples
--------
>>> from extractors.detr.run import DetrPipelineExtractor
>>> DetrPipelineExtractor.__module__
'extractors.detr.adapter'
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections.abc import Sequence
from typing import Any

from embstore.errors import ValidationError

from ..runlog import format_command, open_run_store, run_and_record
from .adapter import DetrPipelineExtractor

__all__ = [
    "DetrPipelineExtractor",
    "default_num_workers",
    "extract_detr",
    "format_command",
    "run_and_record",
]

logger = logging.getLogger(__name__)


def default_num_workers() -> int:
    """DataLoader workers used when none are given: CPUs - 1, at most 8.

    Returns
    -------
    int

    Examples
    --------
    >>> 0 <= default_num_workers() <= 8
    True
    """
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def _check_resume(store: Any, variables: Sequence[str], attrs: dict[str, Any], out: str) -> None:
    """Refuse to resume into a store written with another model/setup."""
    have = sorted(set(store.variables) | set(store.ragged_variables))
    want = sorted(variables)
    if have != want:
        raise ValidationError(
            f"the store {out!r} holds variables {have} but this run extracts {want}; "
            "re-run with the same --extract-type/--variables to resume, or pass a new --out"
        )
    old = store.attrs
    for key in ("checkpoint_sha256", "preprocessing", "model_config"):
        if key in old and key in attrs and old[key] != attrs[key]:
            raise ValidationError(
                f"the store {out!r} was extracted with {key}={old[key]!r}, this run has "
                f"{attrs[key]!r}; resuming would mix two setups: pass a new --out "
                "(or --overwrite to start again)"
            )


def extract_detr(
    checkpoint: str | os.PathLike[str],
    images: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    annotations: str | os.PathLike[str] | None = None,
    extract_type: str = "decoder",
    variables: Sequence[str] | None = None,
    batch_size: int = 16,
    num_workers: int | None = None,
    device: str = "auto",
    dtype: str = "float16",
    skin: Any = None,
    light: Any = None,
    limit: int | None = None,
    min_size: int = 800,
    max_size: int | None = 1333,
    autocast: str | None = None,
    overwrite: bool = False,
    retry_skipped: bool = False,
    progress: bool | None = None,
    flush_interval: float | None = 60.0,
    command_line: str | None = None,
    encoder_attention_points: Any = None,
    **overrides: Any,
) -> Any:
    """Extract DETR embeddings of a dataset into a store (resumable).

    Parameters
    ----------
    checkpoint : str or path-like
        Official-format DETR checkpoint (``.pth`` path or URL), e.g.
        ``detr-r50-e632da11.pth``.
    images : str or path-like
        Image folder (recursive) or a text file of paths. A folder holding
        ``annotations/annotations.csv`` (FACET's layout) uses it
        automatically.
    out : str or path-like
        The store (``.zarr`` directory, ``.h5`` file or fsspec URL). If it
        exists, the run resumes into it.
    annotations : str or path-like, optional
        FACET ``annotations.csv`` or a COCO JSON; gives ``skin``,
        ``lighting``, ``n_people`` coordinates and the ``persons`` table.
    extract_type : {"decoder", "all", "encoder", "backbone"}
        What to keep (see :data:`extractors.detr.EXTRACT_TYPES`); ignored
        when ``variables`` is given.
    variables : list of str, optional
        Explicit variable names.
    batch_size : int, default 16
    num_workers : int, optional
        DataLoader workers; default :func:`default_num_workers`.
    device : str, default "auto"
        ``"auto"`` (all GPUs if any, else CPU), ``"cpu"``, ``"cuda"``,
        ``"cuda:N"``; asking for CUDA without it is an error.
    dtype : {"float16", "float32"}
        Storage dtype of hidden states (logits and boxes stay float32).
    skin, light, limit
        Filters, see :meth:`extractors.datasets.ImageDataset.filter`.
    min_size, max_size : int
        DETR's eval resize (800 / 1333 officially).
    autocast : {None, "fp16", "bf16"}
        Mixed-precision forward (faster on GPUs, ~1e-3 deviation).
    overwrite : bool
        Delete an existing store first instead of resuming.
    retry_skipped : bool
        Retry images an earlier run recorded as skipped.
    progress : bool or None
        Progress bar; ``None`` = only on a terminal.
    flush_interval : float or None
        Seconds between commits while writing.
    command_line : str, optional
        Recorded in the store attributes (the CLI passes its own).
    encoder_attention_points : str or sequence of (float, float), optional
        Relative ``(y, x)`` points whose encoder self-attention is stored as
        ``encoder_attention`` (see :mod:`extractors.detr.attention`).
    **overrides
        Architecture fields the checkpoint cannot tell (``nheads``,
        ``dilation``).

    Returns
    -------
    extractors.pipeline.ExtractionSummary

    Raises
    ------
    CheckpointError, DeviceUnavailableError, DatasetError, ValidationError
        Bad checkpoint, unavailable device, bad input, or a store written by
        another setup.
    """
    from ..datasets import open_dataset
    from . import DetrExtractor

    if dtype not in ("float16", "float32"):
        raise ValidationError(f"dtype={dtype!r}; use 'float16' (default) or 'float32'")
    if num_workers is None:
        num_workers = default_num_workers()
    dataset = open_dataset(images, annotations, skin=skin, light=light, limit=limit)
    spec: Any = list(variables) if variables else extract_type
    detr = DetrExtractor.from_checkpoint(
        checkpoint,
        device=device,
        extract_type=spec,
        min_size=min_size,
        max_size=max_size,
        autocast=autocast,
        storage_dtype=dtype,
        encoder_attention_points=encoder_attention_points,
        **{k: v for k, v in overrides.items() if v is not None},
    )
    ex = detr.pipeline_extractor()
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    attrs = dict(detr.store_attrs)
    attrs.update(
        {
            "model_name": "detr",
            "storage_dtype": dtype,
            "dataset": {
                "kind": dataset.kind,
                "source": dataset.source or os.fspath(images),
                "images": os.fspath(images),
                "annotations": os.fspath(annotations) if annotations else None,
                "skin": None
                if skin is None
                else [str(s) for s in (skin if isinstance(skin, (list, tuple)) else [skin])],
                "light": None
                if light is None
                else [str(s) for s in (light if isinstance(light, (list, tuple)) else [light])],
                "limit": limit,
            },
            "command_line": command_line or "",
        }
    )
    out_s = os.fspath(out)
    store = open_run_store(
        out_s,
        ex,
        attrs=attrs,
        overwrite=overwrite,
        hint="re-run with the same --extract-type/--variables/--dtype to resume, or pass a new --out",
        check=lambda st: _check_resume(st, list(ex.variables) + list(ex.ragged), attrs, out_s),
    )
    return run_and_record(
        ex,
        dataset,
        store,
        batch_size=batch_size,
        num_workers=num_workers,
        retry_skipped=retry_skipped,
        progress=progress,
        flush_interval=flush_interval,
        command_line=command_line,
        started=now,
    )
