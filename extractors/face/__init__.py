"""ArcFace iresnet face embeddings (insightface ``arcface_torch`` checkpoints).

Importing this package imports torch lazily: :class:`FaceExtractor` and
:func:`iresnet` are resolved on first use.

Examples
--------
>>> from extractors.face import FaceExtractor               # doctest: +SKIP
>>> fx = FaceExtractor.from_checkpoint("backbone.pth", arch="r100")  # doctest: +SKIP
>>> fx.extract_images([img], l2_norm=True)["embedding"].shape        # doctest: +SKIP
(1, 512)
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["FaceExtractor", "IResNet", "iresnet", "extract_face", "preprocess_face"]

_LAZY = {
    "FaceExtractor": "extractors.face.extractor",
    "preprocess_face": "extractors.face.extractor",
    "IResNet": "extractors.face.iresnet",
    "iresnet": "extractors.face.iresnet",
    "extract_face": "extractors.face.extractor",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'extractors.face' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
