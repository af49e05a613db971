"""Pooling, statistics, exact search and clustering on a distributed LocalCluster.

Every result computed by Dask tasks on 2 worker processes with a per-worker
memory limit must equal the local (single-process) path of the analyzer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embstore import EmbeddingAnalyzer, Store
from embstore.distributed import analysis as dan
from embstore.errors import SelectionError, ValidationError

distributed = pytest.importorskip("distributed")
pytest.importorskip("faiss")

N, Q, H, CHUNK, N_CENTERS = 240, 6, 16, 32, 12
BLOCK = 40  # vectors per task: several blocks, not aligned with the 32-row chunks
MEMORY_LIMIT = 768 * 2**20


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(N_CENTERS, H))
    which = rng.integers(0, N_CENTERS, size=N)
    x = centers[which][:, None, :] + 0.15 * rng.normal(size=(N, Q, H))
    return x.astype(np.float16), which


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("an") / "an.zarr")
    x, _which = make_data()
    rng = np.random.default_rng(1)
    with Store.create(
        path, variables={"query_embeddings": ("query", "hidden")}, chunk_rows=CHUNK
    ) as st:
        for a in range(0, N, 50):  # several appends
            b = min(a + 50, N)
            st.append(
                np.arange(a, b) * 10,
                {"query_embeddings": x[a:b]},
                coords={
                    "skin": rng.integers(1, 4, size=b - a),
                    "lighting": rng.choice(["well", "dim"], size=b - a),
                },
            )
    return path


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        dashboard_address=None,
        memory_limit=MEMORY_LIMIT,
    )
    cl = distributed.Client(cluster)
    yield cl
    cl.close()
    cluster.close()


@pytest.fixture()
def an(store_path):
    return EmbeddingAnalyzer(Store.open(store_path))


def test_cluster_has_a_memory_limit(client):
    workers = client.scheduler_info()["workers"].values()
    assert len(workers) == 2 and all(w["memory_limit"] == MEMORY_LIMIT for w in workers)


def test_pooling_and_write_vectors_match_local(an, client, tmp_path):
    pooled = an.sel(skin=[1, 3]).pool(method="max")
    local = pooled.data.compute(scheduler="sync")
    remote = client.compute(pooled.data).result()
    np.testing.assert_array_equal(remote, local)
    z = dan.write_vectors(
        an, str(tmp_path / "pooled.zarr"), pool="mean", block_rows=BLOCK, client=client
    )
    matrix, _ = an.matrix(pool="mean")
    assert z.shape == (N, H)
    np.testing.assert_array_equal(z[:], matrix)


@pytest.mark.parametrize("pool,by", [("mean", "skin"), (None, ["skin", "lighting"]), ("max", None)])
def test_vector_stats_match_numpy(an, client, pool, by):
    ds = dan.vector_stats(an, pool=pool, by=by, block_rows=BLOCK, client=client)
    matrix, labels = an.matrix(pool=pool)
    m = matrix.astype(np.float64)
    cols = [] if by is None else ([by] if isinstance(by, str) else by)
    groups = labels.groupby(cols, sort=True).indices if cols else {(): np.arange(len(m))}
    assert int(ds["count"].sum()) == len(m)
    assert ds.sizes["group"] == len(groups)
    for g, (key, rows) in enumerate(sorted(groups.items())):
        x = m[rows]
        key = key if isinstance(key, tuple) else (key,)
        for c, v in zip(cols, key):
            assert ds[c].values[g] == v
        assert int(ds["count"][g]) == len(rows)
        np.testing.assert_allclose(ds["mean"][g], x.mean(0), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ds["std"][g], x.std(0), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(
            float(ds["mean_norm"][g]), np.linalg.norm(x, axis=1).mean(), rtol=1e-9
        )
        disp = ((x - x.mean(0)) ** 2).sum(1).mean()
        np.testing.assert_allclose(float(ds["dispersion"][g]), disp, rtol=1e-6)
    with pytest.raises(ValidationError, match="not labels"):
        dan.vector_stats(an, by="nope", client=client)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_exact_search_matches_local(an, client, metric):
    rng = np.random.default_rng(3)
    queries = rng.normal(size=(4, H)).astype(np.float32)
    got = dan.knn_search(
        an, queries, k=7, pool=None, metric=metric, block_rows=BLOCK, client=client
    )
    want = an.search(queries, k=7, pool=None, metric=metric, device="cpu")
    assert list(got.columns) == list(want.columns)
    for col in want.columns:
        if col == "score":
            np.testing.assert_allclose(
                got[col].to_numpy(), want[col].to_numpy(), rtol=1e-5, atol=1e-5
            )
        else:
            assert got[col].tolist() == want[col].tolist(), col
    by_id = dan.knn_search(an, ids=[30, 2390], k=3, block_rows=BLOCK, client=client)
    assert by_id["query_image_id"].tolist() == [30] * 3 + [2390] * 3
    assert by_id.loc[by_id["rank"] == 0, "image_id"].tolist() == [
        30,
        2390,
    ]  # a row finds itself first
    pd.testing.assert_frame_equal(
        by_id.reset_index(drop=True),
        an.search(ids=[30, 2390], k=3, device="cpu").reset_index(drop=True),
        check_exact=False,
        rtol=1e-5,
    )
    with pytest.raises(SelectionError):
        dan.knn_search(an, ids=[7], k=3, client=client)


def test_self_knn_and_clustering_match_local(an, client):
    from embstore.search.knn import knn_self

    matrix, _ = an.matrix(pool="mean")
    ref = knn_self(matrix, 5, device="cpu", row_batch=64, block_rows=64)
    # cache_bytes=0: every task re-reads the blocks from the store; default: pooled vectors kept in memory
    for cache in (0, dan.DEFAULT_CACHE_BYTES):
        res = dan.knn_self(an, k=5, block_rows=BLOCK, client=client, cache_bytes=cache)
        np.testing.assert_array_equal(res.ids[:, 0], np.arange(N))  # each vector is its own nearest
        np.testing.assert_array_equal(res.ids, ref.ids)
        np.testing.assert_allclose(res.scores, ref.scores, rtol=1e-5, atol=1e-6)

    got = dan.cluster(an, threshold=0.9, k=20, block_rows=BLOCK, client=client)
    want = an.cluster(threshold=0.9, k=20, coord=None, device="cpu")
    np.testing.assert_array_equal(got["cluster"].to_numpy(), want.groups.labels)
    assert got["image_id"].tolist() == an.ids.tolist()
    _, which = make_data()
    # the synthetic identities are recovered exactly (same cluster <=> same center)
    assert pd.crosstab(got["cluster"], which).astype(bool).sum(axis=1).max() == 1
    assert got["cluster"].nunique() == len(np.unique(which))

    dup = dan.threshold_groups(
        an,
        0.999,
        k=5,
        pool=None,
        block_rows=BLOCK * Q,
        keep_pairs=True,
        client=client,
        cache_bytes=0,
    )
    local = an.duplicate_groups(0.999, k=5, pool=None, device="cpu")
    np.testing.assert_array_equal(dup.labels, local.labels)
    assert dup.pairs.as_set() == local.pairs.as_set()


def test_local_scheduler_gives_the_same(an):
    a = dan.vector_stats(an, by="skin", block_rows=BLOCK)  # no client: dask's local threads
    matrix, labels = an.matrix(pool="mean")
    means = (
        pd.DataFrame(matrix.astype(np.float64)).groupby(labels["skin"].to_numpy()).mean().to_numpy()
    )
    np.testing.assert_allclose(a["mean"].values, means, rtol=1e-9)
    with pytest.raises(ValidationError, match="block_rows"):
        dan.vector_stats(an, block_rows=0)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 50),
    d=st.integers(1, 4),
    block=st.integers(1, 60),
    n_groups=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_stats_do_not_depend_on_blocking(n, d, block, n_groups, seed):
    import xarray as xr

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    g = rng.integers(0, n_groups, size=n)
    ds = xr.Dataset(
        {"emb": (("image", "hidden"), x)},
        coords={"image_id": ("image", np.arange(n)), "g": ("image", g)},
    )
    an = EmbeddingAnalyzer(ds, row_dim="image", id_name="image_id")
    out = dan.vector_stats(an, "emb", by="g", block_rows=block)  # local scheduler
    frame = pd.DataFrame(x.astype(np.float64))
    assert out["g"].values.tolist() == sorted(set(g.tolist()))
    np.testing.assert_array_equal(out["count"].values, np.bincount(g)[np.bincount(g) > 0])
    np.testing.assert_allclose(
        out["mean"].values, frame.groupby(g).mean().to_numpy(), rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(
        out["std"].values, frame.groupby(g).std(ddof=0).to_numpy(), rtol=1e-6, atol=1e-7
    )
