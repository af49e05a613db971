"""SigLIP (open_clip) embeddings of COCO-panoptic mask instances.

Examples
--------
>>> from extractors.siglip import SiglipExtractor            # doctest: +SKIP
>>> ex = SiglipExtractor("ViT-B-16-SigLIP", pretrained="open_clip_pytorch_model.bin")  # doctest: +SKIP
>>> ex.extract_panoptic("/data/coco", split="val", out="val_siglip.zarr")              # doctest: +SKIP
"""

from __future__ import annotations

from embstore._lazy import lazy_attributes

__all__ = [
    "PanopticDataset",
    "SiglipExtractor",
    "extract_panoptic",
    "instance_id",
    "masked_crop",
    "split_instance_id",
]

_LAZY = {
    "SiglipExtractor": "extractors.siglip.extractor",
    "extract_panoptic": "extractors.siglip.extractor",
    "PanopticDataset": "extractors.siglip.panoptic",
    "masked_crop": "extractors.siglip.panoptic",
    "instance_id": "extractors.siglip.panoptic",
    "split_instance_id": "extractors.siglip.panoptic",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
