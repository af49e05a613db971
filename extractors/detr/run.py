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
>>> from extractors.detr.run import DetrPipelineExtractor   # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import shlex
from collections.abc import Sequence
from typing import Any

from embstore.errors import ValidationError

from ..outputs import clean_table as _clean_table
from ..outputs import store_exists as _store_exists

__all__ = ["DetrPipelineExtractor", "default_num_workers", "extract_detr"]

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


class DetrPipelineExtractor:
    """Adapt :class:`extractors.detr.DetrExtractor` to the pipeline protocol.

    DataLoader workers run DETR's eval transform per image (``preprocess``)
    and pad the batch (``collate``); the compute thread runs the model
    (``extract_batch``, tensors stay on the device); the writer thread copies
    to host and crops the feature maps to each image's unpadded region
    (``finish_batch``), so none of that work delays the next forward pass.

    Parameters
    ----------
    detr : DetrExtractor
        The model wrapper.

    Attributes
    ----------
    variables, ragged, dtypes : dict
        ``detr.store_variables``, ``detr.store_ragged``, ``detr.store_dtypes``.

    Examples
    --------
    >>> from extractors.detr import DetrExtractor                       # doctest: +SKIP
    >>> ex = DetrPipelineExtractor(DetrExtractor.from_checkpoint("detr.pth"))  # doctest: +SKIP
    """

    def __init__(self, detr: Any) -> None:
        from .preprocess import pad_batch

        self.detr = detr
        self.preprocess = detr.transform
        self.collate = pad_batch
        self.variables = dict(detr.store_variables)
        self.ragged = dict(detr.store_ragged)
        self.dtypes = dict(detr.store_dtypes)
        self.device = detr.device

    def extract_batch(self, batch: Any) -> dict[str, Any]:
        """Forward one padded batch ``(pixel_values, pixel_mask, input_hw)``.

        Parameters
        ----------
        batch : tuple
            From :func:`extractors.detr.preprocess.pad_batch`.

        Returns
        -------
        dict
            Device tensors of :meth:`DetrExtractor.forward_batch` plus the
            batch's ``input_hw`` (consumed by :meth:`finish_batch`).
        """
        pixel_values, pixel_mask, input_hw = batch
        raw = dict(self.detr.forward_batch(pixel_values, pixel_mask))
        raw["_input_hw"] = input_hw
        return raw

    def finish_batch(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Host copy + per-image crops; adds ``input_height``/``input_width`` coords.

        Parameters
        ----------
        raw : dict
            From :meth:`extract_batch`.

        Returns
        -------
        dict
            Store variables (NumPy), ``_coords`` and ``_ragged_hw``.
        """
        input_hw = raw.pop("_input_hw")
        out = dict(self.detr.postprocess(raw, input_hw))
        feature_hw = out.pop("feature_hw")
        in_hw = out.pop("input_hw")
        out["_coords"] = {"input_height": in_hw[:, 0], "input_width": in_hw[:, 1]}
        if "encoder_output" in out:
            out["_ragged_hw"] = {"encoder_output": [(int(h), int(w)) for h, w in feature_hw]}
        for name in ("decoder_attention", "encoder_attention"):
            if name in out:
                import numpy as np

                # [L, Q, h, w] per image -> h*w tokens of (L, Q), the store's ragged layout
                out[name] = [
                    np.ascontiguousarray(a.reshape(a.shape[0], a.shape[1], -1).transpose(2, 0, 1))
                    for a in out[name]
                ]
                out.setdefault("_ragged_hw", {})[name] = [(int(h), int(w)) for h, w in feature_hw]
        return out


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
    from embstore import Store

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
    ex = DetrPipelineExtractor(detr)
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
    exists = _store_exists(out_s)
    try:  # "a": create if absent, else resume after a schema check; "w": start again
        store = Store.open(
            out_s,
            mode="w" if overwrite else "a",
            row_dim="image",
            id_name="image_id",
            variables=ex.variables,
            ragged=ex.ragged,
            dtypes=ex.dtypes,
            attrs=attrs,
        )
    except ValidationError as exc:
        raise ValidationError(
            f"{exc}; re-run with the same --extract-type/--variables/--dtype to resume, or pass a new --out"
        ) from None
    if exists and not overwrite:
        try:
            _check_resume(store, list(ex.variables) + list(ex.ragged), attrs, out_s)
        except BaseException:
            store.close()
            raise
        logger.info("resuming into %s (%d rows present)", out_s, len(store))
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


def run_and_record(
    ex: Any,
    dataset: Any,
    store: Any,
    *,
    started: str,
    command_line: str | None = None,
    **run_kwargs: Any,
) -> Any:
    """Run an extraction into an open store, then record the run in its attributes.

    The dataset's person table (FACET) is merged into the store first; the
    run (command line, start time, summary, or "interrupted or failed") is
    appended to the store's ``runs`` attribute even when the run raises.
    The store is closed on return.

    Parameters
    ----------
    ex : extractor
        Passed to :func:`extractors.pipeline.run_extraction`.
    dataset : Dataset
        Its ``persons`` table, when present, is written to the store.
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
    from ..pipeline import run_extraction  # the pipeline imports this module

    with store:
        if dataset.persons is not None:
            store.write_table("persons", _merge_persons(store, _clean_table(dataset.persons)))
        summary = None
        try:
            summary = run_extraction(ex, dataset, store, **run_kwargs)
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
    return summary


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
