"""Zarr consolidated metadata for plain readers (``xarray.open_zarr``, ``zarr.open_group``).

After each commit the Store writes the metadata of every node of a local
Zarr store into the root ``zarr.json`` (``consolidated_metadata``, the
format zarr-python writes with :func:`zarr.consolidate_metadata`), so
``xarray.open_zarr(path)`` opens without the "consolidated metadata"
warning and with one file read. The row arrays (those whose first dimension
is the row dimension) are listed with the committed row count as their
length: arrays are preallocated in whole chunks, and a plain reader sees
only the committed rows.

embstore itself never reads the consolidated metadata (its backend opens
groups with ``use_consolidated=False``); it is a snapshot for other readers
as of the last commit. Remote (fsspec) stores are left unconsolidated.

The hierarchy is read from the ``zarr.json`` files directly (no zarr event
loop): a few directory listings and small JSON reads per commit.
"""

from __future__ import annotations

import json
import os
from typing import Any

from .. import atomic

__all__ = ["write_consolidated"]


def _nodes(root: str) -> dict[str, dict[str, Any]]:
    """``{relative/path: metadata}`` of every node below ``root`` (arrays are leaves)."""
    out: dict[str, dict[str, Any]] = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        base = os.path.join(root, rel) if rel else root
        try:
            entries = list(os.scandir(base))
        except OSError:
            continue
        for e in entries:
            if not e.is_dir(follow_symlinks=False):
                continue
            try:
                with open(os.path.join(e.path, "zarr.json")) as fh:
                    meta = json.load(fh)
            except (OSError, ValueError):
                continue
            key = f"{rel}/{e.name}" if rel else e.name
            meta.pop("consolidated_metadata", None)
            out[key] = meta
            if meta.get("node_type") == "group":
                stack.append(key)
    return out


def write_consolidated(
    backend: Any,
    rows: int | None = None,
    row_dim: str | None = None,
    lengths: dict[str, int] | None = None,
) -> bool:
    """Write consolidated metadata into the root ``zarr.json`` of a local Zarr store.

    Parameters
    ----------
    backend : embstore.store.backends.Backend
        The store's backend; anything but a local Zarr store is left alone.
    rows : int, optional
        Committed rows: arrays whose first dimension is ``row_dim`` are listed
        with at most this length.
    row_dim : str, optional
        The row dimension.
    lengths : dict, optional
        Array name -> committed length of its first axis (ragged token arrays).

    Returns
    -------
    bool
        Whether consolidated metadata was written.

    Examples
    --------
    >>> import numpy as np, os, tempfile, xarray as xr
    >>> from embstore import Store
    >>> st = Store.create(os.path.join(tempfile.mkdtemp(), "r.zarr"), variables={"e": ("d",)})
    >>> st.append([1, 2], {"e": np.zeros((2, 3))}); st.flush()
    >>> xr.open_zarr(st.path).sizes["image"]
    2
    """
    if getattr(backend, "kind", "") != "zarr" or getattr(backend, "fs", True) is not None:
        return False
    root = backend.root
    top = os.path.join(root, "zarr.json")
    try:
        with open(top) as fh:
            meta = json.load(fh)
    except (OSError, ValueError):
        return False
    nodes = _nodes(root)
    if rows is not None and row_dim is not None:
        for m in nodes.values():
            names = m.get("dimension_names") or []
            shape = m.get("shape")
            if m.get("node_type") == "array" and names and names[0] == row_dim and shape:
                shape[0] = min(int(shape[0]), int(rows))
    for name, n in (lengths or {}).items():
        node = nodes.get(name)
        if node is not None and node.get("node_type") == "array" and node.get("shape"):
            node["shape"][0] = min(int(node["shape"][0]), int(n))
    meta["consolidated_metadata"] = {"kind": "inline", "must_understand": False, "metadata": nodes}
    atomic.write_replace(
        top, json.dumps(meta, indent=2).encode()
    )  # temp file + rename, never in place
    return True
