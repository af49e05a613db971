"""Import and export of the old file-per-item layouts.

- :mod:`embstore.legacy.detr_pt`: DETR ``embedding_{image_id:012d}.pt`` files
  plus ``metadata.json`` (:func:`import_detr_dir`, :func:`export_detr_dir`).
- :mod:`embstore.legacy.face_npy`: face ``final_embs.npy`` /
  ``final_embs_norm.npy`` + ``final_fpaths.npy`` + ``final_indices.npy``, or
  split ``embs_0.npy`` ... (:func:`import_face_npy`, :func:`export_face_npy`).
- :mod:`embstore.legacy.siglip_cache`: SigLIP ``<image_id>_<segment_id>.npy``
  files plus ``inst2feat.tsv`` (:func:`import_siglip_cache`,
  :func:`export_siglip_cache`).

Importing this package imports neither torch nor anything heavy; torch is
imported (lazily) only to read ``.pt`` files.

Examples
--------
Write an example store in the old per-image ``.pt`` layout, then import it:

>>> import os
>>> from embstore.legacy import export_detr_dir, import_detr_dir
>>> old = os.path.join(out_dir, "embeddings_output")
>>> export_detr_dir(demo_path, old, variables=["query_embeddings"], ids=range(8))
8
>>> report = import_detr_dir(old, os.path.join(out_dir, "run.zarr"))
>>> report.imported, report.unreadable
(8, [])
"""

from __future__ import annotations

from .._lazy import lazy_attributes

__all__ = [
    "ImportReport",
    "export_detr_dir",
    "export_face_npy",
    "export_siglip_cache",
    "import_detr_dir",
    "import_face_npy",
    "import_siglip_cache",
]

_LAZY = {
    "ImportReport": "embstore.legacy.detr_pt",
    "import_detr_dir": "embstore.legacy.detr_pt",
    "export_detr_dir": "embstore.legacy.detr_pt",
    "import_face_npy": "embstore.legacy.face_npy",
    "export_face_npy": "embstore.legacy.face_npy",
    "import_siglip_cache": "embstore.legacy.siglip_cache",
    "export_siglip_cache": "embstore.legacy.siglip_cache",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
