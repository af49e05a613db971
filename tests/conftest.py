"""Fixtures shared by the test suite (built with :mod:`embstore.testing`).

Session-scoped stores are built once and must not be modified: a test that
writes to one copies it first (``writable_detr_store``) or builds its own.

``detr_store``
    path of a synthetic DETR store (:func:`embstore.testing.stores.detr_store`:
    120 images, ``query_embeddings`` 8 x 16, boxes, logits, ``skin``/``lighting``).
``face_store``
    path of a face store (:func:`embstore.testing.stores.face_store`: 40 people,
    2 near-duplicate rows each, ``embedding`` 32-d, coordinate ``person``).
``writable_detr_store``
    a private copy of ``detr_store`` a test may modify.
``empty_store_path``
    a path (str) inside ``tmp_path`` where no store exists yet.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def detr_store(_example_stores: dict[str, str]) -> str:
    return _example_stores["demo_path"]


@pytest.fixture(scope="session")
def face_store(_example_stores: dict[str, str]) -> str:
    return _example_stores["face_path"]


@pytest.fixture
def writable_detr_store(detr_store: str, tmp_path: Path) -> str:
    dst = tmp_path / "demo_copy.zarr"
    shutil.copytree(detr_store, dst)
    return str(dst)


@pytest.fixture
def empty_store_path(tmp_path: Path) -> str:
    return str(tmp_path / "run.zarr")
