"""The old analyzer API on an old per-image .pt directory and on a store.

The reference for each old method is the old algorithm written out with
torch/NumPy on the fixture tensors.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from embstore import EmbeddingAnalyzer  # noqa: E402
from embstore.analysis import legacy_dir  # noqa: E402
from embstore.analysis.legacy_dir import LegacyDirSource, is_legacy_dir  # noqa: E402
from embstore.errors import NotAStoreError, UnknownVariableError  # noqa: E402

Q, D, L, C, CB = 6, 8, 3, 5, 4
IDS = [3, 17, 42, 1000, 7, 99]
HW = [(2, 3), (3, 3), (1, 4), (2, 2), (4, 1), (3, 2)]


def make_tensors(seed: int, hw: tuple[int, int]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    dec = torch.randn(L, Q, D, generator=g)
    h, w = hw
    return {
        "decoder_output": dec,
        "query_embeddings": dec[-1].clone(),
        "encoder_output": torch.randn(h * w, D, generator=g),
        "backbone_features": torch.randn(CB, h, w, generator=g),
        "pred_logits": torch.randn(Q, C, generator=g) * 3,
        "pred_boxes": torch.rand(Q, 4, generator=g),
    }


@pytest.fixture(scope="module")
def tensors():
    return {i: make_tensors(n, hw) for n, (i, hw) in enumerate(zip(IDS, HW))}


@pytest.fixture(scope="module")
def legacy(tmp_path_factory, tensors):
    d = tmp_path_factory.mktemp("old") / "embeddings_output"
    d.mkdir()
    for i, t in tensors.items():
        torch.save(t, d / f"embedding_{i:012d}.pt")
    meta = {
        "image_ids": IDS,
        "num_images": len(IDS),
        "extract_type": "all",
        "embedding_keys": sorted(next(iter(tensors.values()))),
    }
    (d / "metadata.json").write_text(json.dumps(meta))
    return d


@pytest.fixture(scope="module")
def store(tmp_path_factory, tensors):
    """The same tensors in a Store (float32, so numbers must match exactly)."""
    from embstore import Store

    path = tmp_path_factory.mktemp("new") / "run.zarr"
    variables = {
        "query_embeddings": ("query", "hidden"),
        "decoder_output": ("layer", "query", "hidden"),
        "pred_logits": ("query", "class"),
        "pred_boxes": ("query", "box"),
    }
    st = Store.create(
        str(path),
        row_dim="image",
        id_name="image_id",
        variables=variables,
        dtypes=dict.fromkeys([*variables, "encoder_output", "backbone_features"], "float32"),
        ragged={"encoder_output": ("token", "hidden"), "backbone_features": ("channel", "y", "x")},
        chunk_rows=4,
    )
    data = {k: np.stack([tensors[i][k].numpy() for i in IDS]) for k in variables}
    data["encoder_output"] = [tensors[i]["encoder_output"].numpy() for i in IDS]
    data["backbone_features"] = [tensors[i]["backbone_features"].numpy() for i in IDS]
    st.append(
        IDS, data, coords={"skin": np.array([1, 2, 1, 3, 2, 1])}, ragged_hw={"encoder_output": HW}
    )
    st.flush()
    yield st
    st.close()


# ------------------------------------------------------------ old directory


def old_matrix(tensors):
    rows, ids, qs = [], [], []
    for i in IDS:
        emb = tensors[i]["query_embeddings"]
        for q in range(emb.shape[0]):
            rows.append(emb[q].numpy())
            ids.append(i)
            qs.append(q)
    return np.stack(rows), ids, qs


def test_is_legacy_dir(legacy, tmp_path):
    assert is_legacy_dir(legacy)
    assert not is_legacy_dir(tmp_path)
    with pytest.raises(NotAStoreError, match="neither metadata.json"):
        LegacyDirSource(tmp_path)


def test_construction_reads_no_tensor_file(legacy, monkeypatch):
    calls = []
    real = legacy_dir.load_pt_tensors
    monkeypatch.setattr(
        legacy_dir, "load_pt_tensors", lambda p, **kw: calls.append(p) or real(p, **kw)
    )
    an = EmbeddingAnalyzer(legacy)
    assert an.store is None and an.row_dim == "image" and an.id_name == "image_id"
    assert calls == []
    pooled = an.pool()  # builds the lazy graph: only the schema probe reads a file
    assert len(calls) == 1
    pooled.values
    assert len(calls) == 1 + len(IDS)


def test_metadata_and_load_embedding(legacy, tensors):
    an = EmbeddingAnalyzer(str(legacy))
    assert an.metadata == json.loads((legacy / "metadata.json").read_text())
    emb = an.load_embedding(42)
    assert set(emb) == set(tensors[42])
    for k, v in tensors[42].items():
        assert torch.equal(emb[k], v)
    assert an.load_embedding(5) is None


def test_load_all_and_query_matrix(legacy, tensors):
    an = EmbeddingAnalyzer(legacy)
    embs, ids = an.load_all_embeddings("encoder_output")
    assert ids == IDS
    assert [tuple(e.shape) for e in embs] == [(h * w, D) for h, w in HW]
    m, ids, qs = an.get_query_embeddings_as_matrix()
    want, want_ids, want_q = old_matrix(tensors)
    np.testing.assert_array_equal(m, want)
    assert ids == want_ids and qs == want_q


def test_missing_file_skipped_and_missing_metadata_synthesised(tmp_path, tensors):
    for i in IDS[:3]:
        torch.save(tensors[i], tmp_path / f"embedding_{i:012d}.pt")
    an = EmbeddingAnalyzer(tmp_path)  # no metadata.json: ids from the file names
    assert an.metadata["image_ids"] == sorted(IDS[:3])
    (tmp_path / "metadata.json").write_text(json.dumps({"image_ids": IDS}))
    an = EmbeddingAnalyzer(tmp_path)  # listed ids without a file are skipped
    assert an.ids.tolist() == IDS[:3]


def test_statistics_match_numpy(legacy, tensors):
    an = EmbeddingAnalyzer(legacy)
    m, _, _ = old_matrix(tensors)
    s = an.get_embedding_statistics()
    norms = np.linalg.norm(m.astype(np.float64), axis=1)
    assert s["shape"] == m.shape
    np.testing.assert_allclose(s["mean"], m.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s["std"], m.std(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(s["min"], m.min(axis=0))
    np.testing.assert_array_equal(s["max"], m.max(axis=0))
    assert s["norm_mean"] == pytest.approx(norms.mean())
    assert s["norm_std"] == pytest.approx(norms.std(), rel=1e-6)
    # other keys: one vector per image, mean over every non-feature dim
    dec = an.get_embedding_statistics("decoder_output")
    want = np.stack([tensors[i]["decoder_output"].numpy().mean(axis=(0, 1)) for i in IDS])
    np.testing.assert_allclose(dec["mean"], want.mean(axis=0), rtol=1e-5, atol=1e-6)
    bb = an.get_embedding_statistics("backbone_features")
    want = np.stack([tensors[i]["backbone_features"].numpy().mean(axis=(1, 2)) for i in IDS])
    assert bb["shape"] == (len(IDS), CB)
    np.testing.assert_allclose(bb["max"], want.max(axis=0), rtol=1e-6)
    with pytest.raises(UnknownVariableError, match="not found"):
        an.get_embedding_statistics("attention")


def test_new_api_on_old_directory(legacy, tensors):
    an = EmbeddingAnalyzer(legacy)
    x = np.stack([tensors[i]["query_embeddings"].numpy() for i in IDS])
    np.testing.assert_allclose(an.pool(method="max").values, x.max(axis=1))
    np.testing.assert_allclose(
        an.pool("decoder_output", layer=0).values,
        np.stack([tensors[i]["decoder_output"][0].numpy() for i in IDS]).mean(axis=1),
        rtol=1e-6,
    )
    enc = an.pool("encoder_output", over="token")
    want = np.stack([tensors[i]["encoder_output"].numpy().mean(axis=0) for i in IDS])
    np.testing.assert_allclose(enc.values, want, rtol=1e-6)
    assert enc["image_id"].values.tolist() == IDS
    sub = an.sel(image_id=[42, 3])  # the only coordinate of an old directory; row order kept
    assert sub.ids.tolist() == [3, 42]
    assert sub.metadata["image_ids"] == [3, 42]
    blocks = list(an.iter_vectors(pool=None, block_rows=Q * 2))
    assert [s for s, _ in blocks] == list(range(0, len(IDS) * Q, Q * 2))


# ----------------------------------------------------- store vs old directory


def test_store_and_directory_give_the_same_numbers(legacy, store, tensors):
    old, new = EmbeddingAnalyzer(legacy), EmbeddingAnalyzer(store)
    m_old, ids_old, q_old = old.get_query_embeddings_as_matrix()
    m_new, ids_new, q_new = new.get_query_embeddings_as_matrix()
    np.testing.assert_array_equal(m_old, m_new)
    assert ids_old == ids_new and q_old == q_new
    for method in ("mean", "max", "confidence", "topk:3"):
        np.testing.assert_allclose(
            old.pool(method=method).values, new.pool(method=method).values, rtol=1e-6
        )
    for key in ("query_embeddings", "decoder_output", "encoder_output", "backbone_features"):
        a, b = old.get_embedding_statistics(key), new.get_embedding_statistics(key)
        assert a["shape"] == b["shape"]
        for f in ("mean", "std", "min", "max"):
            np.testing.assert_allclose(a[f], b[f], rtol=1e-6, atol=1e-7)
    for var, over in (("encoder_output", "token"), ("backbone_features", ("y", "x"))):
        for method in ("mean", "max"):
            a = old.pool(var, over=over, method=method)
            b = new.pool(var, over=over, method=method)
            np.testing.assert_array_equal(a.values, b.values)
            assert a["image_id"].values.tolist() == b["image_id"].values.tolist() == IDS
    np.testing.assert_array_equal(
        new.sel(skin=1).pool("encoder_output", over="token").values,
        np.stack([tensors[i]["encoder_output"].numpy().mean(axis=0) for i in (3, 42, 99)]),
    )
    e_old, e_new = old.load_embedding(1000), new.load_embedding(1000)
    assert set(e_old) == set(e_new)
    for k in e_old:
        assert torch.equal(e_old[k], e_new[k]), k
    assert new.load_embedding(12345) is None
    embs, ids = new.load_all_embeddings("backbone_features")
    assert ids == IDS and all(
        torch.equal(e, tensors[i]["backbone_features"]) for e, i in zip(embs, ids)
    )
    meta = new.metadata
    assert meta["image_ids"] == IDS and meta["num_images"] == len(IDS)
    assert set(meta["embedding_keys"]) == set(tensors[3])


def test_compat_on_a_selection(store, tensors):
    an = EmbeddingAnalyzer(store).sel(skin=1)
    assert an.metadata["image_ids"] == [3, 42, 99]
    assert an.load_embedding(17) is None  # not selected
    m, ids, _ = an.get_query_embeddings_as_matrix()
    assert m.shape == (3 * Q, D) and sorted(set(ids)) == [3, 42, 99]


# ------------------------------------------------------------------ plots


def _assert_png_not_blank(path):
    from PIL import Image

    assert path.stat().st_size > 0
    img = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    assert img.shape[0] > 50 and img.shape[1] > 50
    assert (img < 250).mean() > 0.001  # something was drawn on the white page
    assert img.std() > 1.0


def test_visualize_pca_and_tsne_write_pngs(legacy, tmp_path, tensors):
    an = EmbeddingAnalyzer(legacy)
    pca_png, tsne_png = tmp_path / "pca.png", tmp_path / "tsne.png"
    reduced, pca = an.visualize_embeddings_pca(save_path=pca_png, dpi=60)
    m, _, _ = old_matrix(tensors)
    assert reduced.shape == (len(IDS) * Q, 2)
    assert pca.explained_variance_ratio_.shape == (2,)
    # PCA is deterministic up to the sign of each component
    from sklearn.decomposition import PCA

    ref = PCA(n_components=2).fit_transform(m)
    np.testing.assert_allclose(np.abs(reduced), np.abs(ref), rtol=1e-3, atol=1e-4)
    _assert_png_not_blank(pca_png)
    emb = an.visualize_embeddings_tsne(save_path=tsne_png, dpi=60)
    assert emb.shape == (len(IDS) * Q, 2) and np.isfinite(emb).all()
    _assert_png_not_blank(tsne_png)
    again, _ = an.visualize_embeddings_pca()  # no save_path: nothing written, same result
    np.testing.assert_allclose(again, reduced, rtol=1e-5, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pca.png", "tsne.png"]
    reduced3, _ = an.visualize_embeddings_pca(
        "decoder_output", n_components=3, save_path=tmp_path / "p3.png", dpi=40
    )
    assert reduced3.shape == (len(IDS), 3)
    _assert_png_not_blank(tmp_path / "p3.png")


def test_project_colours_by_a_coordinate(store, tmp_path):
    an = EmbeddingAnalyzer(store)
    png = tmp_path / "proj.png"
    out = an.project(pool="mean", color_by="skin", save_path=png, dpi=60)
    assert out.dims == ("vector", "component")
    assert out["image_id"].values.tolist() == IDS
    assert out["skin"].values.tolist() == [1, 2, 1, 3, 2, 1]
    _assert_png_not_blank(png)
