"""DETR (facebookresearch/detr) extraction: model, checkpoints, preprocessing.

``from extractors.detr import DetrExtractor`` is the entry point. The names
are loaded lazily, so importing this package (e.g. for the CLI's argument
parser) does not import torch.

Modules
-------
model
    DETR with the official parameter names (:func:`build_detr`, :class:`DetrConfig`).
checkpoint
    Reading ``.pth`` files/URLs, architecture inference, strict loading.
preprocess
    The official evaluation transform and padded batching.
extractor
    :class:`DetrExtractor`, :data:`EXTRACT_TYPES`.
testing
    Deterministic weights of the reference fixtures.
"""

from __future__ import annotations

from embstore._lazy import lazy_attributes

__all__ = [
    "DETR",
    "EXTRACT_TYPES",
    "DetrConfig",
    "DetrExtractor",
    "DetrTransform",
    "build_detr",
    "infer_config",
    "pad_batch",
    "resolve_variables",
]

_LAZY = {
    "DetrExtractor": ".extractor",
    "EXTRACT_TYPES": ".extractor",
    "resolve_variables": ".extractor",
    "DetrConfig": ".model",
    "DETR": ".model",
    "build_detr": ".model",
    "DetrTransform": ".preprocess",
    "pad_batch": ".preprocess",
    "infer_config": ".checkpoint",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
