"""ArcFace iresnet face embeddings (insightface ``arcface_torch`` checkpoints).

Importing this package imports torch lazily: :class:`FaceExtractor` and
:func:`iresnet` are resolved on first use.

Examples
--------
With a checkpoint: ``FaceExtractor.from_checkpoint("backbone.pth", arch="r100")``.
Here a small random-weight iresnet on a real photo:

>>> from skimage import data
>>> from extractors.face import FaceExtractor, IResNet
>>> fx = FaceExtractor(IResNet((1, 1, 1, 1), num_features=32), dtype="float32")
>>> emb = fx.extract_images([data.astronaut()], l2_norm=True)["embedding"]
>>> emb.shape, round(float((emb**2).sum()), 4)
((1, 32), 1.0)
"""

from __future__ import annotations

from embstore._lazy import lazy_attributes

__all__ = ["FaceExtractor", "IResNet", "extract_face", "iresnet", "preprocess_face"]

_LAZY = {
    "FaceExtractor": "extractors.face.extractor",
    "preprocess_face": "extractors.face.extractor",
    "IResNet": "extractors.face.iresnet",
    "iresnet": "extractors.face.iresnet",
    "extract_face": "extractors.face.run",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
