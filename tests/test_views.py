"""The store's xarray views behave like xarray (issue 12).

* float16 storage is decoded to float32 in the views: reductions agree with
  the float32 computation, with no RuntimeWarning;
* a list selection on the id returns the requested order;
* two stores over the same ids merge / align / reindex by id;
* views pickle (and read in another process);
* ``to_netcdf`` (h5netcdf) and ``to_zarr`` round-trip, nested attrs as JSON;
* Zarr consolidated metadata: ``xarray.open_zarr`` opens with no warning and
  shows only the committed rows;
* lazy selections reach the store's point reader with exactly the selected rows;
* the default variable (analyzer and CLI) and the recorded run metadata.

Run for Zarr and HDF5 where the behaviour is backend-independent.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from embstore import EmbeddingAnalyzer, Store
from embstore.errors import SelectionError, UnknownVariableError, ValidationError
from embstore.selection import attach_row_index, shared_row_coords
from embstore.store.lazyrows import StoreBackendArray, decoded_dtype
from embstore.store.xrio import decode_attrs, encode_attrs, open_dataset

N = 64
LIGHT = np.array(["well_lit", "dimly_lit"])


def _make(
    path, *, ids=None, seed=0, scale=40.0, offset=0.81, variables=None, coords=None, attrs=None
):
    """A DETR-like store of float16 query embeddings large enough to overflow float16 sums."""
    rng = np.random.default_rng(seed)
    ids = np.arange(N) if ids is None else np.asarray(ids)
    n = len(ids)
    q = (rng.standard_normal((n, 10, 32)) * scale + offset * scale).astype(np.float32)
    variables = variables or {"query_embeddings": ("query", "hidden")}
    data = {name: q if len(dims) == 2 else q[:, 0, :] for name, dims in variables.items()}
    coords = coords if coords is not None else {"skin": (ids % 4) + 1, "lighting": LIGHT[ids % 2]}
    with Store.create(path, variables=variables, attrs=attrs or {}) as st:
        st.append(ids, data, coords=coords)
    return ids, q.astype(np.float16).astype(np.float32)


@pytest.fixture(params=["zarr", "h5"])
def ext(request):
    return request.param


# --------------------------------------------------------------------- numbers
def test_float16_storage_decoded_to_float32(tmp_path, ext):
    path = str(tmp_path / f"r.{ext}")
    ids, ref = _make(path)
    st = Store.open(path)
    assert st.dtypes["query_embeddings"] == "float16"  # storage stays float16
    assert st.read("query_embeddings").dtype == np.float16
    q = st.query_embeddings
    assert q.dtype == np.float32  # what the user computes on
    assert ref.sum() > 65504  # the float16 sum would overflow
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning (overflow) anywhere
        got = {
            "mean": float(q.mean()),
            "std": float(q.std()),
            "sum": float(q.sum()),
            "abs_mean": float(abs(q).mean()),
        }
        grouped = abs(q).groupby("lighting").mean(...)
        per_query = q.mean("image").values
        frame = q.isel(query=0).to_dataframe()
    want = {
        "mean": ref.mean(dtype=np.float64),
        "std": ref.std(dtype=np.float64),
        "sum": ref.sum(dtype=np.float64),
        "abs_mean": np.abs(ref).mean(dtype=np.float64),
    }
    for k in got:
        assert got[k] == pytest.approx(want[k], rel=1e-3), k
    for label in LIGHT:
        exp = np.abs(ref[ids % 2 == list(LIGHT).index(label)]).mean(dtype=np.float64)
        assert float(grouped.sel(lighting=label)) == pytest.approx(exp, rel=1e-3)
    np.testing.assert_allclose(per_query, ref.mean(axis=0, dtype=np.float64), rtol=1e-3, atol=1e-3)
    assert np.isfinite(frame["query_embeddings"]).all()
    # dask (chunked) reductions agree too
    assert float(q.chunk({"image": 16}).sum().compute()) == pytest.approx(want["sum"], rel=1e-3)


def test_decoded_dtype():
    assert decoded_dtype("float16") == np.float32
    assert decoded_dtype("float32") == np.float32
    assert decoded_dtype("int8") == np.int8


# ----------------------------------------------------------- selection order
def test_list_selection_keeps_requested_order(tmp_path, ext):
    path = str(tmp_path / f"r.{ext}")
    ids, ref = _make(path)
    st = Store.open(path)
    q = st.query_embeddings
    sub = q.sel(image_id=[3, 1, 2])
    assert sub.image_id.values.tolist() == [3, 1, 2]
    np.testing.assert_array_equal(sub.values, ref[[3, 1, 2]])
    assert st.sel(image_id=[3, 1, 2]).image_id.values.tolist() == [3, 1, 2]
    np.testing.assert_array_equal(st.sel(image_id=[9, 0]).query_embeddings.values, ref[[9, 0]])
    # lists on non-unique coordinates keep the row order (OR of the labels)
    assert q.sel(skin=[2, 1]).image_id.values.tolist() == [i for i in ids if i % 4 in (0, 1)]
    with pytest.raises(SelectionError, match="values present"):
        q.sel(image_id=[3, 1000])


# ------------------------------------------------------------ combining stores
def _second_store(path, ref_ids, order, extra=False):
    """A 'SigLIP' store over some of the same images, in another row order."""
    ids = np.asarray(ref_ids)[order]
    coords = {"skin": (ids % 4) + 1, "lighting": LIGHT[ids % 2]}
    if extra:
        coords["category"] = np.where(ids % 3 == 0, "person", "other")
    rng = np.random.default_rng(5)
    emb = rng.standard_normal((len(ids), 8)).astype(np.float32)
    with Store.create(
        path, variables={"embedding": ("feature",)}, dtypes={"embedding": "float32"}
    ) as st:
        st.append(ids, {"embedding": emb}, coords=coords)
    return ids, emb


def test_merge_align_reindex_two_stores(tmp_path, ext):
    a_path, b_path = str(tmp_path / f"a.{ext}"), str(tmp_path / f"b.{ext}")
    ids, ref = _make(a_path)
    order = np.random.default_rng(1).permutation(N)[: N - 10]  # other order, 10 ids missing
    b_ids, emb = _second_store(b_path, ids, order)
    a, b = Store.open(a_path), Store.open(b_path)

    merged = xr.merge([a.dataset, b.dataset], join="inner", compat="override")
    common = [i for i in ids if i in set(b_ids.tolist())]
    assert merged.image_id.values.tolist() == common  # the first object's order
    b_pos = {int(i): k for k, i in enumerate(b_ids)}
    for i in (common[0], common[7], common[-1]):
        row = merged.sel(image_id=[i])
        np.testing.assert_array_equal(row.query_embeddings.values[0], ref[i])
        np.testing.assert_array_equal(row.embedding.values[0], emb[b_pos[int(i)]])
    assert merged.sel(skin=2).sizes["image"] == sum(1 for i in common if i % 4 == 1)

    a2, b2 = xr.align(a.query_embeddings, b.embedding, join="inner")
    assert a2.image_id.values.tolist() == b2.image_id.values.tolist() == common
    np.testing.assert_array_equal(
        b2.sel(image_id=[common[3]]).values[0], emb[b_pos[int(common[3])]]
    )

    # reindex_like: b on a's rows, the 10 ids b lacks are NaN
    r = b.embedding.reindex_like(a.query_embeddings)
    assert r.image_id.values.tolist() == ids.tolist()
    missing = ~np.isin(ids, b_ids)
    assert np.isnan(r.values[missing]).all() and not np.isnan(r.values[~missing]).any()

    # arithmetic aligns by id as well (inner join)
    total = a.query_embeddings.isel(query=0, hidden=0) + b.embedding.isel(feature=0)
    assert total.image_id.values.tolist() == common


def test_merge_with_extra_coordinates_same_rows(tmp_path, ext):
    """A store with more coordinates merges once its rows are those of the other one."""
    a_path, b_path = str(tmp_path / f"a.{ext}"), str(tmp_path / f"b.{ext}")
    ids, _ref = _make(a_path)
    order = np.random.default_rng(2).permutation(N)
    _second_store(b_path, ids, order, extra=True)
    a, b = Store.open(a_path), Store.open(b_path)
    with pytest.raises(Exception, match="conflicting indexes|same row coordinates") as err:
        xr.merge([a.dataset, b.dataset], join="inner", compat="override")
    assert "embstore.selection.merge_by_id" in str(err.value)  # xarray's error names the way out
    # shared_row_coords keeps the coordinates both have; then rows match by id in any order
    merged = xr.merge(shared_row_coords(a.dataset, b.dataset), join="inner", compat="override")
    assert merged.image_id.values.tolist() == ids.tolist()
    pos = {int(i): k for k, i in enumerate(ids[order])}
    np.testing.assert_array_equal(merged.embedding.values[5], b.read("embedding")[pos[5]])
    assert merged.sel(skin=[2, 3], lighting="well_lit").image_id.values.tolist() == [
        i for i in ids if i % 4 == 2
    ]
    # the extra coordinate comes back by id
    cat = b.coords["category"].reindex(merged.image_id.values).to_numpy()
    with_cat = attach_row_index(merged.assign_coords(category=("image", cat)), "image")
    assert with_cat.sel(category="person").image_id.values.tolist() == [
        i for i in ids if i % 3 == 0
    ]


@pytest.mark.parametrize("join", ["inner", "outer", "left"])
def test_merge_by_id_keeps_extra_coordinates(tmp_path, ext, join):
    """merge_by_id: other row order, ids missing on one side, an extra coordinate."""
    from embstore.selection import merge_by_id

    a_path, b_path = str(tmp_path / f"a.{ext}"), str(tmp_path / f"b.{ext}")
    ids, ref = _make(a_path, ids=np.arange(N) + 100)
    order = np.random.default_rng(3).permutation(N)[: N - 9]
    b_ids, emb = _second_store(
        b_path, np.concatenate([ids[5:], [900, 901, 902, 903, 904]]), order, extra=True
    )
    a, b = Store.open(a_path), Store.open(b_path)
    m = merge_by_id(a.dataset, b.dataset, join=join)
    a_set, b_set = set(ids.tolist()), set(b_ids.tolist())
    want_ids = {
        "inner": [i for i in ids.tolist() if i in b_set],
        "left": ids.tolist(),
        "outer": ids.tolist() + [i for i in b_ids.tolist() if i not in a_set],
    }[join]
    assert m.image_id.values.tolist() == want_ids
    assert isinstance(m.xindexes["category"], type(m.xindexes["image_id"]))  # one RowIndex
    b_pos = {int(i): k for k, i in enumerate(b_ids)}
    a_pos = {int(i): k for k, i in enumerate(ids)}
    for row, i in enumerate(want_ids):
        got_cat = m.category.values[row]
        if i in b_pos:
            assert got_cat == ("person" if i % 3 == 0 else "other")
            np.testing.assert_array_equal(m.embedding.values[row], emb[b_pos[i]])
        else:
            assert pd.isna(got_cat) and np.isnan(m.embedding.values[row]).all()
        if i in a_pos:
            np.testing.assert_array_equal(m.query_embeddings.values[row], ref[a_pos[i]])
        assert m.skin.values[row] == i % 4 + 1  # shared coordinates come from either side
    in_b = [i for i in want_ids if i in b_pos]
    sel = m.sel(category="person", skin=[1, 2])
    assert sel.image_id.values.tolist() == [i for i in in_b if i % 3 == 0 and i % 4 in (0, 1)]


def test_reindex_by_id(tmp_path, ext):
    from embstore.selection import reindex_by_id

    path = str(tmp_path / f"r.{ext}")
    _ids, ref = _make(path)
    st = Store.open(path)
    with pytest.raises(Exception, match="conflicting indexes") as err:
        st.query_embeddings.reindex(image_id=[3, 1])  # xarray: the id is not a dimension
    assert "reindex_by_id" in str(err.value)
    r = reindex_by_id(st.query_embeddings, [5, 999, 2])
    assert r.image_id.values.tolist() == [5, 999, 2] and r.dtype == np.float32
    np.testing.assert_array_equal(r.values[[0, 2]], ref[[5, 2]])
    assert np.isnan(r.values[1]).all()
    assert r.skin.values[0] == 2 and np.isnan(r.skin.values[1])
    assert r.sel(image_id=[2]).lighting.values.tolist() == ["well_lit"]
    ds = reindex_by_id(st.dataset, np.array([4, 0]))
    np.testing.assert_array_equal(ds.query_embeddings.values, ref[[4, 0]])
    with pytest.raises(ValidationError, match="unique"):
        reindex_by_id(st.query_embeddings, [1, 1])


def test_merge_by_id_errors(tmp_path):
    from embstore.selection import merge_by_id

    path = str(tmp_path / "a.zarr")
    _make(path)
    st = Store.open(path)
    with pytest.raises(ValidationError, match="at least two"):
        merge_by_id(st.dataset)
    with pytest.raises(ValidationError, match="join must be"):
        merge_by_id(st.dataset, st.dataset, join="exact")
    with pytest.raises(ValidationError, match="without a name"):
        merge_by_id(st.dataset, st.query_embeddings.rename(None))
    other = st.dataset.rename(image_id="other_id")
    with pytest.raises(ValidationError, match="unique values"):
        merge_by_id(st.dataset, other)
    # a named DataArray is accepted
    m = merge_by_id(st.query_embeddings.rename("q2"), st.dataset.isel(image=slice(0, 5)))
    assert m.image_id.values.tolist() == list(range(5)) and set(m.data_vars) == {
        "q2",
        "query_embeddings",
    }


def test_drop_and_unindex_row_coords(tmp_path, ext):
    from embstore.selection import drop_row_coords, unindex_row_coords

    path = str(tmp_path / f"r.{ext}")
    ids, ref = _make(path)
    q = Store.open(path).query_embeddings
    dropped = drop_row_coords(q, "skin")
    assert "skin" not in dropped.coords and set(dropped.coords) == set(q.coords) - {"skin"}
    both = dropped.sel(lighting="well_lit", image_id=[6, 2, 3])  # several coordinates at once
    assert both.image_id.values.tolist() == [2, 6]
    sub = dropped.sel(image_id=[6, 2])
    assert sub.image_id.values.tolist() == [6, 2]
    np.testing.assert_array_equal(sub.values, ref[[6, 2]])  # still the store's rows, lazily
    assert isinstance(dropped.variable._data, type(q.variable._data))
    plain = unindex_row_coords(q, "skin", "lighting")
    assert plain.skin.values.tolist() == q.skin.values.tolist()
    assert "skin" not in plain.xindexes and "image_id" in plain.xindexes
    assert plain.sel(image_id=[5]).skin.values.tolist() == [2]
    # overwrite the unindexed coordinate, index it again
    relabeled = attach_row_index(plain.assign_coords(skin=("image", ids % 2)), "image")
    assert relabeled.sel(skin=1, lighting="dimly_lit").sizes["image"] == N // 2
    with pytest.raises(SelectionError, match="row coordinates are"):
        drop_row_coords(q, "nope")
    with pytest.raises(ValidationError, match="no RowIndex"):
        unindex_row_coords(detach_row_index_of(q), "skin")


def detach_row_index_of(obj):
    from embstore.selection import detach_row_index

    return detach_row_index(obj)


def test_drop_and_reset_one_coordinate(tmp_path):
    """xarray's rules for a multi-coordinate index; detach_row_index is the way out."""
    from embstore.selection import attach_row_index, detach_row_index

    path = str(tmp_path / "r.zarr")
    _make(path)
    q = Store.open(path).query_embeddings
    with pytest.raises(ValueError, match="corrupt(.|\n)*drop_row_coords"):
        q.drop_vars("skin")
    plain = detach_row_index(q).drop_vars("skin")
    again = attach_row_index(plain, "image")
    assert "skin" not in again.coords
    assert again.sel(lighting="well_lit").sizes["image"] == N // 2
    reset = q.reset_index("image_id")  # drops the whole row index, keeps the coordinates
    assert set(reset.coords) == set(q.coords) and not reset.xindexes
    assert reset.sel(skin=1).sizes["image"] == N // 4  # xarray indexes one coordinate on the fly
    # resetting one coordinate also drops the whole index (xarray keeps the others
    # only for pandas.MultiIndex); selecting on two coordinates then fails in xarray
    reset_skin = q.reset_index("skin")
    assert not reset_skin.xindexes and set(reset_skin.coords) == set(q.coords)
    with pytest.raises(ValueError, match="more than one index"):
        reset_skin.sel(skin=1, lighting="well_lit")
    # the documented way keeps the other coordinates indexed, also for several at once
    kept = attach_row_index(detach_row_index(q).drop_vars("skin"), "image")
    assert kept.sel(lighting="well_lit", image_id=[4, 2]).image_id.values.tolist() == [2, 4]


# ---------------------------------------------------------------------- pickle
def test_views_read_after_the_store_is_closed(tmp_path, ext):
    path = str(tmp_path / f"r.{ext}")
    _ids, ref = _make(path)
    with Store.open(path) as st:
        view = st.query_embeddings.sel(skin=2)
    np.testing.assert_array_equal(view.values, ref[1::4])  # reopened read-only


def _values_in_child(blob):
    return pickle.loads(blob).values


def test_views_pickle(tmp_path, ext):
    path = str(tmp_path / f"r.{ext}")
    _ids, ref = _make(path)
    st = Store.open(path)
    for view in (
        st.query_embeddings,
        st.query_embeddings.sel(skin=[1, 3]),
        st.dataset,
        st.sel(skin=2),
    ):
        back = pickle.loads(pickle.dumps(view))
        xr.testing.assert_identical(back.load(), view.load())
    back = pickle.loads(pickle.dumps(st.query_embeddings.sel(lighting="dimly_lit")))
    assert back.sel(skin=2).sizes["image"] == N // 4
    np.testing.assert_array_equal(back.values, ref[1::2])


def test_views_go_to_another_process(tmp_path):
    import concurrent.futures
    import multiprocessing

    path = str(tmp_path / "r.zarr")
    _ids, ref = _make(path)
    view = Store.open(path).query_embeddings.sel(skin=3)
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        got = pool.submit(_values_in_child, pickle.dumps(view)).result(timeout=120)
    np.testing.assert_array_equal(got, ref[2::4])


# ---------------------------------------------------------------- file export
@pytest.mark.parametrize("fmt", ["netcdf", "zarr"])
def test_export_round_trip(tmp_path, ext, fmt):
    pytest.importorskip("h5netcdf")
    path = str(tmp_path / f"r.{ext}")
    _make(
        path,
        attrs={"model_config": {"hidden_dim": 32, "layers": [6, 6]}, "note": None, "flag": True},
    )
    st = Store.open(path)
    for k, src in enumerate([st.dataset, st.sel(skin=[1, 2], lighting="well_lit")]):
        out = str(tmp_path / f"out{k}.{'nc' if fmt == 'netcdf' else 'zarr'}")
        if fmt == "netcdf":
            src.to_netcdf(out, engine="h5netcdf")
        else:
            src.to_zarr(out, consolidated=True)
        back = open_dataset(out)
        assert back.equals(src)
        assert back.attrs["model_config"] == {"hidden_dim": 32, "layers": [6, 6]}
        assert back.attrs["note"] is None and back.attrs["flag"] is True
        assert decode_attrs(src.attrs) == dict(back.attrs.items())
        assert back.sel(skin=1).image_id.values.tolist() == src.sel(skin=1).image_id.values.tolist()
        plain = xr.open_dataset(out, engine="h5netcdf" if fmt == "netcdf" else "zarr")
        assert isinstance(plain.attrs["model_config"], str)  # stored as a JSON string


def test_encode_attrs_plain_values_unchanged():
    attrs = {"a": "x", "n": 3, "f": 0.5, "nums": [1, 2], "d": {"k": [1, "x"]}, "b": False, "e": []}
    enc = encode_attrs(attrs)
    assert enc["a"] == "x" and enc["n"] == 3 and enc["nums"] == [1, 2]
    assert set(decode_attrs.__annotations__) and decode_attrs(enc) == attrs


# ------------------------------------------------------ consolidated metadata
def test_open_zarr_consolidated_committed_rows(tmp_path):
    path = str(tmp_path / "r.zarr")
    st = Store.create(path, variables={"e": ("d",)}, dtypes={"e": "float32"})
    st.append(np.arange(5), {"e": np.ones((5, 3))}, coords={"skin": [1, 2, 1, 2, 1]})
    st.flush()
    st.update_attrs(model_config={"x": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(path)
        assert ds.sizes["image"] == 5  # not the preallocated chunk
        assert ds.skin.values.tolist() == [1, 2, 1, 2, 1]
        st.append(np.arange(5, 8), {"e": np.zeros((3, 3))}, coords={"skin": [3, 3, 3]})
        st.flush()
        ds = xr.open_zarr(path)
        assert ds.sizes["image"] == 8 and ds.e.values[5:].sum() == 0
    st.close()
    # embstore itself ignores the consolidated snapshot
    assert len(Store.open(path)) == 8


def test_open_zarr_ragged_committed_tokens(tmp_path):
    path = str(tmp_path / "r.zarr")
    with Store.create(
        path, variables={"q": ("query", "hidden")}, ragged={"enc": ("token", "hidden")}
    ) as st:
        st.append([1, 2], {"q": np.ones((2, 3, 4)), "enc": [np.ones((5, 4)), np.full((7, 4), 2.0)]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(path)
    assert ds.sizes["image"] == 2 and ds["enc"].shape == (12, 4)
    assert ds["enc_n"].values.tolist() == [5, 7] and float(ds["enc"].sum()) == 5 * 4 + 7 * 4 * 2


# --------------------------------------------------------------- fast path
def test_lazy_selection_reads_only_selected_rows(tmp_path, ext, monkeypatch):
    path = str(tmp_path / f"r.{ext}")
    ids, ref = _make(path)
    st = Store.open(path)
    calls = []
    backend = st._backend
    orig = backend.read_points
    monkeypatch.setattr(
        backend, "read_points", lambda name, pos: calls.append((name, list(pos))) or orig(name, pos)
    )
    want = [int(i) for i in ids if i % 4 == 2]
    got = st.query_embeddings.sel(skin=3).values
    assert calls == [("query_embeddings", want)]  # one read, exactly those rows
    np.testing.assert_array_equal(got, ref[want])
    calls.clear()
    got = st.sel(skin=[3, 4], lighting="dimly_lit").query_embeddings.isel(query=[0, 2]).values
    odd = [int(i) for i in ids if i % 4 == 3]
    assert calls == [("query_embeddings", odd)]
    np.testing.assert_array_equal(got, ref[odd][:, [0, 2]])
    assert isinstance(st.query_embeddings.variable._data.array, StoreBackendArray)


# ------------------------------------------------------------------ defaults
def _face_store(path):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(10, 16)).astype(np.float32)
    emb[5:] = emb[:5] + 1e-3
    with Store.create(
        path,
        row_dim="image",
        id_name="index",
        variables={"embedding": ("feature",)},
        dtypes={"embedding": "float32"},
    ) as st:
        st.append(np.arange(10), {"embedding": emb})


def test_default_variable_single_and_recorded(tmp_path):
    pytest.importorskip("faiss")
    from embstore.analysis.defaults import resolve_variable

    path = str(tmp_path / "faces.zarr")
    _face_store(path)
    an = EmbeddingAnalyzer(path)
    assert resolve_variable(an, None) == "embedding"
    groups = an.find_duplicates(threshold=0.9)
    assert len(groups) > 0
    assert an.search(ids=[0], k=2)["score"].notna().all()
    assert an.vectors().shape == (10, 16)

    # two dense variables: the recorded default wins; none recorded -> error listing them
    two = str(tmp_path / "two.zarr")
    _make(
        two,
        variables={"a_emb": ("query", "hidden"), "b_emb": ("query", "hidden")},
        attrs={"default_variable": "b_emb"},
    )
    assert resolve_variable(Store.open(two), None) == "b_emb"
    bare = str(tmp_path / "bare.zarr")
    _make(bare, variables={"a_emb": ("query", "hidden"), "b_emb": ("query", "hidden")})
    with pytest.raises(UnknownVariableError, match=r"\['a_emb', 'b_emb'\]"):
        EmbeddingAnalyzer(bare).vectors()
    assert EmbeddingAnalyzer(bare).vectors("a_emb").shape[0] == N


def test_default_variable_cli(tmp_path, capsys):
    pytest.importorskip("faiss")
    from embstore.cli import main

    path = str(tmp_path / "faces.zarr")
    _face_store(path)
    assert main(["dedup", path, "--threshold", "0.9"]) == 0
    assert "duplicate" in capsys.readouterr().out
    assert main(["cluster", path, "--threshold", "0.7"]) == 0


def test_saved_index_used_for_default_variable(tmp_path, caplog):
    import logging

    pytest.importorskip("faiss")
    path = str(tmp_path / "faces.zarr")
    _face_store(path)
    with Store.open(path, mode="a") as st:
        EmbeddingAnalyzer(st).build_index(kind="flat")
    an = EmbeddingAnalyzer(path)
    with caplog.at_level(logging.INFO, logger="embstore"):
        res = an.search(ids=[1], k=2)
    assert "reloaded index faiss_embedding" in caplog.text
    assert res["score"].max() == pytest.approx(1.0, abs=1e-4)


# ------------------------------------------------------------------ metadata
def test_legacy_metadata_reports_extract_type(tmp_path):
    path = str(tmp_path / "r.zarr")
    _make(path, attrs={"extract_type": "all"})
    meta = EmbeddingAnalyzer(path).metadata
    assert meta["extract_type"] == "all" and meta["num_images"] == N


def test_export_legacy_writes_recorded_extract_type(tmp_path):
    pytest.importorskip("torch")
    import json

    from embstore.legacy.detr_pt import export_detr_dir

    path = str(tmp_path / "r.zarr")
    _make(path, attrs={"extract_type": "decoder"})
    export_detr_dir(path, tmp_path / "old", ids=[0, 1])
    assert json.loads((tmp_path / "old" / "metadata.json").read_text())["extract_type"] == "decoder"


def test_detr_extract_type_name():
    pytest.importorskip("torch")
    from extractors.detr.extractor import EXTRACT_TYPES, extract_type_name

    for name, names in EXTRACT_TYPES.items():
        assert extract_type_name(reversed(names)) == name
    assert extract_type_name(["query_embeddings"]) == "custom"


def test_unknown_store_coordinate_alignment_error_names_fix(tmp_path):
    from embstore.selection import RowIndex

    a = RowIndex({"id": np.array([1, 2]), "skin": np.array([1, 1])}, "image")
    b = RowIndex({"id": np.array([2, 1]), "cat": np.array(["x", "y"])}, "image")
    with pytest.raises(ValidationError, match="same row coordinates"):
        a.join(b)
    assert a.reindex_like(RowIndex({"id": np.array([2, 3]), "skin": np.array([1, 2])}, "image"))[
        "image"
    ].tolist() == [1, -1]
    assert pd.Index(
        a.join(
            RowIndex({"id": np.array([2, 5]), "skin": np.array([1, 4])}, "image"), how="outer"
        ).columns["id"]
    ).tolist() == [1, 2, 5]
