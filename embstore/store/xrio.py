"""Attributes and files of the store's xarray views (netCDF, Zarr).

netCDF attributes hold strings, numbers and flat lists of numbers only;
store attributes may be nested (``model_config`` is a dict). The views
(:attr:`embstore.Store.dataset`, :meth:`embstore.Store.sel`) therefore carry
nested values as JSON strings and list their names in the
``embstore_json_attrs`` attribute, so ``to_netcdf`` and ``to_zarr`` write them
as they are. :func:`open_dataset` reads such a file back with the values
decoded and the row index attached again.

Examples
--------
>>> enc = encode_attrs({"model": "detr", "model_config": {"layers": 6}, "n": 3})
>>> enc["model_config"], enc["embstore_json_attrs"]
('{"layers": 6}', '["model_config"]')
>>> decode_attrs(enc) == {"model": "detr", "model_config": {"layers": 6}, "n": 3}
True
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path
from typing import Any

__all__ = ["JSON_ATTRS_KEY", "ROW_DIM_KEY", "decode_attrs", "encode_attrs", "open_dataset"]

#: attribute listing the names of JSON-encoded attributes
JSON_ATTRS_KEY = "embstore_json_attrs"
#: attribute naming the row dimension of a view (used to attach the row index on open)
ROW_DIM_KEY = "embstore_row_dim"


def _plain(value: Any) -> bool:
    """Whether netCDF stores ``value`` as it is (str, number, flat list of numbers)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (str, numbers.Number)):
        return True
    if isinstance(value, (list, tuple)) and value:
        return all(isinstance(v, numbers.Number) and not isinstance(v, bool) for v in value)
    return False


def encode_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Attributes with every non-plain value (dict, None, bool, mixed list) as a JSON string.

    Parameters
    ----------
    attrs : dict
        Attributes (JSON-serialisable values).

    Returns
    -------
    dict
        The same keys; encoded names listed under :data:`JSON_ATTRS_KEY`.
    """
    out: dict[str, Any] = {}
    encoded = []
    for k, v in attrs.items():
        if k == JSON_ATTRS_KEY:
            continue
        if _plain(v):
            out[k] = list(v) if isinstance(v, tuple) else v
        else:
            out[k] = json.dumps(v)
            encoded.append(k)
    if encoded:
        out[JSON_ATTRS_KEY] = json.dumps(encoded)
    return out


def decode_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`encode_attrs` (attributes without the marker are returned as they are).

    Parameters
    ----------
    attrs : dict
        Attributes as read from a file.

    Returns
    -------
    dict
    """
    raw = attrs.get(JSON_ATTRS_KEY)
    out = {k: v for k, v in attrs.items() if k != JSON_ATTRS_KEY}
    if raw is None:
        return out
    for k in json.loads(raw):
        if isinstance(out.get(k), str):
            out[k] = json.loads(out[k])
    for k, v in out.items():  # netCDF reads number lists back as arrays
        if hasattr(v, "tolist") and not isinstance(v, str):
            out[k] = v.tolist()
    return out


def open_dataset(path: str | Path, **kwargs: Any) -> Any:
    """Open a netCDF or Zarr file written from a store view, as the view was.

    Nested attributes are decoded from JSON and the row index
    (:class:`~embstore.selection.RowIndex`) is attached again, so
    ``.sel(skin=1)`` works as on the store.

    Parameters
    ----------
    path : str or pathlib.Path
        A file written by ``st.dataset.to_netcdf(...)`` / ``to_zarr(...)``
        (``.zarr`` directories are opened with the zarr engine).
    **kwargs
        Passed to :func:`xarray.open_dataset`.

    Returns
    -------
    xarray.Dataset

    Examples
    --------
    A copy of the demo store gets a nested attribute; a selection of it is
    written to netCDF and read back:

    >>> import os, shutil
    >>> from embstore import Store
    >>> path = shutil.copytree(demo_path, os.path.join(out_dir, "run.zarr"))
    >>> with Store.open(path, mode="a") as st:
    ...     st.update_attrs(model_config={"num_queries": 8, "layers": [6, 6]})
    >>> st = Store.open(path)
    >>> nc = os.path.join(out_dir, "subset.nc")
    >>> st.sel(skin=1).to_netcdf(nc, engine="h5netcdf")
    >>> ds = open_dataset(nc, engine="h5netcdf")
    >>> ds.attrs["model_config"]
    {'num_queries': 8, 'layers': [6, 6]}
    >>> bool((ds.query_embeddings.values == st.sel(skin=1).query_embeddings.values).all())
    True
    >>> ds.sel(lighting="well_lit").skin.values.tolist() == (
    ...     st.sel(skin=1, lighting="well_lit").skin.values.tolist())   # the row index is back
    True
    """
    import xarray as xr

    from ..selection import attach_row_index

    path = str(path)
    if path.rstrip("/").endswith(".zarr"):
        kwargs.setdefault("engine", "zarr")
    ds = xr.open_dataset(path, **kwargs)
    ds.attrs = decode_attrs(dict(ds.attrs))
    row_dim = ds.attrs.get(ROW_DIM_KEY)
    if row_dim in ds.dims:
        ds = attach_row_index(ds, row_dim)
    return ds
