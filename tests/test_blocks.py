"""The one block producer, ``spec=`` on the free functions, and Dask as ``client=``.

Every search function run with ``client=`` (Dask tasks over the same block
steps) must return exactly what the local path returns; the block producer
must yield the analyzer's own vectors; the streamed group moments must equal
NumPy.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embstore import EmbeddingAnalyzer
from embstore.analysis.blocks import VectorBlocks, block_bounds, iter_array_blocks, vector_blocks
from embstore.analysis.spec import VectorSpec
from embstore.errors import ValidationError
from embstore.fairness.stats import group_moments

pytest.importorskip("faiss")

from embstore.search.graph import (
    dedup_and_cluster,
    find_duplicate_groups,
    threshold_clusters,
)
from embstore.search.knn import iter_knn_self, knn_search, knn_self
from embstore.search.source import as_block_source


@pytest.fixture()
def demo_path(_example_stores):
    return _example_stores["demo_path"]


@pytest.fixture()
def face_path(_example_stores):
    return _example_stores["face_path"]


def _clustered(n=150, d=12, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(10, d))
    x = centers[rng.integers(0, 10, n)] + 0.08 * rng.normal(size=(n, d))
    x[7] = x[3]  # an exact duplicate
    return x.astype(np.float32)


@settings(max_examples=40, deadline=None)
@given(chunks=st.lists(st.integers(1, 20), min_size=1, max_size=8), rows=st.integers(1, 30))
def test_block_bounds_cover_the_rows_in_order(chunks, rows):
    bounds = block_bounds(chunks, rows)
    assert bounds[0][0] == 0 and bounds[-1][1] == sum(chunks)
    assert all(a < b <= a + rows for a, b in bounds)
    assert all(b == c for (_, b), (c, _) in itertools.pairwise(bounds))


def test_the_producer_yields_the_analyzers_vectors(demo_path):
    an = EmbeddingAnalyzer(demo_path)
    for spec in (VectorSpec(pool="mean"), VectorSpec(pool=None), VectorSpec(pool="max")):
        blocks, labels = vector_blocks(an, spec, block_rows=50)
        got = np.concatenate([b for _, b in blocks])
        want, want_labels = an.matrix(pool=spec.pool)
        np.testing.assert_array_equal(got, want)
        pd.testing.assert_frame_equal(labels, want_labels)
        streamed = list(an.iter_vectors(pool=spec.pool, block_rows=50))
        assert [s for s, _ in streamed] == [s for s, _ in blocks]
        assert all(b.dtype == np.float32 and b.flags.c_contiguous for _, b in blocks)
    # a path, a store and the flat keywords name the same vectors
    by_path = np.concatenate([b for _, b in vector_blocks(demo_path, pool="max")[0]])
    np.testing.assert_array_equal(by_path, an.matrix(pool="max")[0])
    assert [s for s, _ in iter_array_blocks(an.vectors(), 32)] == [0, 32, 64, 96]
    with pytest.raises(ValidationError, match="block_rows"):
        vector_blocks(an, block_rows=0)


def test_block_source_of_an_analyzer_with_a_spec(face_path):
    an = EmbeddingAnalyzer(face_path)
    src = as_block_source(an, spec=VectorSpec("embedding"))
    assert (src.n, src.dim) == (80, 32)
    np.testing.assert_array_equal(
        src.read_rows(np.array([5, 0])), an.matrix("embedding")[0][[5, 0]]
    )
    res = knn_self(face_path, 2, spec=VectorSpec("embedding"), device="cpu")
    np.testing.assert_array_equal(res.ids, knn_self(an.matrix("embedding")[0], 2, device="cpu").ids)
    with pytest.raises(ValidationError, match="not a VectorSpec"):
        as_block_source(an, spec="embedding")  # type: ignore[arg-type]


def test_group_moments_equal_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 5))
    codes = rng.integers(0, 3, 90)
    m = group_moments(VectorBlocks.from_array(x, 16), codes, 4)  # group 3 is empty
    for g in range(3):
        xs = x[codes == g].astype(np.float32).astype(np.float64)
        np.testing.assert_allclose(m["mean"][g], xs.mean(0), rtol=1e-9)
        np.testing.assert_allclose(m["std"][g], xs.std(0), rtol=1e-6)
        np.testing.assert_allclose(m["mean_norm"][g], np.linalg.norm(xs, axis=1).mean(), rtol=1e-9)
        disp = ((xs - xs.mean(0)) ** 2).sum(1).mean()
        np.testing.assert_allclose(m["dispersion"][g], disp, rtol=1e-6)
    assert m["count"].tolist()[:3] == np.bincount(codes).tolist() and m["count"][3] == 0
    assert np.isnan(m["mean"][3]).all()


@pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
def test_client_runs_the_same_knn(metric):
    x = _clustered()
    q = np.random.default_rng(5).normal(size=(6, x.shape[1])).astype(np.float32)
    ls, li = knn_search(x, q, 9, metric, device="cpu", block_rows=40)
    ds, di = knn_search(x, q, 9, metric, client="dask", block_rows=40)
    np.testing.assert_array_equal(di, li)
    np.testing.assert_allclose(ds, ls, rtol=1e-6, atol=1e-6)
    # more neighbours than vectors: both pad with -1
    _, pi = knn_search(x[:3], q, 5, metric, client="dask")
    assert (pi[:, 3:] == -1).all()
    local = knn_self(x, 6, metric, device="cpu", row_batch=40, block_rows=40)
    for cache in (0, None):
        remote = knn_self(x, 6, metric, client="dask", block_rows=40, cache_bytes=cache)
        np.testing.assert_array_equal(remote.ids, local.ids)
        np.testing.assert_allclose(remote.scores, local.scores, rtol=1e-6, atol=1e-6)
    starts = [s for s, _, _ in iter_knn_self(x, 3, metric, client="dask", block_rows=64)]
    assert starts == [0, 64, 128]


def test_client_runs_the_same_groups():
    x = _clustered()
    for fn, thr in ((find_duplicate_groups, 0.999), (threshold_clusters, 0.8)):
        local = fn(x, thr, k=10, device="cpu")
        remote = fn(x, thr, k=10, client="dask", block_rows=32)
        np.testing.assert_array_equal(remote.labels, local.labels)
        if local.pairs is not None:
            assert remote.pairs is not None and remote.pairs.as_set() == local.pairs.as_set()
    assert (3, 7) in find_duplicate_groups(x, 0.999, k=10, client="dask").pairs.as_set()
    ld, lc = dedup_and_cluster(x, 0.999, 0.8, k=10, device="cpu")
    rd, rc = dedup_and_cluster(x, 0.999, 0.8, k=10, client="dask", block_rows=50)
    np.testing.assert_array_equal(rd.labels, ld.labels)
    np.testing.assert_array_equal(rc.labels, lc.labels)
    with pytest.raises(ValidationError, match="k=None"):
        threshold_clusters(x, 0.8, k=None, client="dask")
    with pytest.raises(ValidationError, match="cannot be"):
        knn_self(iter([x]), 2, client="dask")


def test_client_with_a_distributed_cluster(face_path):
    distributed = pytest.importorskip("distributed")
    from embstore.distributed import analysis as dan

    an = EmbeddingAnalyzer(face_path)
    spec = VectorSpec("embedding")
    with (
        distributed.LocalCluster(
            n_workers=1, processes=False, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = threshold_clusters(an, 0.9, k=4, spec=spec, client=client, block_rows=24)
        wrapped = dan.threshold_groups(an, 0.9, k=4, spec=spec, client=client, block_rows=24)
        knn = knn_self(an, 3, spec=spec, client=client, block_rows=24)
    local = threshold_clusters(an, 0.9, k=4, spec=spec, device="cpu")
    np.testing.assert_array_equal(remote.labels, local.labels)
    np.testing.assert_array_equal(wrapped.labels, local.labels)
    np.testing.assert_array_equal(knn.ids, knn_self(an, 3, spec=spec, device="cpu").ids)
    # the face store has two near-duplicate rows per person
    assert local.n_groups <= 40


def test_layer_functions_take_a_spec():
    import xarray as xr

    from embstore.analysis.layers import cka_matrix, layer_profile

    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 3, 4, 6)).astype(np.float32)
    ds = xr.Dataset(
        {"decoder_output": (("image", "layer", "query", "hidden"), x)},
        coords={"image_id": ("image", np.arange(40)), "skin": ("image", np.repeat([1, 2], 20))},
    )
    an = EmbeddingAnalyzer(ds, row_dim="image", id_name="image_id")
    spec = VectorSpec("decoder_output", pool="max")
    a = cka_matrix(an, spec=spec)
    b = cka_matrix(an, "decoder_output", pool="max")
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.allclose(a.values, cka_matrix(an, pool="mean").values)
    t1 = layer_profile(an, by="skin", metrics="centroid_distance", n_boot=0, spec=spec)
    t2 = layer_profile(an, "decoder_output", "skin", "centroid_distance", n_boot=0, pool="max")
    pd.testing.assert_frame_equal(t1, t2)
