"""``extract_model``: one model's layers for a folder of images, into a store (resumable).

The Python entry behind ``embstore extract model``::

    from extractors.models.run import extract_model
    summary = extract_model("torchvision:resnet50", "r50.pth", ["layer4", "avgpool"],
                            images="photos/", out="r50.zarr")

Re-running with the same ``out`` extracts only images the store lacks; a
store written with another model, weights, layers or pooling is refused.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections.abc import Sequence
from typing import Any

from embstore.errors import ValidationError

from ..summary import ExtractionSummary

__all__ = ["extract_model"]

logger = logging.getLogger(__name__)

#: Attributes that must match for a run to resume into an existing store.
RESUME_KEYS = ("model_spec", "weights_sha256", "layers", "pool")


def _check_resume(store: Any, attrs: dict[str, Any], out: str) -> None:
    old = store.attrs
    for key in RESUME_KEYS:
        if key in old and old[key] != attrs.get(key):
            raise ValidationError(
                f"{out} was written with {key}={old[key]!r}, this run has {attrs.get(key)!r}; "
                "use another --out or --overwrite."
            )


def extract_model(
    spec: str,
    weights: str | os.PathLike | None,
    layers: Sequence[str] | str,
    images: str | os.PathLike,
    out: str | os.PathLike,
    *,
    pool: str | None = None,
    annotations: str | os.PathLike | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    device: str = "auto",
    dtype: str = "float16",
    limit: int | None = None,
    autocast: str | None = None,
    overwrite: bool = False,
    retry_skipped: bool = False,
    progress: bool | None = None,
    flush_interval: float | None = 60.0,
    command_line: str | None = None,
    **load_options: Any,
) -> ExtractionSummary:
    """Extract the ``layers`` of a model for every image into a store.

    Parameters
    ----------
    spec : str
        Model spec (see :mod:`extractors.models.sources`).
    weights : str or os.PathLike or None
        Local weights file (None: random weights, logged).
    layers : sequence of str or str
        Module names (comma-separated string accepted).
    images : str or os.PathLike
        Image folder (recursive) or a text file of paths.
    out : str or os.PathLike
        The store; an existing one is resumed.
    pool : {None, "mean", "max", "cls"}, optional
        Pooling of spatial / token outputs (see :mod:`extractors.models.extractor`).
    annotations : str or os.PathLike, optional
        FACET CSV or COCO JSON for row coordinates.
    batch_size, num_workers, device, dtype, limit, autocast, overwrite, retry_skipped, progress, flush_interval
        As in :func:`extractors.detr.run.extract_detr`.
    command_line : str, optional
        Recorded in the store attributes.
    **load_options
        ``num_classes``, ``transform_weights``.

    Returns
    -------
    extractors.pipeline.ExtractionSummary
    """
    from ..datasets import open_dataset
    from ..runlog import open_run_store, run_and_record
    from .extractor import ModelExtractor

    dataset = open_dataset(images, annotations, limit=limit)
    ex = ModelExtractor(
        spec,
        layers,
        weights,
        pool=pool,
        device=device,
        dtype=dtype,
        autocast=autocast,
        **{k: v for k, v in load_options.items() if v is not None},
    )
    attrs = dict(ex.store_attrs)
    attrs["dataset"] = {
        "kind": dataset.kind,
        "images": os.fspath(images),
        "annotations": os.fspath(annotations) if annotations else None,
        "limit": limit,
    }
    attrs["command_line"] = command_line or ""
    out_s = os.fspath(out)
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    store = open_run_store(
        out_s,
        ex,
        attrs=attrs,
        overwrite=overwrite,
        hint="use the same --model/--weights/--layers/--pool/--dtype to resume, another --out "
        "or --overwrite",
        check=lambda st: _check_resume(st, attrs, out_s),
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
