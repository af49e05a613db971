"""Image inputs for extraction: folders, text lists, COCO JSON, FACET CSV.

Every input becomes an :class:`ImageDataset`: an iterable of
:class:`ImageRecord` (``image_id``, ``path``, per-image ``coords``) with, for
annotated inputs, an image table and a person table.

Modules
-------
- :mod:`.records`: :class:`ImageRecord`, :class:`ImageDataset` (and its filters).
- :mod:`.files`: image folders and text lists (generic inputs; image ids).
- :mod:`.labels`: FACET skin / lighting parsing and the majority rules.
- :mod:`.facet`: FACET ``annotations.csv``.
- :mod:`.coco`: COCO-format JSON.
- :mod:`.auto`: :func:`open_dataset`, which picks one of the above.

Library errors name the Python parameter (``pass annotations=...``); the
command line rewrites such advice into its flags.

Examples
--------
>>> import os
>>> from PIL import Image
>>> for name in ("sa_1.jpg", "sa_2.jpg"):
...     Image.new("RGB", (8, 8)).save(os.path.join(out_dir, name))
>>> ds = open_dataset(out_dir)
>>> ds.kind, [r.image_id for r in ds]
('folder', [1, 2])
"""

from __future__ import annotations

from .auto import open_dataset
from .coco import coco_dataset
from .facet import facet_dataset, read_facet_annotations
from .files import folder_dataset, list_dataset
from .labels import LIGHTING_LABELS, image_table_from_persons, parse_light, parse_skin
from .records import ImageDataset, ImageRecord

__all__ = [
    "LIGHTING_LABELS",
    "ImageDataset",
    "ImageRecord",
    "coco_dataset",
    "facet_dataset",
    "folder_dataset",
    "image_table_from_persons",
    "list_dataset",
    "open_dataset",
    "parse_light",
    "parse_skin",
    "read_facet_annotations",
]
