"""merge_by_id: a property test on plain xarray objects (any ids, orders, extra coordinates).

Every row of the result holds, for its id, the values each input has for that
id (NaN where an input lacks it), whatever the inputs' row orders, the join,
and which row coordinates only one input carries.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as hst

from embstore.selection import RowIndex, attach_row_index, merge_by_id


def _view(name: str, ids: list[int], extra: str | None) -> xr.Dataset:
    ids_arr = np.asarray(ids, dtype=np.int64)
    coords = {"image_id": ("image", ids_arr), "skin": ("image", ids_arr % 3)}
    if extra is not None:
        coords[extra] = ("image", np.array([f"{extra}{i}" for i in ids], dtype=object))
    data = {name: (("image", "f"), np.stack([ids_arr * 10.0, ids_arr + 0.5], axis=1))}
    return attach_row_index(xr.Dataset(data, coords=coords), "image")


@settings(max_examples=60, deadline=None)
@given(
    a_ids=hst.lists(hst.integers(0, 40), min_size=1, max_size=25, unique=True),
    b_ids=hst.lists(hst.integers(0, 40), min_size=1, max_size=25, unique=True),
    join=hst.sampled_from(["inner", "outer", "left"]),
    extras=hst.sampled_from(
        [(None, None), (None, "cat"), ("cat", None), ("cat", "cat"), ("x", "y")]
    ),
)
def test_rows_hold_each_inputs_values_for_their_id(a_ids, b_ids, join, extras):
    a, b = _view("va", a_ids, extras[0]), _view("vb", b_ids, extras[1])
    if join == "inner" and not set(a_ids) & set(b_ids):
        return  # nothing in common: xarray gives an empty dataset
    m = merge_by_id(a, b, join=join)
    want = {
        "inner": [i for i in a_ids if i in set(b_ids)],
        "left": a_ids,
        "outer": a_ids + [i for i in b_ids if i not in set(a_ids)],
    }[join]
    assert m.image_id.values.tolist() == want
    assert all(isinstance(m.xindexes[c], RowIndex) for c in m.coords if m[c].dims == ("image",))
    for name, ids in (("va", a_ids), ("vb", b_ids)):
        for row, i in enumerate(want):
            values = m[name].values[row]
            if i in ids:
                np.testing.assert_array_equal(values, [i * 10.0, i + 0.5])
            else:
                assert np.isnan(values).all()
    assert m.skin.values.tolist() == [i % 3 for i in want]
    for k, extra in enumerate(extras):
        if extra is None:
            continue
        have = set((a_ids, b_ids)[k])
        for row, i in enumerate(want):
            got = m[extra].values[row]
            if i in have or (extras[0] == extras[1] and i in set(a_ids) | set(b_ids)):
                assert got == f"{extra}{i}"
            else:
                assert pd.isna(got)
