"""EmbeddingAnalyzer core on a Store: selection, pooling, vectors, matrices, streaming."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import softmax

from embstore import EmbeddingAnalyzer, Store
from embstore.errors import SelectionError, UnknownVariableError, ValidationError

N, Q, D, L, C = 22, 5, 6, 3, 4
SKIN = np.array([1, 2, 3, 1, 2, 2, 3, 1, 1, 2, 3, 3, 1, 2, 1, 1, 3, 2, 2, 1, 3, 2])
LIGHT = np.array(["well", "dim"] * 11)
IDS = np.arange(1000, 1000 + N) * 3


@pytest.fixture(scope="module")
def raw():
    rng = np.random.default_rng(0)
    dec = rng.normal(size=(N, L, Q, D)).astype(np.float16)
    return {
        "decoder_output": dec,
        "query_embeddings": dec[:, -1].copy(),
        "pred_logits": (rng.normal(size=(N, Q, C)) * 3).astype(np.float32),
        "pred_boxes": rng.random((N, Q, 4)).astype(np.float32),
    }


@pytest.fixture(scope="module", params=["run.zarr", "run.h5"], ids=["zarr", "hdf5"])
def store(request, tmp_path_factory, raw):
    if request.param.endswith(".h5"):
        pytest.importorskip("h5py")
    path = tmp_path_factory.mktemp("an") / request.param
    st_ = Store.create(
        str(path),
        row_dim="image",
        id_name="image_id",
        variables={
            "query_embeddings": ("query", "hidden"),
            "decoder_output": ("layer", "query", "hidden"),
            "pred_logits": ("query", "class"),
            "pred_boxes": ("query", "box"),
        },
        chunk_rows=4,
    )
    # two appends: rows arrive in several batches, as in an extraction
    for sl in (slice(0, 9), slice(9, N)):
        st_.append(
            IDS[sl],
            {k: v[sl] for k, v in raw.items()},
            coords={"skin": SKIN[sl], "lighting": LIGHT[sl]},
        )
    st_.flush()
    yield st_
    st_.close()


@pytest.fixture(scope="module")
def an(store):
    return EmbeddingAnalyzer(store)


def x32(raw, name="query_embeddings"):
    return raw[name].astype(np.float32)


# -------------------------------------------------------------- contract


def test_contract_members(an, store):
    assert an.store is store
    assert an.row_dim == "image" and an.id_name == "image_id"
    assert an.ids.tolist() == IDS.tolist()
    assert list(an.coords.columns) == ["skin", "lighting"]
    assert an.coords.index.name == "image_id"
    assert an.coords["skin"].tolist() == SKIN.tolist()
    assert len(an) == N


def test_open_by_path_is_read_only(store, tmp_path):
    an = EmbeddingAnalyzer(store.path)
    assert an.store.mode == "r"
    assert an.ids.tolist() == IDS.tolist()
    assert an.sel().ids.tolist() == IDS.tolist()  # no labels: a copy of everything
    with pytest.raises(FileNotFoundError):
        EmbeddingAnalyzer(tmp_path / "missing.zarr")
    with pytest.raises(ValidationError, match="cannot analyse a list"):
        EmbeddingAnalyzer([1, 2])


def test_pool_mean_max_are_lazy_labeled_float32(an, raw):
    for method, ref in (("mean", x32(raw).mean(axis=1)), ("max", x32(raw).max(axis=1))):
        out = an.pool(method=method)
        assert isinstance(out.data, da.Array)
        assert out.dims == ("image", "hidden") and out.dtype == np.float32
        assert out["image_id"].values.tolist() == IDS.tolist()
        assert out["lighting"].values.tolist() == LIGHT.tolist()
        np.testing.assert_allclose(out.values, ref, rtol=1e-6)


def test_pool_confidence_and_topk_against_numpy(an, raw):
    x = x32(raw)
    p = softmax(raw["pred_logits"].astype(np.float64), axis=-1)
    fg = 1 - p[..., -1]
    w = fg / fg.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(
        an.pool(method="confidence").values, (w[..., None] * x).sum(axis=1), rtol=1e-5, atol=1e-6
    )
    mc = p[..., :-1].max(axis=-1)
    w2 = mc / mc.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(
        an.pool(method="confidence", score="max_class").values,
        (w2[..., None] * x).sum(axis=1),
        rtol=1e-5,
        atol=1e-6,
    )
    k = 2
    top = np.argsort(-fg, axis=1, kind="stable")[:, :k]
    ref = np.stack([x[i, top[i]].mean(axis=0) for i in range(N)])
    np.testing.assert_allclose(an.pool(method="topk", k=k).values, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(an.pool(method="topk:2").values, ref, rtol=1e-5, atol=1e-6)


def test_layers_of_decoder_output(an, raw):
    dec = x32(raw, "decoder_output")
    np.testing.assert_allclose(
        an.pool("decoder_output", layer=0).values, dec[:, 0].mean(axis=1), rtol=1e-6
    )
    np.testing.assert_allclose(
        an.pool("decoder_output", layer=-2).values, dec[:, 1].mean(axis=1), rtol=1e-6
    )
    # default: last layer == query_embeddings
    np.testing.assert_allclose(an.pool("decoder_output").values, an.pool().values)
    np.testing.assert_allclose(
        an.pool("decoder_output", over=("layer", "query")).values, dec.mean(axis=(1, 2)), rtol=1e-5
    )
    np.testing.assert_allclose(
        an.pool("decoder_output", method="confidence", layer=1).values,
        EmbeddingAnalyzer(an.store).pool("decoder_output", method="confidence", layer=-2).values,
    )
    with pytest.raises(ValidationError, match="layer=3 is out of range"):
        an.pool("decoder_output", layer=3)
    with pytest.raises(ValidationError, match="no 'layer' dimension"):
        an.pool("query_embeddings", layer=0)


def test_errors_name_the_bad_value(an):
    with pytest.raises(UnknownVariableError, match="'attn'.*query_embeddings"):
        an.pool("attn")
    with pytest.raises(ValidationError, match="k=9 is out of range"):
        an.pool(method="topk", k=9)
    with pytest.raises(ValidationError, match="cannot pool over"):
        an.pool(over="token")
    with pytest.raises(ValidationError, match="pred_scores"):
        an.pool(method="confidence", logits="pred_scores")


# -------------------------------------------------------------- selection


def test_selection_through_the_analyzer(an, raw):
    sub = an.sel(skin=[1, 3], lighting="well")
    mask = np.isin(SKIN, [1, 3]) & (LIGHT == "well")
    assert sub.ids.tolist() == IDS[mask].tolist()
    assert type(sub) is type(an) and sub.store is an.store
    np.testing.assert_allclose(sub.pool().values, x32(raw)[mask].mean(axis=1), rtol=1e-6)
    # chained selections and selection by id keep the row dim
    one = sub.sel(image_id=int(IDS[mask][1]))
    assert one.pool().shape == (1, D)
    assert one.coords["skin"].tolist() == [SKIN[mask][1]]
    # the original analyzer is untouched
    assert len(an) == N
    with pytest.raises(SelectionError, match="skin"):
        an.sel(skin=7)
    with pytest.raises(SelectionError, match="unknown coordinate"):
        an.sel(gender="x")


def test_results_support_label_selection(an, raw):
    pooled = an.pool()
    got = pooled.sel(skin=2)
    assert got.sizes["image"] == int((SKIN == 2).sum())
    np.testing.assert_allclose(got.values, x32(raw)[SKIN == 2].mean(axis=1), rtol=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    skins=st.lists(st.sampled_from([1, 2, 3]), min_size=1, max_size=3, unique=True),
    light=st.sampled_from([None, "well", "dim"]),
)
def test_selection_matches_boolean_mask(an, skins, light):
    labels = {"skin": skins} | ({"lighting": light} if light else {})
    mask = np.isin(SKIN, skins) & ((light == LIGHT) if light else True)
    if not mask.any():
        with pytest.raises(SelectionError):
            an.sel(**labels)
        return
    sub = an.sel(**labels)
    assert sub.ids.tolist() == IDS[mask].tolist()
    assert sub.labels(pool="mean")["lighting"].tolist() == LIGHT[mask].tolist()


# ------------------------------------------------------ vectors and matrices


def test_unpooled_vectors_matrix_and_labels(an, raw):
    m, lab = an.matrix("query_embeddings")
    assert m.shape == (N * Q, D) and m.dtype == np.float32
    np.testing.assert_array_equal(m, x32(raw).reshape(N * Q, D))
    assert list(lab.columns) == ["image_id", "query", "skin", "lighting"]
    assert lab["image_id"].tolist() == np.repeat(IDS, Q).tolist()
    assert lab["query"].tolist() == np.tile(np.arange(Q), N).tolist()
    assert lab["skin"].tolist() == np.repeat(SKIN, Q).tolist()
    vec = an.vectors(pool=None)
    assert vec.dims == ("vector", "hidden")
    assert vec["query"].values.tolist() == lab["query"].tolist()
    pd.testing.assert_frame_equal(an.labels(pool=None), lab)


def test_pooled_matrix_labels_one_row_per_image(an, raw):
    m, lab = an.sel(lighting="dim").matrix(pool="max")
    mask = LIGHT == "dim"
    np.testing.assert_array_equal(m, x32(raw)[mask].max(axis=1))
    assert list(lab.columns) == ["image_id", "skin", "lighting"]
    assert lab["image_id"].tolist() == IDS[mask].tolist()
    v = an.vectors(pool="mean")
    assert v.dims == ("vector", "hidden")
    assert v["image_id"].values.tolist() == IDS.tolist()


def test_vector_per_row_variable_ignores_pool(tmp_path):
    st_ = Store.create(
        str(tmp_path / "face.zarr"),
        row_dim="image",
        id_name="image_id",
        variables={"embedding": ("hidden",)},
    )
    e = np.random.default_rng(3).normal(size=(7, 4)).astype(np.float16)
    st_.append(np.arange(7), {"embedding": e}, coords={"group": list("aabbcca")})
    st_.flush()
    an = EmbeddingAnalyzer(st_)
    for pool in (None, "mean"):
        m, lab = an.matrix("embedding", pool=pool)
        np.testing.assert_array_equal(m, e.astype(np.float32))
        assert list(lab.columns) == ["image_id", "group"]
    assert an.sel(group="b").vectors("embedding").shape == (2, 4)


# ------------------------------------------------------------- streaming


def test_iter_vectors_blocks_cover_everything_once(an, raw):
    for pool, block_rows in ((None, 12), (None, 3), ("mean", 5), ("confidence", 64)):
        blocks = list(an.iter_vectors(pool=pool, block_rows=block_rows))
        m, _ = an.matrix(pool=pool)
        assert all(len(b) <= block_rows and b.dtype == np.float32 for _, b in blocks)
        starts = [s for s, _ in blocks]
        assert starts == sorted(starts) and starts[0] == 0
        np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), m)
    assert len(list(an.iter_vectors(pool=None, block_rows=12))) > 1


class RecordingArray:
    """Array-like that records every read (rows touched per read)."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.reads: list[int] = []

    def __getitem__(self, key):
        out = self.data[key]
        if out.size:
            self.reads.append(out.shape[0])
        return out


def test_iter_vectors_reads_chunk_by_chunk(raw):
    rec = RecordingArray(raw["query_embeddings"])
    ds = xr.Dataset(
        {"query_embeddings": (("image", "query", "hidden"), da.from_array(rec, chunks=(4, Q, D)))},
        coords={"image_id": ("image", IDS)},
    )
    an = EmbeddingAnalyzer(ds)
    assert an.id_name == "image_id"
    rec.reads.clear()
    blocks = list(an.iter_vectors(pool="mean", block_rows=8))
    assert max(rec.reads) <= 4  # never more than one chunk per read
    assert sum(rec.reads) == N  # every row read exactly once
    assert all(len(b) <= 8 for _, b in blocks)
    np.testing.assert_allclose(
        np.concatenate([b for _, b in blocks]), x32(raw).mean(axis=1), rtol=1e-6
    )


def test_block_bounds_group_and_split_chunks():
    from embstore.analysis.core import AnalyzerCore

    assert AnalyzerCore._block_bounds([4, 4, 4, 2], 8) == [(0, 8), (8, 14)]
    assert AnalyzerCore._block_bounds([10, 3], 4) == [(0, 4), (4, 8), (8, 10), (10, 13)]
    with pytest.raises(ValidationError, match="block_rows"):
        next(
            EmbeddingAnalyzer(xr.Dataset({"e": (("r", "h"), np.zeros((2, 2)))})).iter_vectors(
                "e", block_rows=0
            )
        )


def test_dataset_source_without_ids_uses_positions():
    ds = xr.Dataset(
        {"e": (("row", "h"), np.arange(6.0).reshape(3, 2))},
        coords={"grp": ("row", ["a", "b", "a"])},
    )
    an = EmbeddingAnalyzer(ds)
    assert an.row_dim == "row" and an.id_name == "row_id"
    assert an.sel(grp="a").ids.tolist() == [0, 2]
    m, lab = an.sel(grp="a").matrix("e")
    np.testing.assert_array_equal(m, [[0, 1], [4, 5]])
    assert lab.columns.tolist() == ["row_id", "grp"]


def test_streaming_memory_is_bounded_by_a_block(tmp_path):
    """Peak traced allocations while streaming stay well below the data size."""
    import tracemalloc

    n, q, d = 4096, 10, 64
    st_ = Store.create(
        str(tmp_path / "big.zarr"),
        row_dim="image",
        id_name="image_id",
        variables={"query_embeddings": ("query", "hidden"), "pred_logits": ("query", "class")},
        chunk_rows=256,
    )
    rng = np.random.default_rng(0)
    for s in range(0, n, 1024):
        st_.append(
            np.arange(s, s + 1024),
            {
                "query_embeddings": rng.normal(size=(1024, q, d)).astype(np.float16),
                "pred_logits": rng.normal(size=(1024, q, 5)).astype(np.float32),
            },
        )
    st_.flush()
    an = EmbeddingAnalyzer(st_)
    data_bytes = n * q * d * 4  # the variable as float32
    for pool in (None, "confidence", "mean"):
        list(an.sel(image_id=[0, 1]).iter_vectors(pool=pool))  # warm-up: lazy imports
        tracemalloc.start()
        try:
            count = sum(len(b) for _, b in an.iter_vectors(pool=pool, block_rows=2560))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert count == (n * q if pool is None else n)
        assert peak < 0.6 * data_bytes, (pool, peak, data_bytes)
