"""Round-trip properties over the shared strategies, and the fixture stores' contracts.

The strategies of :mod:`embstore.testing.strategies` drive store round trips
(ids, coordinate columns, float arrays with float16 edge values, names), and
the builders of :mod:`embstore.testing.synthetic` / :mod:`embstore.testing.stores`
are checked to plant what they promise, since other tests rely on it.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from embstore import Store
from embstore.errors import InvalidNameError, ValidationError
from embstore.store.validation import check_name
from embstore.testing.stores import create_vector_store, vector_store
from embstore.testing.strategies import (
    FLOAT16_EDGE_VALUES,
    coord_columns,
    float16_arrays,
    float_arrays,
    invalid_names,
    row_ids,
    valid_names,
)
from embstore.testing.synthetic import (
    DETR_RAGGED,
    DETR_VARIABLES,
    blobs,
    detr_batch,
    face_vectors,
    planted_duplicates,
)

FAST = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # store round trips shrink slowly
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# ------------------------------------------------------------------ names
@settings(max_examples=200, deadline=None, derandomize=True)
@given(valid_names())
def test_valid_names_are_accepted(name):
    assert check_name("variable", name) == name


@settings(max_examples=200, deadline=None, derandomize=True)
@given(invalid_names())
def test_invalid_names_are_refused_naming_the_value(name):
    with pytest.raises(InvalidNameError) as err:
        check_name("coordinate", name)
    assert repr(name)[:20] in str(err.value)


@FAST
@given(name=invalid_names())
def test_store_refuses_invalid_variable_names(tmp_path_factory, name):
    path = tmp_path_factory.mktemp("names") / "s.zarr"
    with pytest.raises(ValidationError):
        Store.create(str(path), variables={name: ("hidden",)})
    assert not os.path.exists(path / "zarr.json")


# ------------------------------------------------------------- round trips
@FAST
@given(data=st.data(), suffix=st.sampled_from([".zarr", ".h5"]))
def test_ids_and_coordinate_columns_round_trip(tmp_path_factory, data, suffix):
    ids = data.draw(row_ids(min_size=1, max_size=12))
    cols = data.draw(coord_columns(len(ids)))
    x = np.arange(len(ids) * 2, dtype=np.float32).reshape(-1, 2)
    path = tmp_path_factory.mktemp("rt") / f"s{suffix}"
    vector_store(path, x, ids=ids, coords=cols)
    with Store.open(str(path)) as st_:
        assert st_.ids.tolist() == ids
        got = st_.coords
        for name, values in cols.items():
            assert got[name].tolist() == values, name
        np.testing.assert_array_equal(st_["embedding"].values, x)


@FAST
@given(data=st.data(), suffix=st.sampled_from([".zarr", ".h5"]))
def test_float16_store_keeps_float16_values_bit_for_bit(tmp_path_factory, data, suffix):
    x = data.draw(float16_arrays(st.tuples(st.integers(1, 8), st.integers(1, 5))))
    path = tmp_path_factory.mktemp("f16") / f"s{suffix}"
    vector_store(path, x, dtype="float16")
    with Store.open(str(path)) as st_:
        got = st_["embedding"].values
    # read back upcast (float16 -> float32 is exact): compare bit patterns, -0.0 and subnormals too
    assert got.view(np.uint32).tolist() == x.astype(got.dtype).view(np.uint32).tolist()
    assert got.astype(np.float16).view(np.uint16).tolist() == x.view(np.uint16).tolist()


@FAST
@given(x=float_arrays(np.float32))
def test_float32_store_round_trips_the_whole_finite_range(tmp_path_factory, x):
    path = tmp_path_factory.mktemp("f32") / "s.zarr"
    vector_store(path, x)
    with Store.open(str(path)) as st_:
        assert st_["embedding"].values.view(np.uint32).tolist() == x.view(np.uint32).tolist()


def test_float16_edge_values_are_float16_exact_and_cover_the_limits():
    v = np.array(FLOAT16_EDGE_VALUES, dtype=np.float64)
    np.testing.assert_array_equal(v.astype(np.float16).astype(np.float64), v)
    finfo = np.finfo(np.float16)
    assert float(finfo.max) in v and float(finfo.smallest_normal) in v
    assert float(finfo.smallest_subnormal) in v
    assert np.signbit(v[v == 0]).tolist().count(True) == 1  # one negative zero


@settings(FAST, max_examples=8)
@given(batches=st.lists(st.integers(1, 4), min_size=1, max_size=4), seed=st.integers(0, 99))
def test_detr_batches_with_ragged_maps_round_trip(tmp_path_factory, batches, seed):
    rng = np.random.default_rng(seed)
    path = str(tmp_path_factory.mktemp("detr") / "s.zarr")
    expected, start = {}, 0
    with Store.create(
        path,
        variables=DETR_VARIABLES,
        ragged=DETR_RAGGED,
        dtypes=dict.fromkeys([*DETR_VARIABLES, *DETR_RAGGED], "float32"),
    ) as st_:
        for size in batches:
            ids = list(range(start, start + size))
            data, coords, hw = detr_batch(ids, rng)
            st_.append(ids, data, coords=coords, ragged_hw=hw)
            for j, i in enumerate(ids):
                expected[i] = {k: v[j] for k, v in data.items()}
            start += size
    with Store.open(path) as st_:
        assert st_.ids.tolist() == list(range(start))
        assert st_.coords["skin"].tolist() == [i % 4 + 1 for i in range(start)]
        q = st_["query_embeddings"].values
        for i in range(start):
            np.testing.assert_array_equal(q[i], expected[i]["query_embeddings"])
            tok = st_.get_ragged("encoder_output", i)
            np.testing.assert_array_equal(tok, expected[i]["encoder_output"])
            assert tok.shape == ((i % 3 + 1) * 2, 8)
            np.testing.assert_array_equal(
                st_.get_ragged("backbone_features", i), expected[i]["backbone_features"]
            )
        hw = st_.ragged_hw("encoder_output")  # h, w and n = rows of tokens per image
        assert hw.index.tolist() == list(range(start))
        assert hw[["h", "w"]].values.tolist() == [[i % 3 + 1, 2] for i in range(start)]


# ---------------------------------------------------------- builders
def test_face_vectors_plant_near_duplicates_only_within_a_person():
    x, person = face_vectors(n_people=30, per_person=3, dim=32, seed=4)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    s = x @ x.T
    same = person[:, None] == person[None, :]
    off = ~np.eye(len(x), dtype=bool)
    assert s[same & off].min() > 0.99
    assert s[~same].max() < 0.9


def test_planted_duplicates_and_blobs_are_deterministic_and_planted():
    a = planted_duplicates(50, 10, 8, 0.01, seed=3)
    np.testing.assert_array_equal(a, planted_duplicates(50, 10, 8, 0.01, seed=3))
    assert a.shape == (60, 8) and a.dtype == np.float32
    d = np.linalg.norm(a[:, None] - a[None], axis=-1) + np.eye(60) * 1e9
    assert (d.min(axis=1) < 0.1).sum() >= 10  # every copy has its source within the noise
    x, truth = blobs(200, 8, 5, 0.05, seed=1)
    centres = np.stack([x[truth == c].mean(0) for c in np.unique(truth)])
    assert np.abs(x - centres[np.searchsorted(np.unique(truth), truth)]).max() < 0.5


def test_create_vector_store_is_open_and_flushed(empty_store_path):
    x = np.eye(4, dtype=np.float32)
    st_ = create_vector_store(empty_store_path, x, ids=[5, 6, 7, 8], coords={"k": [1, 1, 2, 2]})
    try:
        assert st_.mode == "a"
        with Store.open(empty_store_path) as reader:  # flushed: visible to a reader
            assert reader.ids.tolist() == [5, 6, 7, 8]
            assert reader.coords["k"].tolist() == [1, 1, 2, 2]
            assert reader.variables == {"embedding": ("hidden",)}
    finally:
        st_.close()


def test_fixture_stores_hold_what_the_docs_promise(detr_store, face_store):
    with Store.open(detr_store) as st_:
        assert len(st_) == 120
        assert st_.query_embeddings.shape == (120, 8, 16)
        assert set(st_.coords["skin"].unique()) <= {1, 2, 3, 4}
        assert st_.attrs["default_variable"] == "query_embeddings"
        assert "persons" in st_.tables
    with Store.open(face_store) as st_:
        x = st_["embedding"].values.astype(np.float64)
        person = st_.coords["person"].to_numpy()
    assert x.shape == (80, 32)
    s = x @ x.T
    assert (s[person[:, None] == person[None, :]] > 0.99).all()


def test_writable_detr_store_is_a_private_copy(writable_detr_store, detr_store):
    assert writable_detr_store != detr_store
    with Store.open(writable_detr_store, mode="a") as st_:
        st_.update_attrs(note="changed")
    with Store.open(detr_store) as st_:
        assert "note" not in st_.attrs
