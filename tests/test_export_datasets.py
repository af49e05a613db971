"""Parquet and Hugging Face exports hold the store's rows; HF faiss search matches an.search."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
faiss = pytest.importorskip("faiss")

from embstore import EmbeddingAnalyzer, Store  # noqa: E402
from embstore.cli import main  # noqa: E402
from embstore.errors import ValidationError  # noqa: E402


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(0)
    n = 70
    p = tmp_path / "e.zarr"
    with Store.create(
        p,
        row_dim="image",
        id_name="image_id",
        variables={"embedding": ("hidden",), "query_embeddings": ("query", "qhidden")},
        dtypes={"embedding": "float32", "query_embeddings": "float32"},
    ) as s:
        s.append(
            ids=np.arange(n) + 5,
            data={
                "embedding": rng.normal(size=(n, 16)).astype(np.float32),
                "query_embeddings": rng.normal(size=(n, 3, 8)).astype(np.float32),
            },
            coords={"skin": rng.integers(1, 11, n), "lighting": rng.choice(["well", "dim"], n)},
        )
    return p


def test_parquet_roundtrip(store, tmp_path):
    st = Store.open(store)
    out = st.to_parquet(
        tmp_path / "x.parquet",
        variables=["embedding", "query_embeddings"],
        pool=None,
        block_rows=16,
    )
    pf = pq.ParquetFile(out)
    assert pf.num_row_groups == 5  # streamed: 70 rows in blocks of 16
    t = pf.read()
    assert t.column_names == ["image_id", "skin", "lighting", "embedding", "query_embeddings"]
    np.testing.assert_array_equal(t["image_id"].to_numpy(), st.ids)
    pd.testing.assert_series_equal(
        t["skin"].to_pandas(), st.coords["skin"].reset_index(drop=True), check_names=False
    )
    emb = np.stack(t["embedding"].to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(emb, st.read("embedding"))
    q = np.array(t["query_embeddings"].to_pylist(), dtype=np.float32)
    np.testing.assert_array_equal(q, st.read("query_embeddings"))


def test_parquet_pooled_selection(store, tmp_path):
    an = EmbeddingAnalyzer(store).sel(lighting="dim")
    out = an.to_parquet(tmp_path / "p.parquet", variables="query_embeddings", normalize=True)
    t = pq.read_table(out)
    m, lab = an.matrix("query_embeddings", pool="mean")
    got = np.stack(t["query_embeddings"].to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(got, m / np.linalg.norm(m, axis=1, keepdims=True), rtol=1e-6)
    np.testing.assert_array_equal(t["image_id"].to_numpy(), lab["image_id"].to_numpy())
    with pytest.raises(ValidationError, match="not in the store"):
        an.to_parquet(tmp_path / "bad.parquet", variables="nope")


def test_hf_dataset_neighbours_equal_search(store, tmp_path):
    pytest.importorskip("datasets")
    an = EmbeddingAnalyzer(store)
    ds = an.to_hf_dataset(variables="embedding", normalize=True, path=tmp_path / "hf" / "d.arrow")
    assert len(ds) == len(an)
    assert set(ds.column_names) == {"image_id", "skin", "lighting", "embedding"}
    ds.add_faiss_index(column="embedding", metric_type=faiss.METRIC_INNER_PRODUCT)
    m, _ = an.matrix("embedding")
    queries = m[[0, 9, 33]]
    want = an.search(queries, k=5, variable="embedding", device="cpu")
    for qi, q in enumerate(queries):
        qn = (q / np.linalg.norm(q)).astype(np.float32)
        scores, ex = ds.get_nearest_examples("embedding", qn, k=5)
        w = want[want["query_index"] == qi].sort_values("rank")
        assert ex["image_id"] == w["image_id"].tolist()
        np.testing.assert_allclose(scores, w["score"], rtol=1e-5, atol=1e-6)


def test_export_cli(store, tmp_path, capsys):
    out = tmp_path / "c.parquet"
    assert (
        main(
            [
                "export",
                str(store),
                "--format",
                "parquet",
                "--out",
                str(out),
                "--variables",
                "embedding",
            ]
        )
        == 0
    )
    assert pq.read_table(out).num_rows == 70
    pytest.importorskip("datasets")
    import datasets

    hf = tmp_path / "hfds"
    assert (
        main(["export", str(store), "--format", "hf", "--out", str(hf), "--sel", "skin=1,2,3"]) == 0
    )
    ds = datasets.load_from_disk(str(hf))
    assert set(ds["skin"]) <= {1, 2, 3} and len(ds) == len(
        EmbeddingAnalyzer(store).sel(skin=[1, 2, 3])
    )
    assert "wrote" in capsys.readouterr().out
