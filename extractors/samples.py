"""Small offline sample data: scikit-image photos, FACET-format annotations, a tiny DETR.

Used by the demo (``make demo``), the examples and the tests, so that every
one of them runs offline in seconds. Nothing here is needed for real runs.

Examples
--------
>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> paths = write_sample_photos(folder, names=("coffee", "chelsea"))
>>> [p.name for p in paths]
['sa_1.jpg', 'sa_2.jpg']
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "SAMPLE_PEOPLE",
    "SAMPLE_PHOTOS",
    "TINY_DETR_CONFIG",
    "save_tiny_detr_checkpoint",
    "write_augmented_facet",
    "write_facet_annotations",
    "write_sample_photos",
]

#: scikit-image photos used as sample images, in image-id order (ids start at 1).
SAMPLE_PHOTOS: tuple[str, ...] = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "immunohistochemistry",
)

#: image id -> people in it as (Monk skin tone voted by 3 annotators, lighting label).
SAMPLE_PEOPLE: dict[int, list[tuple[int, str]]] = {
    1: [(1, "well_lit")],
    2: [(5, "well_lit")],
    3: [(1, "dimly_lit"), (2, "dimly_lit")],
    4: [(3, "well_lit")],
    5: [(8, "underexposed")],
    6: [(1, "dimly_lit")],
}

#: A tiny DETR (ResNet-18 backbone, small transformer) for offline demos and tests.
TINY_DETR_CONFIG: dict[str, Any] = {
    "backbone": "resnet18",
    "hidden_dim": 64,
    "nheads": 4,
    "enc_layers": 2,
    "dec_layers": 3,
    "dim_feedforward": 128,
    "num_queries": 20,
    "num_classes": 91,
}

_LIGHTING = ("well_lit", "dimly_lit", "underexposed", "overexposed", "na")


def write_sample_photos(
    folder: str | os.PathLike[str], names: Sequence[str] = SAMPLE_PHOTOS
) -> list[Path]:
    """Save scikit-image photos as JPEGs named like FACET's (``sa_<id>.jpg``).

    Parameters
    ----------
    folder : str or path-like
        Destination folder (created if needed).
    names : sequence of str
        Names of ``skimage.data`` functions; image ids are 1, 2, ... in order.

    Returns
    -------
    list of pathlib.Path
        The written files, in id order.
    """
    import skimage.data
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for image_id, name in enumerate(names, start=1):
        path = folder / f"sa_{image_id}.jpg"
        Image.fromarray(getattr(skimage.data, name)()).save(path, quality=90)
        paths.append(path)
    return paths


def write_facet_annotations(
    csv: str | os.PathLike[str],
    people: Mapping[int, Sequence[tuple[int, str]]] = SAMPLE_PEOPLE,
    box: tuple[int, int, int, int] = (10, 10, 50, 80),
) -> pd.DataFrame:
    """Write a FACET-format ``annotations.csv`` (one row per person, vote counts).

    Parameters
    ----------
    csv : str or path-like
        Destination file.
    people : mapping
        Image id -> list of ``(skin_tone, lighting)``; each person gets three
        annotator votes for that tone and that lighting label.
    box : tuple of int
        ``(x, y, width, height)`` of every person's box, in pixels.

    Returns
    -------
    pandas.DataFrame
        The rows written.
    """
    rows: list[dict[str, Any]] = []
    x, y, width, height = box
    for image_id, persons in people.items():
        for tone, light in persons:
            row: dict[str, Any] = {
                "person_id": len(rows) + 1,
                "filename": f"sa_{image_id}.jpg",
                "class1": "person",
                "class2": "",
                "bounding_box": str({"x": x, "y": y, "width": width, "height": height}),
            }
            row.update({f"skin_tone_{t}": (3 if t == tone else 0) for t in range(1, 11)})
            row["skin_tone_na"] = 0
            row.update({f"lighting_{label}": (3 if label == light else 0) for label in _LIGHTING})
            rows.append(row)
    frame = pd.DataFrame(rows)
    Path(csv).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(csv, index=False)
    return frame


def save_tiny_detr_checkpoint(path: str | os.PathLike[str], seed: int = 0) -> Path:
    """Save a tiny random-weight DETR as an official-format checkpoint.

    Parameters
    ----------
    path : str or path-like
        Destination ``.pth`` file.
    seed : int
        Seed of the random weights.

    Returns
    -------
    pathlib.Path
        ``path``; load it with ``DetrExtractor.from_checkpoint(path)``.
    """
    import torch

    from .detr import DetrExtractor

    torch.manual_seed(seed)
    model = DetrExtractor.from_config(TINY_DETR_CONFIG).model
    torch.save({"model": model.state_dict(), "args": {"nheads": TINY_DETR_CONFIG["nheads"]}}, path)
    return Path(path)


def write_augmented_facet(
    folder: str | os.PathLike[str],
    csv: str | os.PathLike[str],
    n_images: int = 240,
    size: int = 160,
    skins: Sequence[int] = (1, 3, 5, 8),
    seed: int = 0,
) -> pd.DataFrame:
    """A FACET-like set of many images made from the bundled photos.

    Every image is a random crop of one of :data:`SAMPLE_PHOTOS`, flipped at
    random and resized to ``size`` pixels; its lighting label follows a
    brightness change actually applied to it (``dimly_lit``: darkened,
    ``overexposed``: brightened, ``well_lit``: unchanged). Each image gets one
    or two synthetic people with a random skin tone and a random box. Enough
    rows per group for fairness statistics with intervals, in seconds.

    Parameters
    ----------
    folder : str or path-like
        Image folder (created); files are ``sa_<id>.jpg``, ids from 1.
    csv : str or path-like
        FACET-format ``annotations.csv`` to write.
    n_images : int, default 240
        Number of images.
    size : int, default 160
        Side of the square images, in pixels.
    skins : sequence of int, default (1, 3, 5, 8)
        Monk skin tones drawn (uniformly) for the people.
    seed : int, default 0
        Random seed (the same seed writes the same files).

    Returns
    -------
    pandas.DataFrame
        The annotation rows written (one per person).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> rows = write_augmented_facet(d / "images", d / "annotations.csv", n_images=4, size=32)
    >>> sorted(p.name for p in (d / "images").iterdir())
    ['sa_1.jpg', 'sa_2.jpg', 'sa_3.jpg', 'sa_4.jpg']
    """
    import numpy as np
    import skimage.data
    from PIL import Image, ImageEnhance, ImageOps

    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for name in SAMPLE_PHOTOS:
        arr = getattr(skimage.data, name)()
        sources.append(Image.fromarray(arr).convert("RGB"))
    lights = ("well_lit", "dimly_lit", "overexposed")
    factor = {"well_lit": 1.0, "dimly_lit": 0.35, "overexposed": 1.8}
    people: dict[int, list[tuple[int, str]]] = {}
    boxes: dict[int, list[tuple[int, int, int, int]]] = {}
    for image_id in range(1, int(n_images) + 1):
        src = sources[int(rng.integers(len(sources)))]
        w, h = src.size
        side = int(min(w, h) * rng.uniform(0.5, 1.0))
        x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        img = src.crop((x0, y0, x0 + side, y0 + side)).resize((size, size))
        if rng.random() < 0.5:
            img = ImageOps.mirror(img)
        light = lights[int(rng.choice(3, p=(0.5, 0.3, 0.2)))]
        img = ImageEnhance.Brightness(img).enhance(factor[light] * rng.uniform(0.9, 1.1))
        img.save(folder / f"sa_{image_id}.jpg", quality=85)
        n_people = int(rng.integers(1, 3))
        people[image_id] = [(int(rng.choice(skins)), light) for _ in range(n_people)]
        boxes[image_id] = []
        for _ in range(n_people):
            bw, bh = (
                int(rng.integers(size // 4, size // 2)),
                int(rng.integers(size // 3, size * 3 // 4)),
            )
            boxes[image_id].append(
                (int(rng.integers(0, size - bw)), int(rng.integers(0, size - bh)), bw, bh)
            )
    frames = []
    for image_id, persons in people.items():
        for (tone, light), box in zip(persons, boxes[image_id]):
            frames.append(write_facet_annotations(csv, {image_id: [(tone, light)]}, box=box))
    frame = pd.concat(frames, ignore_index=True)
    frame["person_id"] = range(1, len(frame) + 1)
    frame.to_csv(csv, index=False)
    return frame
