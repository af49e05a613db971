"""Robust image loading: every input becomes an RGB image or a skip reason.

A long extraction run must not die on one bad file. :func:`load_image`
returns ``(image, None)`` for a readable image and ``(None, reason)`` for a
missing, empty, truncated, corrupt or unreadable one; the pipeline records
the reason in the store (:meth:`embstore.Store.record_skipped`) and carries
on.

Colour handling (:func:`to_rgb`): grayscale (``L``, ``LA``, ``1``), 16-bit and
float grayscale (``I;16``, ``I``, ``F``, rescaled to 8 bits), palette
(``P``), ``RGBA`` and ``CMYK`` images are converted to 8-bit ``RGB``. Alpha is
dropped (not blended), exactly as ``PIL.Image.convert("RGB")`` in the
official DETR data loader does, so embeddings match the reference
implementation. EXIF orientation is ignored for the same reason unless
``exif_transpose=True``.

Examples
--------
>>> import numpy as np
>>> from PIL import Image
>>> to_rgb(Image.fromarray(np.zeros((4, 5), np.uint8))).mode
'RGB'
>>> load_image("/no/such/file.jpg")[1]
'missing file: /no/such/file.jpg'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from embstore.errors import ValidationError

__all__ = ["IMAGE_EXTENSIONS", "load_image", "to_rgb"]

#: File extensions treated as images when scanning folders (lower case).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def to_rgb(image: Any) -> Image.Image:
    """Convert a PIL image or an array to an 8-bit RGB PIL image.

    Parameters
    ----------
    image : PIL.Image.Image or numpy.ndarray
        A PIL image in any mode, or a ``uint8`` array of shape (H, W),
        (H, W, 1), (H, W, 3) or (H, W, 4).

    Returns
    -------
    PIL.Image.Image
        Mode ``"RGB"``.

    Raises
    ------
    ValidationError
        The array has an unsupported shape or dtype.

    Examples
    --------
    >>> from PIL import Image
    >>> to_rgb(Image.new("CMYK", (3, 2))).size
    (3, 2)
    """
    if isinstance(image, np.ndarray):
        arr = image
        if arr.dtype != np.uint8:
            raise ValidationError(
                f"image array has dtype {arr.dtype}; pass uint8 values 0..255 "
                "(e.g. (x * 255).round().astype('uint8'))"
            )
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4)):
            image = Image.fromarray(np.ascontiguousarray(arr))
        else:
            raise ValidationError(
                f"image array has shape {arr.shape}; expected (H, W), (H, W, 3) or (H, W, 4)"
            )
    if not isinstance(image, Image.Image):
        raise ValidationError(f"expected a PIL image or a uint8 array, got {type(image).__name__}")
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and arr.max(initial=0) > 255):
            arr = arr / 257.0  # 16-bit range -> 8-bit range
        elif mode == "F" and arr.max(initial=0) <= 1.0:
            arr = arr * 255.0  # float in [0, 1]
        gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def load_image(
    path: str | os.PathLike[str], *, exif_transpose: bool = False
) -> tuple[Image.Image | None, str | None]:
    """Open and fully decode an image file as RGB, never raising on bad input.

    Parameters
    ----------
    path : str or path-like
        Image file.
    exif_transpose : bool, default False
        Rotate according to the EXIF orientation tag. Off by default, like the
        official DETR loader.

    Returns
    -------
    image : PIL.Image.Image or None
        The decoded RGB image, or ``None`` when it could not be read.
    reason : str or None
        ``None`` on success, else a short reason starting with one of
        ``"missing file"``, ``"empty file"``, ``"unreadable"``,
        ``"not an image"``, ``"truncated or corrupt"``.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> p = os.path.join(d, "empty.jpg"); open(p, "wb").close()
    >>> load_image(p)[1].startswith("empty file")
    True
    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        return None, f"missing file: {path}"
    except OSError as exc:
        return None, f"unreadable: {path}: {exc}"
    if p.is_dir():
        return None, f"unreadable: {path} is a directory"
    if size == 0:
        return None, f"empty file: {path}"
    try:
        with Image.open(p) as opened:
            opened.load()  # force the full decode: truncation shows up here
            img: Image.Image = ImageOps.exif_transpose(opened) if exif_transpose else opened
            rgb = to_rgb(img)
            if rgb is img:
                rgb = img.copy()
    except UnidentifiedImageError:
        return None, f"not an image: {path}"
    except PermissionError as exc:
        return None, f"unreadable: {path}: {exc}"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return None, f"truncated or corrupt: {path}: {exc}"
    if rgb.width == 0 or rgb.height == 0:
        return None, f"empty image: {path} has size {rgb.size}"
    return rgb, None
