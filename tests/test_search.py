"""Index building, exact/approximate search, persistence bytes, devices (embstore.search)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

faiss = pytest.importorskip("faiss")

from embstore.errors import (  # noqa: E402
    DeviceUnavailableError,
    MissingDependencyError,
    ShapeMismatchError,
    ValidationError,
)
from embstore.search import (  # noqa: E402
    SearchIndex,
    as_block_source,
    build_index,
    knn_search,
    knn_self,
    pair_recall,
)
from embstore.search.results import search_frame  # noqa: E402


def _data(n=300, d=16, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _clustered(n=2000, d=32, centers=40, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, d))
    return (c[rng.integers(0, centers, n)] + 0.3 * rng.normal(size=(n, d))).astype(np.float32)


def _norm(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute(x, q, k, metric):
    if metric == "cosine":
        s = _norm(q) @ _norm(x).T
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    elif metric == "ip":
        s = q @ x.T
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    else:
        s = np.sqrt(((q[:, None, :] - x[None, :, :]) ** 2).sum(-1))
        order = np.argsort(s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, 1), order


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_flat_index_matches_brute_force(metric):
    x, q = _data(), _data(20, seed=1)
    idx = build_index(x, kind="flat", metric=metric, device="cpu")
    assert idx.exact and idx.ntotal == 300 and idx.dim == 16
    s, i = idx.search(q, 7)
    bs, bi = _brute(x, q, 7, metric)
    np.testing.assert_allclose(s, bs, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(i, bi)


def test_streaming_blocks_equal_in_memory():
    x = _data(257)
    calls = []

    def blocks(rows):
        calls.append(rows)
        for s in range(0, len(x), 50):  # oversize blocks are split to `rows`
            yield s, x[s : s + 50].astype(np.float16)

    a = build_index(blocks, kind="flat", device="cpu", block_rows=32)
    b = build_index(x.astype(np.float16), kind="flat", device="cpu")
    assert a.ntotal == b.ntotal == 257
    sa, ia = a.search(x[:5], 4)
    sb, ib = b.search(x[:5], 4)
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_allclose(sa, sb)
    assert calls == [32]


def test_input_not_modified_by_cosine_normalisation():
    x = _data(50)
    before = x.copy()
    build_index(x, kind="flat", metric="cosine", device="cpu")
    knn_search(x, x[:3], 2, device="cpu")
    np.testing.assert_array_equal(x, before)


def test_k_larger_than_index_is_padded():
    x = _data(3)
    s, i = build_index(x, device="cpu").search(x[:1], 5)
    assert i[0, 3:].tolist() == [-1, -1] and np.isneginf(s[0, 3:]).all()
    assert sorted(i[0, :3].tolist()) == [0, 1, 2]


@pytest.mark.parametrize("kind", ["ivf", "hnsw", "IVF16,Flat"])
def test_approximate_recall_at_10(kind):
    x = _clustered()
    q = x[:100]
    idx = build_index(x, kind=kind, metric="cosine", device="cpu")
    assert not idx.exact
    _, ia = idx.search(q, 10)
    _, ie = knn_search(x, q, 10, device="cpu")
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(ia, ie)])
    assert recall >= 0.8, recall


def test_ivf_nlist_and_training_from_stream():
    x = _clustered(1000)
    idx = build_index(
        lambda r: ((s, x[s : s + r]) for s in range(0, 1000, r)),
        kind="ivf",
        nlist=10,
        train_rows=500,
        device="cpu",
        block_rows=100,
    )
    assert idx.factory == "IVF10,Flat" and idx.ntotal == 1000
    idx.set_search_params(nprobe=10)  # all lists: exact
    s, _i = idx.search(x[:20], 5)
    es, _ei = knn_search(x, x[:20], 5, device="cpu")
    np.testing.assert_allclose(s, es, atol=1e-5)


def test_bad_kind_metric_device_k():
    x = _data(20)
    with pytest.raises(ValidationError, match="factory"):
        build_index(x, kind="NotAnIndex", device="cpu")
    with pytest.raises(ValidationError, match="metric"):
        build_index(x, metric="hamming", device="cpu")
    with pytest.raises(ValidationError, match="device"):
        build_index(x, device="tpu")
    with pytest.raises(ValidationError, match="k must"):
        build_index(x, device="cpu").search(x, 0)
    with pytest.raises(ShapeMismatchError, match="dim=16"):
        build_index(x, device="cpu").search(np.ones((2, 5)), 1)
    with pytest.raises(ValidationError, match="nlist"):
        build_index(x, kind="ivf", nlist=64, device="cpu")


@pytest.mark.skipif(faiss.get_num_gpus() > 0, reason="machine has a GPU")
def test_cuda_without_gpu_raises_instead_of_falling_back():
    with pytest.raises(DeviceUnavailableError, match="device='cpu'"):
        build_index(_data(10), device="cuda")
    assert build_index(_data(10), device="auto").device == "cpu"


def test_hnsw_refuses_explicit_cuda(monkeypatch):
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    with pytest.raises(ValidationError, match="HNSW"):
        build_index(_data(10), kind="hnsw", device="cuda")


def test_bytes_round_trip():
    x = _clustered(500)
    for kind in ("flat", "hnsw"):
        idx = build_index(x, kind=kind, device="cpu")
        blob = idx.to_bytes()
        assert isinstance(blob, bytes) and len(blob) > 500 * 32 * 4 * 0.9
        back = SearchIndex.from_bytes(blob, idx.metric, idx.kind, idx.factory, device="cpu")
        assert back.ntotal == 500
        np.testing.assert_array_equal(back.search(x[:10], 5)[1], idx.search(x[:10], 5)[1])


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    n=st.integers(1, 120),
    k=st.integers(1, 12),
    block=st.integers(1, 130),
    metric=st.sampled_from(["cosine", "l2", "ip"]),
    seed=st.integers(0, 2**16),
)
def test_blockwise_knn_search_equals_one_block(n, k, block, metric, seed):
    x = _data(n, 8, seed)
    q = _data(5, 8, seed + 1)
    s1, i1 = knn_search(x, q, k, metric, block_rows=block, device="cpu")
    s2, _ = knn_search(x, q, k, metric, block_rows=10**6, device="cpu")
    bs, _ = _brute(x, q, min(k, n), metric)
    np.testing.assert_allclose(s1[:, : min(k, n)], bs, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(s1, s2, rtol=1e-5, atol=1e-5)
    assert (i1[:, min(k, n) :] == -1).all()


def test_knn_self_exact_and_with_index():
    x = _clustered(400)
    exact = knn_self(x, 5, row_batch=64, block_rows=100, device="cpu")
    assert exact.exact and exact.ids.shape == (400, 5)
    bs, _bi = _brute(x, x, 5, "cosine")
    np.testing.assert_allclose(exact.scores, bs, atol=1e-4)
    via = knn_self(x, 5, index=build_index(x, device="cpu"), row_batch=64)
    np.testing.assert_allclose(via.scores, exact.scores, atol=1e-5)
    budget = knn_self(x, 5, memory_budget=40 * 2**20, device="cpu")
    np.testing.assert_allclose(budget.scores, exact.scores, atol=1e-5)


def test_one_shot_iterator_is_refused_for_multi_pass():
    x = _data(10)
    with pytest.raises(ValidationError, match="one-shot"):
        knn_self(iter([x]), 2, device="cpu")
    # a single pass (building an index) is fine
    assert build_index(iter([x[:5], x[5:]]), device="cpu").ntotal == 10


def test_range_search_matches_numpy():
    x = _clustered(300)
    idx = build_index(x, device="cpu")
    lims, s, i = idx.range_search(x[:10], 0.8)
    sims = _norm(x[:10]) @ _norm(x).T
    for q in range(10):
        got = set(i[lims[q] : lims[q + 1]].tolist())
        want = set(np.flatnonzero(sims[q] > 0.8 + 1e-5).tolist())
        maybe = set(np.flatnonzero(sims[q] > 0.8 - 1e-5).tolist())
        assert want <= got <= maybe
    l2 = build_index(x, metric="l2", device="cpu")
    lims, s, i = l2.range_search(x[:3], 2.0)
    assert (s <= 2.0 + 1e-5).all() and lims[-1] > 3


def test_search_frame_labels():
    labels = pd.DataFrame({"image_id": [10, 11, 12], "skin": [1, 2, 1]})
    s = np.array([[1.0, 0.5], [1.0, 0.2]], dtype=np.float32)
    i = np.array([[0, 2], [1, -1]])
    df = search_frame(s, i, db_labels=labels, query_labels=labels.iloc[[0, 1]])
    assert list(df.columns) == [
        "query_image_id",
        "query_skin",
        "rank",
        "neighbor",
        "image_id",
        "skin",
        "score",
    ]
    assert df["image_id"].tolist() == [10, 12, 11]
    assert df["query_image_id"].tolist() == [10, 10, 11]
    lims = np.array([0, 2, 3])
    df = search_frame(
        np.array([0.5, 0.9, 0.7], np.float32), np.array([2, 0, 1]), db_labels=labels, lims=lims
    )
    assert df["neighbor"].tolist() == [0, 2, 1] and df["rank"].tolist() == [0, 1, 0]


def test_pair_recall_flat_is_one_and_ivf_reports_less_with_one_probe():
    x = _clustered(3000, centers=60)
    flat = build_index(x, device="cpu")
    r = pair_recall(x, flat, threshold=0.7, k=20, sample=200)
    assert r.recall == 1.0 and r.precision == 1.0 and r.n_exact > 0 and r.sample_size == 200
    ivf = build_index(x, kind="ivf", nlist=64, device="cpu")
    ivf.set_search_params(nprobe=1)
    r1 = pair_recall(x, ivf, threshold=0.7, k=20, sample=200)
    ivf.set_search_params(nprobe=64)
    r64 = pair_recall(x, ivf, threshold=0.7, k=20, sample=200)
    assert 0 < r1.recall <= r64.recall == 1.0 and r1.n_common <= r64.n_common
    with pytest.raises(ValidationError, match="holds 3000"):
        pair_recall(x[:10], ivf, 0.7)


def test_missing_faiss_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(MissingDependencyError, match=r"embstore\[faiss\]"):
        build_index(_data(5), device="cpu")


def test_block_source_read_rows_and_errors():
    x = _data(100)
    src = as_block_source(x)
    rows = np.array([99, 0, 50, 50])
    np.testing.assert_array_equal(src.read_rows(rows, block_rows=7), x[rows])
    with pytest.raises(ShapeMismatchError, match="2-D"):
        as_block_source(np.zeros((2, 3, 4)))
    with pytest.raises(ValidationError, match="row positions"):
        src.read_rows([100])


def test_import_search_does_not_import_faiss():
    code = (
        "import sys, embstore, embstore.search, embstore.search.graph, embstore.search.accessor\n"
        "bad = [m for m in ('faiss', 'torch', 'matplotlib') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- analyzer
def _store(tmp_path, n=120, d=16, q=4, seed=0, name="run.zarr"):
    from embstore import Store

    rng = np.random.default_rng(seed)
    st_ = Store.create(
        tmp_path / name,
        row_dim="image",
        id_name="image_id",
        variables={"query_embeddings": ("query", "hidden"), "embedding": ("hidden",)},
        dtypes={"query_embeddings": "float32", "embedding": "float32"},
        chunk_rows=32,
    )
    qe = rng.normal(size=(n, q, d)).astype(np.float32)
    emb = rng.normal(size=(n, d)).astype(np.float32)
    st_.append(
        np.arange(100, 100 + n),
        {"query_embeddings": qe, "embedding": emb},
        coords={"skin": np.arange(n) % 3},
    )
    st_.flush()
    return st_, qe, emb


def test_analyzer_search_by_ids_and_vectors_matches_brute_force(tmp_path):
    from embstore import EmbeddingAnalyzer

    st_, qe, _ = _store(tmp_path)
    an = EmbeddingAnalyzer(st_)
    pooled = qe.mean(1)
    # no index: exact streaming scan
    df = an.search(ids=[105, 101], k=3)
    assert list(df.columns) == [
        "query_image_id",
        "query_skin",
        "rank",
        "neighbor",
        "image_id",
        "skin",
        "score",
    ]
    _, bi = _brute(pooled, pooled[[5, 1]], 3, "cosine")
    assert df["neighbor"].tolist() == bi.ravel().tolist()
    assert df["image_id"].tolist() == (bi.ravel() + 100).tolist()
    assert df["query_image_id"].tolist() == [105] * 3 + [101] * 3
    # with a flat index: same answer
    idx = an.build_index(kind="flat")
    assert idx.ntotal == 120 and idx.exact
    df2 = an.search(pooled[[5, 1]], k=3)
    assert df2["neighbor"].tolist() == df["neighbor"].tolist()
    np.testing.assert_allclose(df2["score"], df["score"], atol=1e-5)
    # unpooled: one vector per (image, query)
    dfu = an.search(ids=[107], k=2, pool=None)
    assert dfu["query_query"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert (dfu[dfu["rank"] == 0]["neighbor"].to_numpy() == 7 * 4 + np.arange(4)).all()
    with pytest.raises(KeyError, match="999"):
        an.search(ids=[999], k=1)
    with pytest.raises(ValidationError, match="exactly one"):
        an.search(k=1)


def test_analyzer_range_search_on_selection(tmp_path):
    from embstore import EmbeddingAnalyzer

    st_, _, emb = _store(tmp_path)
    sub = EmbeddingAnalyzer(st_).sel(skin=1)
    rows = np.flatnonzero(np.arange(120) % 3 == 1)
    df = sub.range_search(emb[rows[:2]], threshold=0.3, variable="embedding")
    sims = _norm(emb[rows[:2]]) @ _norm(emb[rows]).T
    want = sorted((q, int(rows[j])) for q, j in zip(*np.nonzero(sims >= 0.3)))
    assert sorted(zip(df["query_index"].tolist(), (df["image_id"] - 100).tolist())) == want
    assert set(df["skin"]) == {1}
    sub.build_index("embedding", kind="flat")
    df2 = sub.range_search(emb[rows[:2]], threshold=0.3, variable="embedding")
    assert sorted(zip(df2["query_index"], df2["image_id"])) == sorted(
        zip(df["query_index"], df["image_id"])
    )


def test_index_saved_with_store_reloaded_and_rebuilt_when_stale(tmp_path, caplog):
    import logging

    from embstore import EmbeddingAnalyzer, Store

    st_, _, emb = _store(tmp_path)
    an = EmbeddingAnalyzer(st_)
    an.build_index("embedding", kind="hnsw")
    assert st_.read_blob("faiss_embedding.mean.None.hnsw.cosine") is not None
    path = st_.path
    st_.close()
    st2 = Store.open(path, mode="a")
    an2 = EmbeddingAnalyzer(st2)
    with caplog.at_level(logging.INFO, logger="embstore.search.catalog"):
        idx = an2.build_index("embedding", kind="hnsw")
    assert "reloaded index" in caplog.text and idx.ntotal == 120
    # a selection is a different vector set: not reused
    assert an2.sel(skin=0).build_index("embedding", kind="hnsw").ntotal == 40
    # new rows make the saved index stale
    st2.append(
        [999],
        {"query_embeddings": np.zeros((1, 4, 16), np.float32), "embedding": emb[:1]},
        coords={"skin": [0]},
    )
    st2.flush()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="embstore.search.catalog"):
        idx = EmbeddingAnalyzer(st2).build_index("embedding", kind="hnsw")
    assert "stale" in caplog.text and idx.ntotal == 121
    # search() without kind picks the saved index up on a fresh analyzer
    df = EmbeddingAnalyzer(st2).search(ids=[999], k=2, variable="embedding")
    assert set(df["image_id"]) == {100, 999} and (df["score"] > 0.999).all()


def test_read_only_store_keeps_index_in_memory(tmp_path, caplog):
    from embstore import EmbeddingAnalyzer

    st_, _, _ = _store(tmp_path)
    path = st_.path
    st_.close()
    an = EmbeddingAnalyzer(path)  # opened read-only
    idx = an.build_index("embedding")
    assert "read-only" in caplog.text and idx.ntotal == 120
    assert an.build_index("embedding") is idx  # cached


def test_cli_search(tmp_path, capsys):
    from embstore.cli import main

    st_, _qe, emb = _store(tmp_path)
    st_.close()
    np.save(tmp_path / "q.npy", emb[:2])
    rc = main(
        [
            "search",
            str(tmp_path / "run.zarr"),
            "--variable",
            "embedding",
            "--vectors",
            str(tmp_path / "q.npy"),
            "-k",
            "2",
            "--out",
            str(tmp_path / "r.csv"),
        ]
    )
    assert rc == 0
    df = pd.read_csv(tmp_path / "r.csv")
    assert df[df["rank"] == 0]["image_id"].tolist() == [100, 101]
    rc = main(
        [
            "search",
            str(tmp_path / "run.zarr"),
            "--ids",
            "103",
            "-k",
            "1",
            "--kind",
            "flat",
            "--save-index",
        ]
    )
    assert rc == 0 and "103" in capsys.readouterr().out


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    n=st.integers(0, 50),
    read=st.integers(1, 20),
    block=st.integers(1, 60),
    chunk=st.integers(1, 25),
)
def test_block_source_joins_small_reads_into_full_blocks(n, read, block, chunk):
    from embstore.search.source import BlockSource

    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)

    def factory(rows):
        step = min(rows, chunk)
        return ((s, x[s : s + step]) for s in range(0, n, step))

    src = BlockSource(factory, n=n, read_rows=read)
    parts = list(src.blocks(block))
    assert all(b.shape[0] == min(block, n - s) for s, b in parts)
    got = np.concatenate([b for _, b in parts]) if parts else np.zeros((0, 2), np.float32)
    np.testing.assert_array_equal(got, x)
    assert [s for s, _ in parts] == list(range(0, n, block))
