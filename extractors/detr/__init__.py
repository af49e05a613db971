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

import importlib
from typing import Any

__all__ = [
    "DetrExtractor",
    "EXTRACT_TYPES",
    "DetrConfig",
    "DETR",
    "build_detr",
    "DetrTransform",
    "pad_batch",
    "infer_config",
    "resolve_variables",
]

_LAZY = {
    "DetrExtractor": "extractor",
    "EXTRACT_TYPES": "extractor",
    "resolve_variables": "extractor",
    "DetrConfig": "model",
    "DETR": "model",
    "build_detr": "model",
    "DetrTransform": "preprocess",
    "pad_batch": "preprocess",
    "infer_config": "checkpoint",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
