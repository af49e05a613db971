"""DETR's official evaluation transform and padded batching.

Exactly the path of facebookresearch/detr at evaluation time
(``datasets/coco.py: make_coco_transforms("val")`` and
``util/misc.py: nested_tensor_from_tensor_list``):

1. resize with PIL bilinear (``torchvision.transforms.functional.resize``) so
   the shortest side is ``min_size``, unless the longest side would then
   exceed ``max_size``, in which case the shortest side becomes
   ``round(max_size * short / long)`` (the official ``get_size_with_aspect_ratio``,
   including its ``int()`` truncation of the long side);
2. ``to_tensor`` (``[0, 1]`` floats) and ImageNet normalisation;
3. zero-pad every image at the bottom/right to the batch's largest ``H`` and
   ``W``; the mask is True on padding.

:class:`DetrTransform` (steps 1-2) is picklable, for DataLoader workers;
:func:`pad_batch` (step 3) is the matching ``collate`` step.

Examples
--------
>>> import numpy as np
>>> from extractors.detr.preprocess import preprocess_images
>>> imgs = [np.zeros((60, 90, 3), np.uint8), np.zeros((90, 60, 3), np.uint8)]
>>> pixels, mask, sizes = preprocess_images(imgs, min_size=32, max_size=64)
>>> tuple(pixels.shape), sizes.tolist()
((2, 3, 48, 48), [[32, 48], [48, 32]])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from embstore.errors import ValidationError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DetrTransform",
    "get_size_with_aspect_ratio",
    "pad_batch",
    "preprocess_images",
    "to_pil_rgb",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def get_size_with_aspect_ratio(
    image_size: tuple[int, int], size: int, max_size: int | None = None
) -> tuple[int, int]:
    """Output ``(h, w)`` of DETR's resize for an image of ``(w, h)`` (PIL order).

    Parameters
    ----------
    image_size : tuple of int
        ``(width, height)`` of the input (as ``PIL.Image.size``).
    size : int
        Target length of the shortest side.
    max_size : int, optional
        Upper bound of the longest side.

    Returns
    -------
    tuple of int
        ``(height, width)`` after resizing.

    Examples
    --------
    >>> get_size_with_aspect_ratio((640, 480), 800, 1333)
    (800, 1066)
    >>> get_size_with_aspect_ratio((2000, 500), 800, 1333)
    (333, 1332)
    """
    w, h = image_size
    if max_size is not None:
        min_original = float(min((w, h)))
        max_original = float(max((w, h)))
        if max_original / min_original * size > max_size:
            size = round(max_size * min_original / max_original)
    if (w <= h and w == size) or (h <= w and h == size):
        return (h, w)
    if w < h:
        ow = size
        oh = int(size * h / w)
    else:
        oh = size
        ow = int(size * w / h)
    return (oh, ow)


def to_pil_rgb(image: Any):
    """Convert a PIL image or a uint8 array to an RGB ``PIL.Image``.

    Parameters
    ----------
    image : PIL.Image.Image or numpy.ndarray
        PIL image of any mode (grayscale, RGBA, CMYK, palette ... are converted
        to RGB), or a uint8 array ``[H, W, 3]`` (RGB), ``[H, W, 4]`` (RGBA) or
        ``[H, W]`` (grayscale).

    Returns
    -------
    PIL.Image.Image
        Mode ``"RGB"``.

    Examples
    --------
    >>> import numpy as np
    >>> to_pil_rgb(np.zeros((4, 5), np.uint8)).size
    (5, 4)
    """
    from PIL import Image

    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValidationError(
            f"image array has dtype {arr.dtype}; DETR preprocessing expects uint8 RGB "
            "pixels in 0..255 (convert with (x * 255).round().astype(np.uint8))."
        )
    if arr.ndim == 2:
        return Image.fromarray(arr, mode="L").convert("RGB")
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        img = Image.fromarray(np.ascontiguousarray(arr))
        return img if img.mode == "RGB" else img.convert("RGB")
    raise ValidationError(
        f"image array has shape {arr.shape}; expected [H, W, 3] RGB, [H, W, 4] RGBA "
        "or [H, W] grayscale."
    )


class DetrTransform:
    """Resize + to-tensor + normalise one image (DETR's eval transform).

    Parameters
    ----------
    min_size : int
        Shortest side after resizing (800 in the official evaluation).
    max_size : int or None
        Longest side bound (1333 officially); None for no bound.

    Examples
    --------
    >>> import numpy as np
    >>> t = DetrTransform(min_size=40, max_size=100)
    >>> tuple(t(np.zeros((20, 30, 3), np.uint8)).shape)
    (3, 40, 60)
    """

    def __init__(self, min_size: int = 800, max_size: int | None = 1333) -> None:
        if not isinstance(min_size, (int, np.integer)) or min_size < 1:
            raise ValidationError(f"min_size={min_size!r} must be a positive integer (e.g. 800).")
        if max_size is not None and (not isinstance(max_size, (int, np.integer)) or max_size < 1):
            raise ValidationError(
                f"max_size={max_size!r} must be a positive integer (e.g. 1333) or None."
            )
        self.min_size = int(min_size)
        self.max_size = None if max_size is None else int(max_size)

    def __repr__(self) -> str:
        return f"DetrTransform(min_size={self.min_size}, max_size={self.max_size})"

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """``(h, w)`` an image of ``width`` x ``height`` is resized to."""
        return get_size_with_aspect_ratio((width, height), self.min_size, self.max_size)

    def __call__(self, image: Any):
        """Return the normalised ``[3, h, w]`` float32 tensor of ``image``."""
        import torchvision.transforms.functional as TF

        img = to_pil_rgb(image)
        size = self.output_size(*img.size)
        if min(size) < 1:
            raise ValidationError(
                f"image of {img.size[0]}x{img.size[1]} pixels (WxH) would be resized to "
                f"{size[1]}x{size[0]} with min_size={self.min_size}, max_size={self.max_size}; "
                "it is too elongated: crop it, or raise max_size."
            )
        img = TF.resize(img, list(size))
        tensor = TF.to_tensor(img)
        return TF.normalize(tensor, mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))


def pad_batch(tensors: Sequence[Any]):
    """Zero-pad ``[3, h_i, w_i]`` tensors into one batch with a padding mask.

    Parameters
    ----------
    tensors : sequence of torch.Tensor
        Per-image ``[C, h_i, w_i]`` tensors.

    Returns
    -------
    pixel_values : torch.Tensor
        ``[B, C, H, W]`` with ``H = max h_i``, ``W = max w_i``.
    pixel_mask : torch.Tensor
        ``[B, H, W]`` bool, True on padding.
    input_hw : numpy.ndarray
        ``[B, 2]`` int64, ``(h_i, w_i)`` of each image.

    Examples
    --------
    >>> import torch
    >>> px, m, hw = pad_batch([torch.ones(3, 2, 3), torch.ones(3, 4, 1)])
    >>> tuple(px.shape), int(m[0].sum()), hw.tolist()
    ((2, 3, 4, 3), 6, [[2, 3], [4, 1]])
    """
    import torch

    if len(tensors) == 0:
        raise ValidationError("pad_batch got an empty list; pass at least one image tensor.")
    shapes = [tuple(t.shape) for t in tensors]
    if any(len(s) != 3 for s in shapes) or len({s[0] for s in shapes}) != 1:
        raise ValidationError(
            f"pad_batch expects [C, H, W] tensors with the same C; got shapes {shapes[:5]}."
        )
    c = shapes[0][0]
    H = max(s[1] for s in shapes)
    W = max(s[2] for s in shapes)
    first = tensors[0]
    pixels = torch.zeros((len(tensors), c, H, W), dtype=first.dtype, device=first.device)
    mask = torch.ones((len(tensors), H, W), dtype=torch.bool, device=first.device)
    for i, t in enumerate(tensors):
        pixels[i, :, : t.shape[1], : t.shape[2]].copy_(t)
        mask[i, : t.shape[1], : t.shape[2]] = False
    input_hw = np.array([[s[1], s[2]] for s in shapes], dtype=np.int64)
    return pixels, mask, input_hw


def preprocess_images(images: Sequence[Any], min_size: int = 800, max_size: int | None = 1333):
    """Transform and pad a list of images into one DETR batch.

    Parameters
    ----------
    images : sequence of PIL.Image.Image or numpy.ndarray
        See :func:`to_pil_rgb`.
    min_size, max_size : int
        See :class:`DetrTransform`.

    Returns
    -------
    pixel_values, pixel_mask, input_hw
        See :func:`pad_batch`.
    """
    if isinstance(images, np.ndarray) and images.ndim == 3:
        raise ValidationError(
            f"got one array of shape {images.shape}; pass a list of images, e.g. [image]."
        )
    transform = DetrTransform(min_size, max_size)
    return pad_batch([transform(img) for img in images])
