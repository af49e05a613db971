"""Threshold clustering: union-find, deterministic ids, approximate indexes, previews."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

pytest.importorskip("faiss")

import itertools

from embstore.search import build_index, pair_recall, save_group_previews, threshold_clusters
from embstore.search.graph import StreamingComponents, canonical_labels
from embstore.testing.stores import create_vector_store
from embstore.testing.synthetic import blobs


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    n=st.integers(1, 60),
    edges=st.lists(st.tuples(st.integers(0, 59), st.integers(0, 59)), max_size=80),
    cuts=st.lists(st.integers(0, 80), max_size=5),
)
def test_streaming_union_find_equals_scipy(n, edges, cuts):
    e = np.array([(a % n, b % n) for a, b in edges], dtype=np.int64).reshape(-1, 2)
    uf = StreamingComponents(n)
    bounds = sorted({0, len(e), *[c % (len(e) + 1) for c in cuts]})
    for a, b in itertools.pairwise(bounds):
        uf.add(e[a:b, 0], e[a:b, 1])
    g = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    _, want = connected_components(g, directed=False)
    np.testing.assert_array_equal(uf.labels(), canonical_labels(want))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=40), st.randoms(use_true_random=False))
def test_canonical_ids_are_deterministic_and_ordered(raw, rnd):
    raw = np.array(raw)
    perm = list(range(7))
    rnd.shuffle(perm)
    lab = canonical_labels(raw)
    np.testing.assert_array_equal(lab, canonical_labels(np.array(perm)[raw]))  # renaming-invariant
    sizes = np.bincount(lab)
    first = np.array([np.flatnonzero(lab == g)[0] for g in range(sizes.size)])
    assert (np.diff(sizes) <= 0).all()
    for g in range(sizes.size - 1):
        if sizes[g] == sizes[g + 1]:
            assert first[g] < first[g + 1]
    # same partition as the input
    assert len(set(zip(raw.tolist(), lab.tolist()))) == sizes.size == len(set(raw.tolist()))


def test_clusters_equal_brute_force_and_keep_singletons():
    x, _ = blobs()
    x = np.vstack([x, np.eye(24, dtype=np.float32)[:3] * 50])  # 3 outliers -> singletons
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    adj = (xn @ xn.T) >= 0.7
    _, want = connected_components(coo_matrix(adj), directed=False)
    got = threshold_clusters(x, 0.7, k=len(x), row_batch=128, block_rows=200, device="cpu")
    np.testing.assert_array_equal(got.labels, canonical_labels(want))
    assert got.n_singletons >= 3 and len(got) == len(x)
    hist = got.size_histogram()
    assert int((hist.index * hist).sum()) == len(x)
    # row_batch / block sizes do not change the result
    again = threshold_clusters(x, 0.7, k=len(x), row_batch=1000, device="cpu")
    np.testing.assert_array_equal(again.labels, got.labels)


def test_face_pipeline_defaults_recover_planted_identities():
    x, truth = blobs(800, 32, 25, 0.12, 2)
    got = threshold_clusters(x, device="cpu")  # threshold=0.7, k=100
    # planted identities are recovered exactly (same partition)
    assert (
        len(set(zip(truth.tolist(), got.labels.tolist())))
        == got.n_groups
        == len(set(truth.tolist()))
    )


def test_l2_metric_clusters():
    x, truth = blobs(300, 8, 5, 0.05, 4)
    got = threshold_clusters(x, threshold=1.0, k=50, metric="l2", device="cpu")
    assert got.metric == "l2"
    assert len(set(zip(truth.tolist(), got.labels.tolist()))) == got.n_groups == 5


def test_approximate_index_clusters_and_reported_recall():
    x, _truth = blobs(3000, 32, 40, 0.2, 5)
    exact = threshold_clusters(x, 0.7, k=30, device="cpu")
    hnsw = build_index(x, kind="hnsw", device="cpu")
    approx = threshold_clusters(x, 0.7, k=30, index=hnsw)
    assert not approx.exact and exact.exact
    rep = pair_recall(x, hnsw, 0.7, k=30, sample=300)
    assert 0.9 <= rep.recall <= 1.0 and rep.n_exact > 1000
    # approximate groups never merge what exact search keeps apart (edges are a subset)
    for grp in approx.groups(min_size=2):
        assert len(set(exact.labels[grp].tolist())) == 1


def test_previews_of_largest_groups(tmp_path):
    from PIL import Image
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    paths = []
    for i, img in enumerate(photos):
        p = tmp_path / f"photo_{i}.jpg"
        Image.fromarray(img).save(p)
        paths.append(p)
    paths.append(tmp_path / "missing.jpg")  # unreadable -> grey tile, not a crash
    labels = np.array([1, 0, 0, 0, 1, 2])
    paths = paths + [paths[0]]
    written = save_group_previews(labels, paths, tmp_path / "prev", n_groups=5, per_group=2)
    assert [p.name for p in written] == ["group_0000.png", "group_0001.png"]
    grid = Image.open(written[0])
    assert grid.size == (224, 112)
    thumbs = sorted((tmp_path / "prev" / "group_0001").iterdir())
    assert [t.name for t in thumbs] == ["00.png", "01.png"]
    assert Image.open(thumbs[0]).size == (112, 112)
    grey = np.asarray(Image.open(thumbs[1]))
    assert (grey == 128).all()


# ---------------------------------------------------------------- analyzer
def _store_with_images(tmp_path, x):
    from PIL import Image
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    paths = []
    for i in range(len(x)):
        p = tmp_path / "img" / f"{i:04d}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(photos[i % 4][::8, ::8]).save(p)
        paths.append(str(p))
    return create_vector_store(tmp_path / "faces.zarr", x, coords={"path": paths}, chunk_rows=64)


def test_analyzer_cluster_writes_coordinate_and_exports(tmp_path):
    from PIL import Image

    from embstore import EmbeddingAnalyzer

    x, _truth = blobs(300, 24, 12, 0.12, 8)
    st_ = _store_with_images(tmp_path, x)
    an = EmbeddingAnalyzer(st_)
    idx = an.build_index("embedding", kind="flat")
    res = an.cluster(0.7, k=50, batch=64, variable="embedding")
    assert res.coord == "cluster"
    want = threshold_clusters(x, 0.7, k=50, device="cpu").labels
    np.testing.assert_array_equal(res.groups.labels, want)
    np.testing.assert_array_equal(st_.coords["cluster"].to_numpy(), want)
    assert (
        res.stats["n_groups"] == 12
        and sum(s * c for s, c in res.stats["size_histogram"].items()) == 300
    )
    assert list(res.frame.columns[:2]) == ["image_id", "path"]
    # our own coordinate write does not invalidate the index we had built
    assert an.build_index("embedding", kind="flat") is idx
    # selection on the new coordinate works
    assert len(an.sel(cluster=0)) == res.groups.sizes[0]

    out = an.export_training_labels(tmp_path / "labels", res)
    assert out["classes"].name == "fr_train_12_class_300_data_classes.npy"
    classes, items = np.load(out["classes"]), np.load(out["data_list"])
    paths = st_.coords["path"].to_numpy()
    np.testing.assert_array_equal(items, paths)
    np.testing.assert_array_equal(classes, want)

    written = an.save_group_previews(tmp_path / "prev", res, n_groups=3, per_group=4)
    assert len(written) == 3
    assert Image.open(written[0]).size == (4 * 112, 112)


def test_cluster_without_paths_refuses_previews_and_exports_ids(tmp_path):
    from embstore import EmbeddingAnalyzer

    x, _ = blobs(50, 8, 3, 0.05, 9)
    st_ = create_vector_store(tmp_path / "s.zarr", x, dtype=None)  # default dtype (float16)
    path = st_.path
    st_.close()
    an = EmbeddingAnalyzer(path)  # read-only: labels not written, but returned
    res = an.cluster(0.7, k=10, variable="embedding")
    assert res.coord is None and res.groups.n_groups == 3
    with pytest.raises(ValueError, match="no image paths"):
        an.save_group_previews(tmp_path / "p", res)
    out = an.export_training_labels(tmp_path / "l", res, min_size=2)
    assert np.load(out["data_list"]).tolist() == [str(i) for i in range(50)]


def test_analyzer_approximate_cluster_and_pair_recall(tmp_path):
    from embstore import EmbeddingAnalyzer

    x, _ = blobs(1500, 32, 30, 0.2, 10)
    st_ = create_vector_store(tmp_path / "a.zarr", x)
    an = EmbeddingAnalyzer(st_)
    rep = an.pair_recall(0.7, k=30, kind="ivf", variable="embedding", sample=200)
    assert 0.5 < rep.recall <= 1.0 and rep.sample_size == 200
    res = an.cluster(0.7, k=30, kind="ivf", variable="embedding")
    assert not res.groups.exact and res.stats["exact"] is False


def test_cli_cluster_pipeline(tmp_path, capsys):
    from embstore import Store
    from embstore.cli import main

    x, _truth = blobs(200, 16, 6, 0.1, 11)
    x[190:] = x[:10]  # exact duplicates of the first rows
    create_vector_store(tmp_path / "f.zarr", x, ids=[f"im{i}" for i in range(200)]).close()
    rc = main(
        [
            "cluster",
            str(tmp_path / "f.zarr"),
            "--variable",
            "embedding",
            "--remove-duplicates",
            "--duplicate-thresh",
            "0.999",
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
            "--write-labels",
            "--prefix",
            "fr_train",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "removed 10 of 200 rows" in text and "6 clusters over 190 rows" in text
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == [
        "clustering_result.txt",
        "fr_train_6_class_190_data_classes.npy",
        "fr_train_6_class_190_data_data_list.npy",
    ]
    coords = Store.open(tmp_path / "f.zarr").coords
    assert (coords["cluster"].to_numpy()[:190] >= 0).all()
    assert (
        main(
            [
                "cluster",
                str(tmp_path / "f.zarr"),
                "--variable",
                "embedding",
                "--save-groups",
                "2",
                "--out",
                str(tmp_path / "o2"),
                "--no-progress",
            ]
        )
        == 2
    )  # no image paths: usage error
    assert "no image paths" in capsys.readouterr().err


def test_dedup_and_cluster_one_pass_equals_two_searches():
    from embstore.search import dedup_and_cluster, find_duplicate_groups

    x, _ = blobs(500, 24, 15, 0.12, 13)
    x[450:] = x[:50] + 0.001
    dups, clus = dedup_and_cluster(x, 0.9, 0.7, k=40, row_batch=128, device="cpu")
    np.testing.assert_array_equal(
        dups.labels, find_duplicate_groups(x, 0.9, k=40, device="cpu").labels
    )
    np.testing.assert_array_equal(
        clus.labels, threshold_clusters(x, 0.7, k=40, device="cpu").labels
    )
    assert dups.n_removed >= 50
    # every duplicate group lies inside one cluster
    for grp in dups.groups(min_size=2):
        assert len(set(clus.labels[grp].tolist())) == 1
    with pytest.raises(ValueError, match="stricter"):
        dedup_and_cluster(x, 0.5, 0.7, device="cpu")
