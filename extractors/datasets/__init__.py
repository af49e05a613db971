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
>>> import pandas as pd
>>> persons = pd.DataFrame({"person_id": [1, 2], "image_id": [7, 7],
...     "skin_tone_1": [0, 2], "skin_tone_2": [3, 0], "skin_tone_na": [0, 0]})
>>> image_table_from_persons(persons)["skin"].tolist()
[2]
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
