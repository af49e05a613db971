"""Near-duplicate groups equal brute force; removal rule; label export (embstore.search)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

pytest.importorskip("faiss")

from embstore.errors import ShapeMismatchError, ValidationError
from embstore.search import (
    build_index,
    export_training_labels,
    find_duplicate_groups,
    training_label_name,
)
from embstore.search.graph import canonical_labels
from embstore.testing.stores import create_vector_store
from embstore.testing.synthetic import planted_duplicates as planted


def brute_groups(x, threshold):
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = xn @ xn.T
    adj = sims >= threshold
    np.fill_diagonal(adj, False)
    _, lab = connected_components(csr_matrix(adj), directed=False)
    iu = np.triu_indices(len(x), 1)
    margin = np.abs(sims[iu] - threshold).min() if len(x) > 1 else 1.0
    pairs = {(int(a), int(b)) for a, b in zip(*np.nonzero(np.triu(adj, 1)))}
    return canonical_labels(lab), pairs, margin


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    n_base=st.integers(1, 40),
    n_dup=st.integers(0, 40),
    d=st.sampled_from([4, 8, 16]),
    noise=st.sampled_from([0.0, 0.02, 0.1, 0.3]),
    threshold=st.sampled_from([0.8, 0.9, 0.95]),
    row_batch=st.integers(1, 90),
    seed=st.integers(0, 2**16),
)
def test_exact_groups_equal_brute_force(n_base, n_dup, d, noise, threshold, row_batch, seed):
    x = planted(n_base, n_dup, d, noise, seed)
    want, pairs, margin = brute_groups(x, threshold)
    assume(margin > 1e-4 or noise == 0.0)  # avoid float32 ties at the threshold
    n = len(x)
    for kwargs in ({"k": n}, {"k": None}, {"k": n, "index": build_index(x, device="cpu")}):
        got = find_duplicate_groups(
            x, threshold, row_batch=row_batch, block_rows=row_batch + 3, device="cpu", **kwargs
        )
        np.testing.assert_array_equal(got.labels, want)
        if noise > 0:
            assert got.pairs.as_set() == pairs
        assert got.exact
        assert got.n_removed == n - len(np.unique(want))


def test_planted_duplicates_found_and_one_kept_per_group():
    x = planted(200, 100, 32, 0.01, 1)
    g = find_duplicate_groups(x, 0.9, k=20, device="cpu")
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    # every kept row has no near-duplicate among the other kept rows
    kept = xn[g.keep]
    s = kept @ kept.T
    np.fill_diagonal(s, 0)
    assert s.max() < 0.9
    assert g.n_removed == 100 == len(x) - g.keep.sum()
    # representative = smallest row of each group
    for members in g.groups(min_size=2):
        assert g.keep[members].tolist() == [True] + [False] * (len(members) - 1)
        assert members.tolist() == sorted(members.tolist())
    df = g.pairs.to_frame()
    assert (df["score"] >= 0.9).all() and (df["i"] < df["j"]).all()


def test_small_k_can_only_split_groups():
    # 12 identical vectors: with k=3 only some edges are seen but components still cover them
    x = np.vstack([np.tile([1.0, 0, 0], (12, 1)), [[0, 1.0, 0]]]).astype(np.float32)
    full = find_duplicate_groups(x, 0.9, k=None, device="cpu")
    assert full.sizes.tolist() == [12, 1]
    small = find_duplicate_groups(x, 0.9, k=3, device="cpu")
    # each small-k group lies inside one full group
    for grp in small.groups(min_size=1):
        assert len(set(full.labels[grp].tolist())) == 1


def test_stats_and_frame():
    x = planted(50, 30, 16, 0.01, 3)
    g = find_duplicate_groups(x, 0.9, k=10, device="cpu")
    st_ = g.stats()
    assert st_["n_vectors"] == 80 and st_["n_groups"] == g.n_groups
    assert sum(s * c for s, c in st_["size_histogram"].items()) == 80
    df = g.to_frame()
    assert df["representative"].sum() == g.n_groups
    assert (df.groupby("group")["group_size"].first().values == g.sizes).all()


def test_label_file_names():
    assert training_label_name(12345, 3000) == "fr_train_12K_class_3K_data"
    assert training_label_name(7, 999) == "fr_train_7_class_999_data"
    assert training_label_name(1_000_000, 2_499_999, prefix="x") == "x_1000K_class_2500K_data"


def test_export_training_labels_pairs_by_index(tmp_path):
    labels = np.array([0, 0, 1, 2, 0, 1, 3])
    paths = [f"img_{i}.jpg" for i in range(7)]
    keep = np.array([True, False, True, True, True, True, True])
    out = export_training_labels(labels, paths, tmp_path, keep=keep, min_size=2)
    assert out["classes"].name == "fr_train_2_class_4_data_classes.npy"
    assert out["data_list"].name == "fr_train_2_class_4_data_data_list.npy"
    classes = np.load(out["classes"])
    items = np.load(out["data_list"])
    assert items.tolist() == ["img_0.jpg", "img_2.jpg", "img_4.jpg", "img_5.jpg"]
    assert classes.tolist() == [0, 1, 0, 1]
    with pytest.raises(ShapeMismatchError, match="same length"):
        export_training_labels(labels, paths[:3], tmp_path)
    with pytest.raises(ValidationError, match="min_size"):
        export_training_labels(labels, paths, tmp_path, min_size=0)


# ---------------------------------------------------------------- analyzer
def _face_store(tmp_path, x, mode_paths=False):
    ids = [f"img_{i:04d}" for i in range(len(x))]
    st_ = create_vector_store(
        tmp_path / "faces.zarr",
        x,
        ids=ids,
        coords={"filename": [f"/data/{i}.jpg" for i in ids]},
        chunk_rows=16,
    )
    return st_, np.array(ids)


def test_analyzer_find_and_remove_duplicates(tmp_path):
    from embstore import EmbeddingAnalyzer

    x = planted(60, 30, 16, 0.01, 7)
    st_, ids = _face_store(tmp_path, x)
    an = EmbeddingAnalyzer(st_)
    want, pairs, _ = brute_groups(x, 0.9)
    df = an.find_duplicates(0.9, k=20, variable="embedding", batch=25)
    assert set(zip(df["i"], df["j"])) == pairs
    assert (df["score"] >= 0.9).all()
    assert df["group"].is_monotonic_increasing
    assert (df["image_id_i"].to_numpy() == ids[df["i"].to_numpy()]).all()
    np.testing.assert_array_equal(df["group"].to_numpy(), want[df["i"].to_numpy()])

    out = an.remove_duplicates(0.9, k=20, variable="embedding")
    n_groups = len(np.unique(want))
    assert out.n_removed == len(x) - n_groups == len(out.removed_ids)
    assert len(out.analyzer) == n_groups
    # the first row (store order) of every group is kept
    first = {g: ids[np.flatnonzero(want == g)[0]] for g in np.unique(want)}
    assert set(out.kept_ids.tolist()) == set(first.values())
    # nothing left to remove
    again = out.analyzer.remove_duplicates(0.9, k=20, variable="embedding")
    assert again.n_removed == 0
    # exact-for-any-k mode agrees
    assert an.remove_duplicates(0.9, k=None, variable="embedding").n_removed == out.n_removed


def test_remove_duplicates_needs_one_vector_per_row(tmp_path):
    from embstore import EmbeddingAnalyzer, Store

    st_ = Store.create(
        tmp_path / "q.zarr",
        row_dim="image",
        id_name="image_id",
        variables={"query_embeddings": ("query", "hidden")},
    )
    st_.append([1, 2], {"query_embeddings": np.random.default_rng(0).normal(size=(2, 3, 4))})
    st_.flush()
    with pytest.raises(ValidationError, match="one vector per row"):
        EmbeddingAnalyzer(st_).remove_duplicates(pool=None)


def test_cli_dedup_writes_pairs_and_removed_ids(tmp_path, capsys):
    from embstore.cli import main

    x = planted(40, 10, 16, 0.0, 12)
    st_, _ids = _face_store(tmp_path, x)
    st_.close()
    rc = main(
        [
            "dedup",
            str(tmp_path / "faces.zarr"),
            "--variable",
            "embedding",
            "--out",
            str(tmp_path / "dd"),
            "--no-progress",
        ]
    )
    assert rc == 0
    want, pairs, _ = brute_groups(x, 0.9)
    n_removed = len(x) - len(np.unique(want))
    assert f"drops {n_removed}" in capsys.readouterr().out
    removed = np.loadtxt(tmp_path / "dd" / "removed_ids.txt", dtype=str, ndmin=1)
    assert len(removed) == n_removed
    import pandas as pd

    df = pd.read_csv(tmp_path / "dd" / "duplicate_pairs.csv")
    assert set(zip(df["i"], df["j"])) == pairs
