"""COCO-panoptic segments as pipeline records: one :class:`CropRecord` per instance crop.

:func:`crop_records` turns a :class:`~extractors.siglip.panoptic.PanopticDataset`
into a list of records that :func:`extractors.pipeline.run_extraction` (and
the Dask region tasks) extract like image files: each record's ``load()``
reads its image and panoptic PNG, cuts the masked crop
(:func:`~extractors.siglip.panoptic.masked_crop`) and returns it as a PIL
image, which the extractor's ``preprocess`` then transforms. The crops of one
image are consecutive, and the last image read is kept per process, so an
image is decoded once however many segments it has.

Examples
--------
>>> from extractors.siglip.testing import write_tiny_panoptic
>>> from extractors.siglip.panoptic import PanopticDataset
>>> recs = crop_records(PanopticDataset(write_tiny_panoptic(out_dir + "/coco")), limit=1)
>>> [(r.coords["image_id"], r.coords["segment_id"], r.coords["category"]) for r in recs]
[(1000, 300, 'person'), (1000, 2, 'sky')]
>>> image, reason, coords = recs[0].load()
>>> image.mode, reason, coords
('RGB', None, {})
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .panoptic import COORD_NAMES, PanopticDataset, blend_background, crop_box, masked_crop

__all__ = ["COORD_NAMES", "CropRecord", "crop_records"]


#: The last image read in this process: (paths, rgb, ids) or (paths, error).
_LAST: dict[str, Any] = {}


@dataclass(frozen=True)
class CropRecord:
    """One panoptic segment to embed (a :class:`extractors.protocol.Record`).

    Attributes
    ----------
    image_id : int
        The row id: ``instance_id = image_id * 2**24 + segment_id``.
    path : str
        The RGB image the crop is cut from.
    png_path : str
        The panoptic PNG.
    segment_id : int
        The segment's id in the PNG.
    coords : dict
        Row coordinates (:data:`COORD_NAMES`).
    bg_alpha, pad_ratio, fill
        The crop rule (:func:`~extractors.siglip.panoptic.masked_crop`).
    """

    image_id: int
    path: str
    png_path: str
    segment_id: int
    coords: dict[str, Any] = field(default_factory=dict)
    bg_alpha: float = 0.3
    pad_ratio: float = 0.1
    fill: tuple[int, int, int] = (0, 0, 0)

    def _read(self) -> tuple[np.ndarray, np.ndarray]:
        from .panoptic import decode_panoptic_png

        key = (self.path, self.png_path)
        if _LAST.get("key") != key:
            _LAST.clear()
            _LAST["key"] = key
            try:
                from PIL import Image

                with Image.open(self.path) as im:
                    rgb = np.asarray(im.convert("RGB"))
                ids = decode_panoptic_png(self.png_path)
                if rgb.shape[:2] != ids.shape:
                    raise ValueError(
                        f"PNG size {ids.shape} differs from image size {rgb.shape[:2]}"
                    )
                _LAST["value"] = (rgb, ids)
            except Exception as exc:
                _LAST["error"] = exc
        if "error" in _LAST:
            raise _LAST["error"]
        rgb, ids = _LAST["value"]
        return rgb, ids

    def load(self) -> tuple[Any, str | None, dict[str, Any]]:
        """The masked crop as a PIL image, or ``None`` and why it is skipped.

        Returns
        -------
        image : PIL.Image.Image or None
        reason : str or None
            ``"unreadable image/PNG for image ..."`` or ``"segment ... has no
            pixels in the PNG"``.
        coords : dict
            Empty (the record's own coordinates are stored).
        """
        from PIL import Image

        try:
            rgb, ids = self._read()
        except Exception as exc:
            reason = (
                f"unreadable image/PNG for image {self.coords.get('image_id')} "
                f"({self.path}, {self.png_path}): {type(exc).__name__}: {exc}"
            )
            return None, reason, {}
        res = masked_crop(rgb, ids == self.segment_id, self.bg_alpha, self.pad_ratio, self.fill)
        if res is None:
            return None, f"segment {self.segment_id} has no pixels in the PNG", {}
        crop, _box = res
        return Image.fromarray(crop), None, {}


def crop_records(
    dataset: PanopticDataset,
    limit: int | None = None,
    bg_alpha: float = 0.3,
    pad_ratio: float = 0.1,
    fill: Sequence[int] = (0, 0, 0),
) -> list[CropRecord]:
    """One :class:`CropRecord` per segment, in JSON order (image by image).

    Parameters
    ----------
    dataset : PanopticDataset
        The split.
    limit : int, optional
        Only the segments of the first ``limit`` images.
    bg_alpha, pad_ratio, fill
        The crop rule, checked here once.

    Returns
    -------
    list of CropRecord

    Raises
    ------
    ValidationError
        A bad ``bg_alpha``, ``pad_ratio`` or ``fill``.
    """
    blend_background(np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1), bool), bg_alpha, fill)
    crop_box((0, 0, 1, 1), (1, 1), pad_ratio)
    images = dataset.images if limit is None else dataset.images[: int(limit)]
    fill3 = (int(fill[0]), int(fill[1]), int(fill[2]))
    records = []
    for image in images:
        for seg in image.segments:
            c = dataset.segment_coords(image, seg)
            coords = {name: c[name] for name in COORD_NAMES if name != "category"}
            coords["category"] = dataset.categories.get(c["category_id"], {}).get("name", "")
            records.append(
                CropRecord(
                    int(c["instance_id"]),
                    os.fspath(image.image_path),
                    os.fspath(image.png_path),
                    int(seg["id"]),
                    coords,
                    float(bg_alpha),
                    float(pad_ratio),
                    fill3,
                )
            )
    return records
