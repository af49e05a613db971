"""A tiny registered open_clip config and random weights, for tests and examples.

Nothing is downloaded: the config is written to a JSON file and registered
with :func:`open_clip.add_model_config`; weights are a random state dict
saved to a local file, loaded back through open_clip's own ``pretrained=``
file path like a user's real checkpoint.

Examples
--------
>>> from extractors.siglip.testing import register_tiny_config, save_random_weights
>>> name = register_tiny_config()
>>> path = save_random_weights(out_dir + "/tiny.pt", name, seed=0)
>>> name, path.endswith("tiny.pt")
('embstore-tiny-SigLIP', True)
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embstore._optional import attempt_import

__all__ = [
    "TINY_CONFIG",
    "TINY_MODEL_NAME",
    "register_tiny_config",
    "save_random_weights",
    "write_tiny_panoptic",
]

#: Name under which :func:`register_tiny_config` registers the config.
TINY_MODEL_NAME = "embstore-tiny-SigLIP"

#: A ViT with 2 layers of width 64 on 32x32 inputs; a SigLIP-style model
#: (``init_logit_bias``, text tower without causal mask).
TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "init_logit_bias": -10,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32},
    # vocab_size covers open_clip's default SimpleTokenizer (the ids extract_texts feeds it)
    "text_cfg": {
        "context_length": 8,
        "vocab_size": 49408,
        "width": 32,
        "heads": 2,
        "layers": 1,
        "no_causal_mask": True,
    },
}

_REGISTERED: dict[str, str] = {}


class _DropRandomInitWarning(logging.Filter):
    """Drop open_clip's "No pretrained weights loaded" warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


def register_tiny_config(
    name: str = TINY_MODEL_NAME, directory: str | os.PathLike | None = None
) -> str:
    """Write :data:`TINY_CONFIG` as ``<name>.json`` and register it with open_clip.

    Parameters
    ----------
    name : str, default :data:`TINY_MODEL_NAME`
        Model name (the JSON file's stem).
    directory : path, optional
        Where to write the JSON; a fresh temporary directory by default.

    Returns
    -------
    str
        ``name``, usable as ``model_name`` of
        :class:`~extractors.siglip.SiglipExtractor`.
    """
    open_clip = attempt_import("open_clip")
    if name in _REGISTERED and name in open_clip.list_models():
        return name
    directory = (
        Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="embstore-oc-"))
    )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(TINY_CONFIG), encoding="utf-8")
    open_clip.add_model_config(path)
    _REGISTERED[name] = str(path)
    return name


def save_random_weights(
    path: str | os.PathLike, model_name: str = TINY_MODEL_NAME, seed: int = 0
) -> str:
    """Save the state dict of a randomly initialised open_clip model.

    Parameters
    ----------
    path : path
        Output ``.pt`` file.
    model_name : str, default :data:`TINY_MODEL_NAME`
        A registered open_clip model name (registered first if it is the tiny one).
    seed : int, default 0
        ``torch.manual_seed`` before building the model.

    Returns
    -------
    str
        ``path`` as a string.
    """
    torch = attempt_import("torch")
    open_clip = attempt_import("open_clip")
    if model_name == TINY_MODEL_NAME:
        register_tiny_config()
    torch.manual_seed(seed)
    quiet = _DropRandomInitWarning()
    logging.getLogger().addFilter(quiet)  # random weights are the point here
    try:
        model = open_clip.create_model(model_name, pretrained=None, device="cpu")
    finally:
        logging.getLogger().removeFilter(quiet)
    # random biases too, so that tests see non-trivial values everywhere
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.02 * torch.randn(p.shape, generator=gen))
    torch.save(model.state_dict(), os.fspath(path))
    return os.fspath(path)


def write_tiny_panoptic(root: str | os.PathLike, n_images: int = 2) -> Path:
    """A COCO-panoptic ``val`` split of real photos with two segments each.

    Photos from scikit-image (astronaut, coffee, chelsea, ...), quartered in
    size; segment ``A`` is a disc (category ``person``), segment ``B`` the top
    fifth of the image (category ``sky``).

    Parameters
    ----------
    root : str or path-like
        The COCO root to write (``val2017/``, ``annotations/``).
    n_images : int, default 2
        Images (at most 4).

    Returns
    -------
    pathlib.Path
        ``root``.

    Examples
    --------
    >>> from extractors.siglip.panoptic import PanopticDataset
    >>> ds = PanopticDataset(write_tiny_panoptic(out_dir + "/coco"))
    >>> len(ds), ds.num_segments
    (2, 4)
    """
    import numpy as np
    from PIL import Image
    from skimage import data

    from .panoptic import encode_panoptic_ids

    photos: list[Callable[[], Any]] = [data.astronaut, data.coffee, data.chelsea, data.rocket]
    photos = photos[: max(1, int(n_images))]
    root = Path(root)
    (root / "val2017").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "panoptic_val2017").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for k, photo in enumerate(photos):
        img = photo()[::4, ::4]
        h, w = img.shape[:2]
        image_id, fname = 1000 + k, f"{1000 + k:012d}"
        yy, xx = np.mgrid[:h, :w]
        ids = np.zeros((h, w), np.int64)
        ids[(yy - h // 2) ** 2 + (xx - w // 3) ** 2 < (min(h, w) // 4) ** 2] = 300 + k
        ids[: h // 5, :] = 2 + k
        Image.fromarray(img).save(root / "val2017" / f"{fname}.jpg", quality=95)
        png = encode_panoptic_ids(ids)
        Image.fromarray(png).save(root / "annotations" / "panoptic_val2017" / f"{fname}.png")
        info = []
        for sid, cat in ((300 + k, 1), (2 + k, 2)):
            ys, xs = np.where(ids == sid)
            box = [int(xs.min()), int(ys.min()), int(np.ptp(xs) + 1), int(np.ptp(ys) + 1)]
            info.append({"id": sid, "category_id": cat, "iscrowd": 0, "area": len(ys), "bbox": box})
        images.append({"id": image_id, "file_name": f"{fname}.jpg", "width": w, "height": h})
        annotations.append(
            {"image_id": image_id, "file_name": f"{fname}.png", "segments_info": info}
        )
    cats = [
        {"id": 1, "name": "person", "isthing": 1, "supercategory": "person"},
        {"id": 2, "name": "sky", "isthing": 0, "supercategory": "sky"},
    ]
    (root / "annotations" / "panoptic_val2017.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": cats})
    )
    return root
