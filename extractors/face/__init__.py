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

from embstore._lazy import lazy_attributes

__all__ = ["FaceExtractor", "IResNet", "extract_face", "iresnet", "preprocess_face"]

_LAZY = {
    "FaceExtractor": "extractors.face.extractor",
    "preprocess_face": "extractors.face.extractor",
    "IResNet": "extractors.face.iresnet",
    "iresnet": "extractors.face.iresnet",
    "extract_face": "extractors.face.extractor",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
