"""Text and image queries: rebuild the store's extractor, embed the query, search.

The extractor that wrote a store is found from its provenance attributes
(``model`` such as ``"open_clip:ViT-B-16-SigLIP"``, ``pretrained`` path and
``pretrained_sha256``). The prefix of ``model`` picks the extractor class in
:data:`PROVENANCE_BUILDERS` (module and class names only: this package
imports no model code, and torch is imported only when a query runs).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import CheckpointError, ValidationError

__all__ = ["PROVENANCE_BUILDERS", "extractor_from_store", "load_query_images"]

#: ``model`` attribute prefix -> "module:Class" with a ``from_provenance(attrs, weights, device)``.
PROVENANCE_BUILDERS = {
    "open_clip": "extractors.siglip.extractor:SiglipExtractor",
}


def extractor_from_store(store: Any, weights: Any = None, device: str = "cpu") -> Any:
    """Rebuild the extractor recorded in ``store.attrs`` (weights checked by SHA-256).

    Parameters
    ----------
    store : Store
        A store written by an extractor with provenance.
    weights : path, optional
        The weights file, when it moved since extraction.
    device : str
        Device of the rebuilt model.

    Returns
    -------
    object
        The extractor (e.g. a :class:`~extractors.siglip.SiglipExtractor`).

    Raises
    ------
    CheckpointError
        If the store records no known model, or the weights are missing or differ.
    """
    if store is None:
        raise ValidationError("this analyzer has no store (no provenance); pass extractor=.")
    attrs = store.attrs
    model = str(attrs.get("model") or "")
    prefix = model.split(":", 1)[0]
    target = PROVENANCE_BUILDERS.get(prefix)
    if target is None:
        raise CheckpointError(
            f"the store records model {model or None!r}; no extractor can be rebuilt from it "
            f"(known: {sorted(PROVENANCE_BUILDERS)}); pass extractor="
        )
    mod, cls = target.split(":")
    try:
        klass = getattr(importlib.import_module(mod), cls)
    except ImportError as exc:
        raise CheckpointError(
            f"cannot import {target} to rebuild {model!r} ({exc}); install embstore[extract]"
        ) from exc
    return klass.from_provenance(attrs, weights=weights, device=device)


def load_query_images(paths: Sequence[Any] | Any) -> list[Any]:
    """Open query image files as RGB PIL images.

    Parameters
    ----------
    paths : path or sequence of paths
        Image files.

    Returns
    -------
    list of PIL.Image.Image

    Raises
    ------
    ValidationError
        If a file is missing or not an image (the message names it).
    """
    from PIL import Image, UnidentifiedImageError

    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise ValidationError("no query images given; pass at least one path")
    out = []
    for p in items:
        try:
            with Image.open(p) as im:
                out.append(im.convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            raise ValidationError(
                f"query image {os.fspath(p)!r} cannot be read ({exc}); check the path"
            ) from exc
    return out


def search_frame_for(queries: Sequence[Any], column: str, df: Any) -> Any:
    """Replace ``query_index`` of a search result by the query itself (text or path)."""
    qi = df["query_index"].to_numpy()
    df = df.drop(columns=["query_index"])
    df.insert(0, column, np.asarray([str(q) for q in queries], dtype=object)[qi])
    return df
