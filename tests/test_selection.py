"""Tests for embstore.selection: RowIndex, attach_row_index, select_rows."""

from __future__ import annotations

import pickle

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embstore.errors import SelectionError, ValidationError
from embstore.selection import (
    RowIndex,
    attach_row_index,
    detach_row_index,
    row_coord_names,
    row_mask,
    select_rows,
)

SKIN = [1, 2, 1, 3, 1, 2, 7, 7]
LIGHT = ["well_lit", "dimly_lit", "dimly_lit", "well_lit"] + [
    "well_lit",
    "dimly_lit",
    "well_lit",
    "dimly_lit",
]
FLAG = [True, False, True, False, True, False, True, True]
IDS = [100, 101, 102, 103, 104, 105, 106, 107]


def make_ds(lazy: bool = False) -> xr.Dataset:
    n = len(IDS)
    rng = np.random.default_rng(0)
    q = rng.standard_normal((n, 3, 4)).astype("float32")
    logits = rng.standard_normal((n, 3, 5)).astype("float32")
    if lazy:
        q = dsa.from_array(q, chunks=(3, 3, 4))
        logits = dsa.from_array(logits, chunks=(3, 3, 5))
    ds = xr.Dataset(
        {
            "query_embeddings": (("image", "query", "hidden"), q),
            "pred_logits": (("image", "query", "class"), logits),
        },
        coords={
            "image_id": ("image", np.array(IDS)),
            "skin": ("image", np.array(SKIN)),
            "lighting": ("image", np.array(LIGHT)),
            "flag": ("image", np.array(FLAG)),
            "query": np.arange(3),
        },
    )
    return attach_row_index(ds, "image")


def ids(obj) -> list:
    return obj["image_id"].values.tolist()


# --------------------------------------------------------------------------- #
# basic semantics
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("as_array", [False, True])
def test_scalar_list_and_combined(as_array):
    obj = make_ds()
    if as_array:
        obj = obj.query_embeddings
    assert ids(obj.sel(skin=1)) == [100, 102, 104]
    assert ids(obj.sel(skin=[1, 2])) == [100, 101, 102, 104, 105]
    # order of the list does not reorder rows: row order is preserved
    assert ids(obj.sel(skin=[2, 1])) == [100, 101, 102, 104, 105]
    assert ids(obj.sel(skin=1, lighting="well_lit")) == [100, 104]
    assert ids(obj.sel(skin=[1, 7], lighting="dimly_lit", flag=True)) == [102, 107]
    assert ids(obj.sel(flag=False)) == [101, 103, 105]


def test_single_match_keeps_row_dim():
    da = make_ds().query_embeddings
    one = da.sel(image_id=103)
    assert one.dims == ("image", "query", "hidden")
    assert one.sizes["image"] == 1
    assert one.skin.values.tolist() == [3]
    np.testing.assert_array_equal(one.values[0], da.values[3])
    assert make_ds().sel(skin=3).sizes["image"] == 1


def test_selected_data_matches_numpy():
    ds = make_ds()
    got = ds.sel(lighting="dimly_lit")
    mask = np.array(LIGHT) == "dimly_lit"
    np.testing.assert_array_equal(got.query_embeddings.values, ds.query_embeddings.values[mask])
    np.testing.assert_array_equal(got.pred_logits.values, ds.pred_logits.values[mask])


def test_other_dims_still_selectable():
    da = make_ds().query_embeddings
    out = da.sel(skin=2, query=1)
    assert out.dims == ("image", "hidden")
    assert ids(out) == [101, 105]


def test_slice_selects_inclusive_range():
    da = make_ds().query_embeddings
    assert ids(da.sel(skin=slice(2, 3))) == [101, 103, 105]
    assert ids(da.sel(image_id=slice(105, None))) == [105, 106, 107]
    with pytest.raises(SelectionError, match="step"):
        da.sel(skin=slice(1, 3, 2))


def test_label_containers_accepted():
    da = make_ds().query_embeddings
    expected = [100, 102, 104, 106, 107]
    assert ids(da.sel(skin=np.array([1, 7]))) == expected
    assert ids(da.sel(skin=(1, 7))) == expected
    assert ids(da.sel(skin=xr.DataArray([1, 7]))) == expected
    assert ids(da.sel(skin=np.int64(7))) == [106, 107]


# --------------------------------------------------------------------------- #
# laziness
# --------------------------------------------------------------------------- #
def test_dask_stays_lazy():
    ds = make_ds(lazy=True)
    out = ds.sel(skin=[1, 3], lighting="well_lit")
    assert isinstance(out.query_embeddings.data, dsa.Array)
    assert out.query_embeddings.chunks is not None
    da = ds.query_embeddings.sel(image_id=101)
    assert isinstance(da.data, dsa.Array)
    eager = make_ds(lazy=False).sel(skin=[1, 3], lighting="well_lit")
    np.testing.assert_array_equal(out.query_embeddings.values, eager.query_embeddings.values)


# --------------------------------------------------------------------------- #
# index maintenance under other operations
# --------------------------------------------------------------------------- #
def test_isel_and_slicing_keep_valid_index():
    da = make_ds().query_embeddings
    part = da.isel(image=slice(2, 6))
    assert isinstance(part.xindexes["skin"], RowIndex)
    assert ids(part.sel(skin=1)) == [102, 104]
    picked = da.isel(image=[7, 0, 3])
    assert ids(picked.sel(lighting="well_lit")) == [100, 103]
    assert ids(picked) == [107, 100, 103]
    # a scalar isel drops the row dim, the coords become scalars
    scalar = da.isel(image=2)
    assert "image" not in scalar.dims
    assert scalar.skin.item() == 1
    # chained selections
    assert ids(da.sel(lighting="dimly_lit").sel(skin=2)) == [101, 105]


def test_concat_and_equals():
    da = make_ds().query_embeddings
    a, b = da.isel(image=slice(0, 5)), da.isel(image=slice(5, None))
    joined = xr.concat([a, b], dim="image")
    assert isinstance(joined.xindexes["skin"], RowIndex)
    assert joined.equals(da)
    assert ids(joined.sel(skin=2)) == [101, 105]
    assert da.equals(da.copy(deep=True))
    assert not da.isel(image=slice(0, 4)).equals(da)
    assert da.xindexes["skin"].equals(da.copy().xindexes["skin"])
    assert not da.xindexes["skin"].equals(da.isel(image=[1, 0]).xindexes["skin"])


def test_groupby_and_arithmetic():
    ds = make_ds()
    centred = ds.query_embeddings.groupby("skin").map(lambda g: g - g.mean("image"))
    assert ids(centred) == IDS
    assert ids(centred.sel(skin=7)) == [106, 107]
    means = ds.query_embeddings.groupby("lighting").mean()
    assert sorted(means.lighting.values.tolist()) == ["dimly_lit", "well_lit"]
    doubled = (ds.query_embeddings * 2).sel(flag=True)
    np.testing.assert_allclose(doubled.values, 2 * ds.query_embeddings.values[np.array(FLAG)])
    # rows are aligned by id, as xarray aligns labels: disjoint ids -> no common row
    assert (ds.query_embeddings.sel(skin=1) + ds.query_embeddings.sel(skin=2)).sizes["image"] == 0
    both = ds.query_embeddings.sel(skin=[1, 2]) + ds.query_embeddings.sel(skin=1)
    assert ids(both) == ids(ds.sel(skin=1))


def test_roll_rename_pickle_and_pandas():
    ds = make_ds()
    rolled = ds.roll(image=1, roll_coords=True)
    assert ids(rolled)[0] == 107
    assert ids(rolled.sel(skin=3)) == [103]
    np.testing.assert_array_equal(
        rolled.sel(skin=3).query_embeddings.values, ds.sel(skin=3).query_embeddings.values
    )
    renamed = ds.rename(image="row", skin="monk")
    assert renamed.sel(monk=3).sizes["row"] == 1
    back = pickle.loads(pickle.dumps(ds.sel(skin=1)))
    assert ids(back.sel(lighting="well_lit")) == [100, 104]
    ds.sel(skin=1, lighting="well_lit")  # fills the index's lookup cache
    again = pickle.loads(pickle.dumps(ds))
    assert ids(again.sel(skin=1, lighting="dimly_lit")) == [102]
    pd_index = ds.xindexes["skin"].to_pandas_index()
    assert list(pd_index.names) == ["image_id", "skin", "lighting", "flag"]
    assert "RowIndex" in repr(ds)
    pooled = ds.query_embeddings.mean(("query", "hidden"))
    assert len(pooled.to_dataframe()) == len(IDS)  # works, but leaves indexed coords out
    df = detach_row_index(pooled).to_dataframe()
    assert df["skin"].tolist() == SKIN
    assert df["lighting"].tolist() == LIGHT


# --------------------------------------------------------------------------- #
# attach / detach / helpers
# --------------------------------------------------------------------------- #
def test_attach_is_idempotent_and_picks_up_new_coords():
    ds = make_ds()
    assert attach_row_index(ds, "image") is ds
    ds2 = ds.assign_coords(cluster=("image", [0, 1, 0, 1, 0, 1, 0, 1]))
    ds2 = attach_row_index(ds2, "image")
    index = ds2.xindexes["cluster"]
    assert isinstance(index, RowIndex)
    assert set(index.columns) == {"image_id", "skin", "lighting", "flag", "cluster"}
    assert ids(ds2.sel(cluster=1, skin=2)) == [101, 105]
    # select_rows attaches by itself
    raw = make_ds().assign_coords(cluster=("image", [0, 1, 0, 1, 0, 1, 0, 1]))
    assert ids(select_rows(raw, "image", cluster=0, lighting="well_lit")) == [100, 104, 106]


def test_attach_on_plain_and_dimension_coordinates():
    da = xr.DataArray(
        np.arange(5.0),
        dims="image_id",
        coords={"image_id": [5, 5, 6, 7, 8], "skin": ("image_id", [1, 1, 2, 2, 1])},
    )
    da = attach_row_index(da, "image_id")
    assert isinstance(da.xindexes["image_id"], RowIndex)
    assert da.sel(image_id=5).values.tolist() == [0.0, 1.0]
    assert da.sel(image_id=8).dims == ("image_id",)
    assert da.sel(skin=2, image_id=[6, 7]).values.tolist() == [2.0, 3.0]
    plain = xr.DataArray(np.zeros(3), dims="image")
    assert attach_row_index(plain, "image") is plain
    with pytest.raises(SelectionError, match="row dimension 'instance' not found"):
        attach_row_index(plain, "instance")


def test_detach_allows_dropping_a_coordinate():
    ds = make_ds()
    with pytest.raises(ValueError):
        ds.drop_vars("skin")
    plain = detach_row_index(ds).drop_vars("skin")
    assert "skin" not in plain.coords
    assert not any(isinstance(i, RowIndex) for i in plain.xindexes.values())
    assert ids(select_rows(plain, "image", lighting="well_lit")) == [100, 103, 104, 106]


def test_row_coord_names_only_1d_row_coords():
    ds = make_ds().assign_coords(score=(("image", "query"), np.zeros((8, 3))))
    assert row_coord_names(ds, "image") == ["image_id", "skin", "lighting", "flag"]


def test_set_xindex_directly_and_bad_inputs():
    ds = make_ds()
    plain = detach_row_index(ds)
    direct = plain.set_xindex(["skin", "lighting"], RowIndex)
    assert ids(direct.sel(skin=1, lighting="dimly_lit")) == [102]
    with pytest.raises(ValidationError, match="one dimension"):
        plain.set_xindex(["skin", "query"], RowIndex)
    with pytest.raises(ValidationError, match="no options"):
        plain.set_xindex(["skin"], RowIndex, foo=1)
    with pytest.raises(SelectionError, match="method"):
        direct.sel(skin=1, method="nearest")


# --------------------------------------------------------------------------- #
# errors
# --------------------------------------------------------------------------- #
def test_missing_label_raises_with_present_values():
    da = make_ds().query_embeddings
    with pytest.raises(SelectionError) as info:
        da.sel(skin=9)
    msg = str(info.value)
    assert "'skin'" in msg and "9" in msg and "[1, 2, 3, 7]" in msg
    assert isinstance(info.value, KeyError)
    with pytest.raises(KeyError, match="'lighting' equal to 'sunny'"):
        da.sel(lighting=["well_lit", "sunny"])
    with pytest.raises(SelectionError, match="pass numbers, not strings"):
        da.sel(skin="1")
    with pytest.raises(SelectionError, match="empty list"):
        da.sel(skin=[])


def test_empty_combination_raises():
    ds = make_ds()
    with pytest.raises(SelectionError, match="together") as info:
        ds.sel(skin=3, lighting="dimly_lit")
    assert "skin=3: 1" in str(info.value)


def test_many_values_are_truncated():
    n = 200
    da = xr.DataArray(np.zeros(n), dims="image", coords={"image_id": ("image", np.arange(n))})
    da = attach_row_index(da, "image")
    with pytest.raises(SelectionError) as info:
        da.sel(image_id=10_000)
    msg = str(info.value)
    assert "(200 distinct values)" in msg
    assert len(msg) < 400


def test_unknown_coordinate_lists_available():
    ds = make_ds()
    with pytest.raises(SelectionError) as info:
        select_rows(ds, "image", skn=1)
    msg = str(info.value)
    assert "'skn'" in msg and "skin" in msg and "lighting" in msg
    with pytest.raises(SelectionError, match="unknown coordinate"):
        row_mask({"skin": np.array([1, 2])}, {"age": 3})
    with pytest.raises(ValidationError, match="one value per row"):
        row_mask({"a": np.zeros(2), "b": np.zeros(3)}, {"a": 0})


def test_row_mask_plain_columns():
    cols = {"skin": np.array(SKIN), "lighting": np.array(LIGHT, dtype=object)}
    got = row_mask(cols, {"skin": [1, 7], "lighting": "well_lit"})
    expected = np.isin(SKIN, [1, 7]) & (np.array(LIGHT) == "well_lit")
    np.testing.assert_array_equal(got, expected)


# --------------------------------------------------------------------------- #
# property test against a NumPy boolean-mask reference
# --------------------------------------------------------------------------- #
COLUMN_KINDS = {
    "num": st.integers(0, 4),
    "word": st.sampled_from(["a", "b", "c", "dd"]),
    "flag": st.booleans(),
}


@st.composite
def tables_and_labels(draw):
    n = draw(st.integers(1, 25))
    table = {
        name: draw(st.lists(strat, min_size=n, max_size=n)) for name, strat in COLUMN_KINDS.items()
    }
    table["rid"] = list(range(1000, 1000 + n))
    names = draw(st.lists(st.sampled_from(sorted(table)), min_size=1, max_size=4, unique=True))
    labels = {}
    for name in names:
        pool = {
            "num": st.integers(0, 5),  # 5 never appears in the data
            "word": st.sampled_from(["a", "b", "c", "dd", "zz"]),
            "flag": st.booleans(),
            "rid": st.integers(1000, 1000 + n),
        }[name]
        if draw(st.booleans()):
            labels[name] = draw(pool)
        else:
            labels[name] = draw(st.lists(pool, min_size=1, max_size=3))
    return table, labels, draw(st.booleans()), draw(st.booleans())


def reference_mask(table, labels):
    """NumPy reference; None when some label value is absent or nothing matches."""
    n = len(table["rid"])
    mask = np.ones(n, dtype=bool)
    for name, label in labels.items():
        values = np.array(table[name])
        wanted = label if isinstance(label, list) else [label]
        for w in wanted:
            if not (values == w).any():
                return None
        mask &= np.isin(values, wanted)
    return mask if mask.any() else None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables_and_labels())
def test_property_matches_numpy_reference(case):
    table, labels, as_dataset, lazy = case
    n = len(table["rid"])
    data = np.arange(n * 2, dtype="float64").reshape(n, 2)
    values = dsa.from_array(data, chunks=(4, 2)) if lazy else data
    da = xr.DataArray(
        values,
        dims=("image", "hidden"),
        coords={k: ("image", np.array(v)) for k, v in table.items()},
        name="x",
    )
    obj = da.to_dataset() if as_dataset else da
    obj = attach_row_index(obj, "image")
    expected = reference_mask(table, labels)
    if expected is None:
        with pytest.raises(SelectionError):
            obj.sel(labels)
        return
    out = obj.sel(labels)
    got = out["x"] if as_dataset else out
    assert got.dims == ("image", "hidden")
    expected = np.flatnonzero(expected)
    ((name, label),) = labels.items() if len(labels) == 1 else ((None, None),)
    if isinstance(label, list) and len(set(table[name])) == len(table[name]):
        # a list on a unique coordinate (an id) gives the rows in the list's order, as xarray
        order = {v: k for k, v in enumerate(dict.fromkeys(label))}
        expected = np.array(sorted(expected, key=lambda i: order[table[name][i]]), dtype=int)
    assert got["rid"].values.tolist() == np.array(table["rid"])[expected].tolist()
    if lazy:
        assert isinstance(got.data, dsa.Array)
    np.testing.assert_array_equal(got.values, data[expected])
    # the result keeps a working index: selecting its own rows again is a no-op
    again = select_rows(out, "image", rid=got["rid"].values.tolist())
    assert again["rid"].values.tolist() == got["rid"].values.tolist()
    first = got["rid"].values[:1].tolist()
    assert select_rows(out, "image", rid=first)["rid"].values.tolist() == first
