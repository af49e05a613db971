"""COCO-panoptic segments: dataset layout, PNG decoding, masked crops.

Pure numpy/PIL (no torch). The crop rule reproduces the users'
``build_vis_cache.py``:

1. ``segment_id = R + 256 * G + 65536 * B`` of the panoptic PNG;
   ``mask = (segment_id_map == segment["id"])``.
2. The mask's bounding box ``[x0, x1) x [y0, y1)`` is enlarged by
   ``pad_ratio * width`` left and right and ``pad_ratio * height`` above and
   below, then clipped to the image (start rounded down, end rounded up, so
   the padded box is always enclosed).
3. Inside the mask the pixels are kept; outside they are blended toward
   ``fill`` as ``bg_alpha * pixel + (1 - bg_alpha) * fill`` (rounded to the
   nearest integer).

Layouts accepted under ``data_path`` (both are in use):

- ``annotations/panoptic_{split}2017.json``
- PNG folder ``annotations/panoptic_{split}2017/`` (official zip) or
  ``panoptic_{split}2017/`` at the root (users' notes)
- images in ``{split}2017/``

Examples
--------
>>> import numpy as np
>>> png = np.zeros((4, 4, 3), np.uint8); png[1:3, 1:3] = (7, 1, 0)
>>> int(decode_panoptic_png(png)[1, 1])
263
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embstore.errors import DatasetError, ValidationError

__all__ = [
    "PanopticDataset",
    "PanopticImage",
    "blend_background",
    "crop_box",
    "decode_panoptic_png",
    "encode_panoptic_ids",
    "instance_id",
    "mask_bbox",
    "masked_crop",
    "split_instance_id",
]

logger = logging.getLogger(__name__)

#: ``instance_id = image_id * SEGMENT_RANGE + segment_id``; segment ids are < 2**24.
SEGMENT_RANGE = 1 << 24


#: Row coordinates stored for every instance.
COORD_NAMES = (
    "image_id",
    "segment_id",
    "category_id",
    "category",
    "isthing",
    "iscrowd",
    "area",
    "bbox_x",
    "bbox_y",
    "bbox_w",
    "bbox_h",
)


def instance_id(image_id: Any, segment_id: Any) -> Any:
    """Combine image and segment ids into one int64 row id.

    ``instance_id = image_id * 2**24 + segment_id`` (a panoptic segment id is
    an RGB triple, so it is below ``2**24``); unique, sortable, and reversible
    with :func:`split_instance_id`.

    Parameters
    ----------
    image_id, segment_id : int or array of int
        Ids (non-negative; ``segment_id < 2**24``).

    Returns
    -------
    numpy.int64 or numpy.ndarray
        The combined id(s).

    Raises
    ------
    ValidationError
        If an id is negative or a segment id is out of range.

    Examples
    --------
    >>> int(instance_id(397133, 15466))
    6662786137194
    >>> split_instance_id(6662786137194)
    (397133, 15466)
    """
    img = np.asarray(image_id, dtype=np.int64)
    seg = np.asarray(segment_id, dtype=np.int64)
    if np.any(img < 0) or np.any(seg < 0) or np.any(seg >= SEGMENT_RANGE):
        raise ValidationError(
            f"instance ids need 0 <= image_id and 0 <= segment_id < 2**24, got image_id={image_id!r}, "
            f"segment_id={segment_id!r}"
        )
    if np.any(img >= (1 << 39)):
        raise ValidationError(
            f"image_id {image_id!r} is too large for an int64 instance id (max 2**39 - 1)"
        )
    out = img * SEGMENT_RANGE + seg
    return out if out.ndim else np.int64(out)


def split_instance_id(iid: Any) -> tuple[Any, Any]:
    """Split instance id(s) from :func:`instance_id` into ``(image_id, segment_id)``.

    Parameters
    ----------
    iid : int or array of int
        Combined id(s).

    Returns
    -------
    tuple
        ``(image_id, segment_id)``, ints for a scalar, arrays otherwise.
    """
    arr = np.asarray(iid, dtype=np.int64)
    img, seg = arr // SEGMENT_RANGE, arr % SEGMENT_RANGE
    if arr.ndim == 0:
        return int(img), int(seg)
    return img, seg


def decode_panoptic_png(png: Any) -> np.ndarray:
    """Decode a COCO-panoptic PNG into segment ids (``R + 256*G + 65536*B``).

    Parameters
    ----------
    png : numpy.ndarray or PIL.Image.Image or path
        ``H x W x 3`` uint8 RGB array, PIL image, or a PNG file path.

    Returns
    -------
    numpy.ndarray
        ``int64 [H, W]`` segment ids (0 = unlabeled).

    Raises
    ------
    ValidationError
        If the array is not ``H x W x 3``.
    """
    from PIL import Image

    if isinstance(png, (str, os.PathLike)):
        with Image.open(png) as im:
            png = np.asarray(im.convert("RGB"))
    elif isinstance(png, Image.Image):
        png = np.asarray(png.convert("RGB"))
    arr = np.asarray(png)
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise ValidationError(f"panoptic PNG must be H x W x 3, got shape {arr.shape}")
    arr = arr[..., :3].astype(np.int64)
    return arr[..., 0] + 256 * arr[..., 1] + 65536 * arr[..., 2]


def encode_panoptic_ids(ids: np.ndarray) -> np.ndarray:
    """Encode segment ids as a panoptic RGB image (inverse of :func:`decode_panoptic_png`).

    Parameters
    ----------
    ids : numpy.ndarray
        ``[H, W]`` non-negative integer ids below ``2**24``.

    Returns
    -------
    numpy.ndarray
        ``uint8 [H, W, 3]``.

    Examples
    --------
    >>> import numpy as np
    >>> ids = np.array([[0, 15466]])
    >>> int(decode_panoptic_png(encode_panoptic_ids(ids))[0, 1])
    15466
    """
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= SEGMENT_RANGE):
        raise ValidationError("segment ids must be in [0, 2**24) to be encoded as RGB")
    return np.stack([ids % 256, (ids // 256) % 256, ids // 65536], axis=-1).astype(np.uint8)


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight bounding box of a boolean mask as ``(x0, y0, x1, y1)`` (end exclusive).

    Parameters
    ----------
    mask : numpy.ndarray
        ``bool [H, W]``.

    Returns
    -------
    tuple of int or None
        ``None`` when the mask is empty.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.zeros((5, 6), bool); m[1:3, 2:5] = True
    >>> mask_bbox(m)
    (2, 1, 5, 3)
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def crop_box(
    bbox: tuple[int, int, int, int], image_hw: tuple[int, int], pad_ratio: float = 0.1
) -> tuple[int, int, int, int]:
    """Enlarge ``(x0, y0, x1, y1)`` by ``pad_ratio`` of its size per side, clipped.

    Parameters
    ----------
    bbox : tuple of int
        ``(x0, y0, x1, y1)``, end exclusive.
    image_hw : tuple of int
        ``(height, width)`` of the image.
    pad_ratio : float, default 0.1
        Fraction of the box width (height) added left and right (above and below).

    Returns
    -------
    tuple of int
        The clipped crop box ``(x0, y0, x1, y1)``.

    Raises
    ------
    ValidationError
        If ``pad_ratio`` is negative.

    Examples
    --------
    >>> crop_box((10, 10, 20, 30), (100, 100), pad_ratio=0.1)
    (9, 8, 21, 32)
    >>> crop_box((0, 0, 10, 10), (10, 10), pad_ratio=0.5)
    (0, 0, 10, 10)
    """
    if pad_ratio < 0 or not math.isfinite(pad_ratio):
        raise ValidationError(f"pad_ratio must be a finite number >= 0, got {pad_ratio!r}")
    x0, y0, x1, y1 = bbox
    h, w = image_hw
    px, py = pad_ratio * (x1 - x0), pad_ratio * (y1 - y0)
    return (
        max(0, math.floor(x0 - px)),
        max(0, math.floor(y0 - py)),
        min(int(w), math.ceil(x1 + px)),
        min(int(h), math.ceil(y1 + py)),
    )


def blend_background(
    pixels: np.ndarray, mask: np.ndarray, bg_alpha: float = 0.3, fill: Sequence[int] = (0, 0, 0)
) -> np.ndarray:
    """Keep pixels inside ``mask``; blend the rest as ``bg_alpha*pixel + (1-bg_alpha)*fill``.

    Parameters
    ----------
    pixels : numpy.ndarray
        ``uint8 [H, W, 3]``.
    mask : numpy.ndarray
        ``bool [H, W]``.
    bg_alpha : float, default 0.3
        Weight of the original background pixel (0 = pure fill, 1 = unchanged).
    fill : sequence of 3 int, default (0, 0, 0)
        Fill colour (RGB).

    Returns
    -------
    numpy.ndarray
        ``uint8 [H, W, 3]``, rounded to the nearest integer.

    Raises
    ------
    ValidationError
        If ``bg_alpha`` is outside [0, 1], ``fill`` is not 3 values, or shapes differ.

    Examples
    --------
    >>> import numpy as np
    >>> px = np.full((1, 2, 3), 100, np.uint8); m = np.array([[True, False]])
    >>> blend_background(px, m, bg_alpha=0.3, fill=(0, 0, 0))[0, :, 0].tolist()
    [100, 30]
    """
    if not 0.0 <= float(bg_alpha) <= 1.0:
        raise ValidationError(f"bg_alpha must be in [0, 1], got {bg_alpha!r}")
    fill_arr = np.asarray(fill, dtype=np.float32).reshape(-1)
    if fill_arr.size != 3:
        raise ValidationError(f"fill must be an RGB triple like (0, 0, 0), got {fill!r}")
    if pixels.shape[:2] != mask.shape:
        raise ValidationError(f"mask shape {mask.shape} does not match pixels {pixels.shape[:2]}")
    blended = float(bg_alpha) * pixels.astype(np.float32) + (1.0 - float(bg_alpha)) * fill_arr
    out = np.where(mask[..., None], pixels.astype(np.float32), blended)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def masked_crop(
    image: np.ndarray,
    mask: np.ndarray,
    bg_alpha: float = 0.3,
    pad_ratio: float = 0.1,
    fill: Sequence[int] = (0, 0, 0),
) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """Crop one segment with background blending (the module's crop rule).

    Parameters
    ----------
    image : numpy.ndarray
        ``uint8 [H, W, 3]`` RGB image.
    mask : numpy.ndarray
        ``bool [H, W]`` segment mask.
    bg_alpha, pad_ratio, fill
        See :func:`blend_background` and :func:`crop_box`.

    Returns
    -------
    tuple or None
        ``(crop uint8 [h, w, 3], (x0, y0, x1, y1))``; ``None`` for an empty mask.

    Raises
    ------
    ValidationError
        If the mask and image sizes differ.
    """
    if image.shape[:2] != mask.shape:
        raise ValidationError(
            f"panoptic mask size {mask.shape} differs from image size {image.shape[:2]}; "
            "check that the PNG belongs to this image"
        )
    bbox = mask_bbox(mask)
    if bbox is None:
        return None
    x0, y0, x1, y1 = crop_box(bbox, image.shape[:2], pad_ratio)
    crop = blend_background(image[y0:y1, x0:x1], mask[y0:y1, x0:x1], bg_alpha, fill)
    return crop, (x0, y0, x1, y1)


@dataclass
class PanopticImage:
    """One image of a panoptic dataset and its segments.

    Attributes
    ----------
    image_id : int
        COCO image id.
    image_path : pathlib.Path
        RGB image file.
    png_path : pathlib.Path
        Panoptic PNG file.
    segments : list of dict
        ``segments_info`` entries (``id``, ``category_id``, ``bbox``, ``area``, ``iscrowd``).
    width, height : int
        Image size from the JSON (0 if absent).
    """

    image_id: int
    image_path: Path
    png_path: Path
    segments: list[dict] = field(default_factory=list)
    width: int = 0
    height: int = 0


class PanopticDataset:
    """A COCO-panoptic split on disk.

    Parameters
    ----------
    data_path : str or os.PathLike
        COCO root (see the module docstring for the layouts accepted).
    split : str, default "val"
        ``"train"`` or ``"val"`` (any name with files ``panoptic_{split}2017``).

    Attributes
    ----------
    images : list of PanopticImage
        In JSON ``annotations`` order.
    categories : dict
        ``category_id -> {"name", "isthing", "supercategory"}``.

    Raises
    ------
    DatasetError
        If the JSON, PNG folder or image folder is missing or malformed.

    Examples
    --------
    >>> from extractors.siglip.testing import write_tiny_panoptic
    >>> ds = PanopticDataset(write_tiny_panoptic(out_dir + "/coco", n_images=3), split="val")
    >>> len(ds), ds.num_segments
    (3, 6)
    """

    def __init__(self, data_path: str | os.PathLike, split: str = "val") -> None:
        root = Path(data_path)
        self.root = root
        self.split = split
        json_path = root / "annotations" / f"panoptic_{split}2017.json"
        if not json_path.is_file():
            alt = root / f"panoptic_{split}2017.json"
            if alt.is_file():
                json_path = alt
            else:
                raise DatasetError(
                    f"panoptic annotations not found: {json_path}; pass --data-path pointing at the COCO "
                    f"root that holds annotations/panoptic_{split}2017.json"
                )
        png_dir = None
        for cand in (
            root / "annotations" / f"panoptic_{split}2017",
            root / f"panoptic_{split}2017",
        ):
            if cand.is_dir():
                png_dir = cand
                break
        if png_dir is None:
            raise DatasetError(
                f"panoptic PNG folder not found under {root} (looked for annotations/panoptic_{split}2017/ "
                f"and panoptic_{split}2017/); unzip panoptic_{split}2017.zip there"
            )
        image_dir = root / f"{split}2017"
        if not image_dir.is_dir():
            raise DatasetError(
                f"image folder {image_dir} not found; put the COCO {split}2017 images there"
            )
        self.json_path, self.png_dir, self.image_dir = json_path, png_dir, image_dir
        try:
            with open(json_path, encoding="utf-8") as f:
                data = json.load(f)
            infos = {int(im["id"]): im for im in data.get("images", [])}
            self.categories = {
                int(c["id"]): {
                    "name": c.get("name", str(c["id"])),
                    "isthing": int(c.get("isthing", 0)),
                    "supercategory": c.get("supercategory", ""),
                }
                for c in data.get("categories", [])
            }
            self.images: list[PanopticImage] = []
            for ann in data["annotations"]:
                iid = int(ann["image_id"])
                info = infos.get(iid, {})
                file_name = info.get("file_name") or Path(ann["file_name"]).with_suffix(".jpg").name
                self.images.append(
                    PanopticImage(
                        image_id=iid,
                        image_path=image_dir / file_name,
                        png_path=png_dir / ann["file_name"],
                        segments=list(ann.get("segments_info", [])),
                        width=int(info.get("width", 0)),
                        height=int(info.get("height", 0)),
                    )
                )
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"malformed panoptic annotations {json_path}: {exc!r}") from exc

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[PanopticImage]:
        return iter(self.images)

    @property
    def num_segments(self) -> int:
        """Number of segments over all images."""
        return sum(len(im.segments) for im in self.images)

    def segment_table(self) -> Any:
        """All segments as a :class:`pandas.DataFrame` with their row coordinates.

        Returns
        -------
        pandas.DataFrame
            Columns ``instance_id, image_id, segment_id, category_id, isthing,
            iscrowd, area, bbox_x, bbox_y, bbox_w, bbox_h`` (bbox from the JSON,
            COCO ``[x, y, w, h]``).
        """
        import pandas as pd

        rows = []
        for im in self.images:
            for seg in im.segments:
                rows.append(self.segment_coords(im, seg))
        cols = ["instance_id", *(name for name in COORD_NAMES if name != "category")]
        return pd.DataFrame(rows, columns=cols)

    def segment_coords(self, image: PanopticImage, segment: dict) -> dict[str, Any]:
        """Row coordinates of one segment.

        Parameters
        ----------
        image : PanopticImage
            The image the segment belongs to.
        segment : dict
            One ``segments_info`` entry.

        Returns
        -------
        dict
            ``instance_id`` and the coordinate values (see :meth:`segment_table`).
        """
        sid = int(segment["id"])
        cat = int(segment.get("category_id", -1))
        bbox = list(segment.get("bbox", [-1, -1, -1, -1]))[:4]
        return {
            "instance_id": int(instance_id(image.image_id, sid)),
            "image_id": image.image_id,
            "segment_id": sid,
            "category_id": cat,
            "isthing": int(self.categories.get(cat, {}).get("isthing", -1)),
            "iscrowd": int(segment.get("iscrowd", 0)),
            "area": int(segment.get("area", -1)),
            "bbox_x": float(bbox[0]),
            "bbox_y": float(bbox[1]),
            "bbox_w": float(bbox[2]),
            "bbox_h": float(bbox[3]),
        }

    def load(self, image: PanopticImage) -> tuple[np.ndarray, np.ndarray]:
        """Load an image (RGB uint8) and its decoded segment-id map.

        Parameters
        ----------
        image : PanopticImage
            Entry of :attr:`images`.

        Returns
        -------
        tuple of numpy.ndarray
            ``(rgb uint8 [H, W, 3], segment ids int64 [H, W])``.

        Raises
        ------
        OSError
            If either file cannot be read (callers record the image as skipped).
        """
        from PIL import Image

        with Image.open(image.image_path) as im:
            rgb = np.asarray(im.convert("RGB"))
        ids = decode_panoptic_png(image.png_path)
        return rgb, ids
