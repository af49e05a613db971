"""Session-wide pytest setup: example stores for the docstring examples.

Doctests across ``embstore/`` and ``extractors/`` use three names from the
doctest namespace instead of building data inline or being skipped:

``demo_path``
    a synthetic DETR store (:func:`embstore.testing.stores.detr_store`),
``face_path``
    a face-embedding store with near-duplicates
    (:func:`embstore.testing.stores.face_store`),
``out_dir``
    an empty folder for a doctest's outputs (new for each doctest).

Examples must not modify ``demo_path`` or ``face_path``; copy them first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def _example_stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from embstore.testing.stores import detr_store, face_store

    root = tmp_path_factory.mktemp("example_stores")
    return {
        "demo_path": detr_store(root / "demo.zarr"),
        "face_path": face_store(root / "faces.zarr"),
    }


@pytest.fixture(autouse=True)
def _doctest_names(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if not isinstance(request.node, pytest.DoctestItem):
        return
    namespace: dict[str, Any] = request.getfixturevalue("doctest_namespace")
    namespace.update(request.getfixturevalue("_example_stores"))
    namespace["out_dir"] = str(tmp_path)
