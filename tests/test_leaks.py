"""Cross-split leaks equal brute force (functional, analyzer and CLI)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

pytest.importorskip("faiss")

from embstore import EmbeddingAnalyzer
from embstore.cli import main
from embstore.discovery.leaks import cross_pairs
from embstore.errors import ValidationError
from embstore.testing.stores import vector_store


def brute(a, b, threshold):
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    s = an.astype(np.float64) @ bn.T.astype(np.float64)
    i, j = np.nonzero(s >= threshold)
    margin = np.abs(s - threshold).min() if s.size else 1.0
    return {(int(x), int(y)) for x, y in zip(i, j)}, margin


def near_copies(na, nb, d, noise, seed):
    rng = np.random.default_rng(seed)
    b = rng.normal(size=(nb, d))
    a = rng.normal(size=(na, d))
    src = rng.integers(0, nb, na // 2)
    a[: na // 2] = b[src] + noise * rng.normal(size=(na // 2, d))
    return a.astype(np.float32), b.astype(np.float32)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    na=st.integers(1, 40),
    nb=st.integers(1, 50),
    d=st.sampled_from([4, 16]),
    noise=st.sampled_from([0.0, 0.05, 0.3]),
    threshold=st.sampled_from([0.5, 0.9, 0.95]),
    row_batch=st.integers(1, 50),
    block_rows=st.integers(1, 60),
    seed=st.integers(0, 2**16),
)
def test_exhaustive_pairs_equal_brute_force(
    na, nb, d, noise, threshold, row_batch, block_rows, seed
):
    a, b = near_copies(na, nb, d, noise, seed)
    want, margin = brute(a, b, threshold)
    assume(margin > 1e-5)
    got = cross_pairs(a, b, threshold, row_batch=row_batch, block_rows=block_rows)
    assert got.as_set() == want
    assert np.all(got.score >= threshold)
    assert np.all(np.diff(got.i) >= 0)


def test_topk_is_a_subset_and_exact_with_large_k():
    a, b = near_copies(30, 40, 8, 0.1, 3)
    full = cross_pairs(a, b, 0.5)
    top1 = cross_pairs(a, b, 0.5, k=1)
    assert top1.as_set() <= full.as_set()
    assert np.bincount(top1.i, minlength=30).max() <= 1
    assert cross_pairs(a, b, 0.5, k=40, device="cpu").as_set() == full.as_set()


@pytest.fixture
def split_store(tmp_path):
    rng = np.random.default_rng(0)
    n_train, n_test, d = 80, 30, 24
    train = rng.normal(size=(n_train, d))
    test = rng.normal(size=(n_test, d))
    test[:6] = train[rng.choice(n_train, 6, replace=False)] + 0.01 * rng.normal(size=(6, d))
    x = np.vstack([train, test]).astype(np.float32)
    split = np.array(["train"] * n_train + ["test"] * n_test)
    perm = rng.permutation(len(x))
    x, split = x[perm], split[perm]
    p = tmp_path / "split.zarr"
    vector_store(
        p,
        x,
        ids=np.arange(len(x)) * 10,
        coords={"split": split, "skin": rng.integers(1, 5, len(x))},
    )
    return p, x, split


def test_analyzer_leaks_equal_brute_force(split_store):
    p, x, split = split_store
    an = EmbeddingAnalyzer(p)
    df = an.sel(split="test").leaks(an.sel(split="train"), threshold=0.9)
    te, tr = np.flatnonzero(split == "test"), np.flatnonzero(split == "train")
    want, _ = brute(x[te], x[tr], 0.9)
    assert len(want) >= 6
    assert set(zip(df["i"], df["j"])) == want
    assert df["score"].is_monotonic_decreasing
    assert (df["split_query"] == "test").all() and (df["split_against"] == "train").all()
    np.testing.assert_array_equal(df["image_id_query"], te[df["i"]] * 10)
    np.testing.assert_array_equal(df["image_id_against"], tr[df["j"]] * 10)
    assert {"skin_query", "skin_against"} <= set(df.columns)


def test_leaks_against_another_store_and_self_pairs_dropped(split_store, tmp_path):
    p, x, _split = split_store
    q = tmp_path / "other.h5"
    vector_store(q, x, ids=np.arange(len(x)) * 10)
    an = EmbeddingAnalyzer(p)
    other = an.leaks(q, threshold=0.999)  # a different store: identical rows pair up
    assert (other["image_id_query"] == other["image_id_against"]).sum() == len(x)
    same = an.leaks(an, threshold=0.999)  # the same store: a row never pairs with itself
    assert (same["image_id_query"] != same["image_id_against"]).all()
    with pytest.raises(ValidationError, match="needs k="):
        an.leaks(an, kind="ivf")


def test_leaks_cli(split_store, tmp_path, capsys):
    p, _x, _split = split_store
    out = tmp_path / "leaks.csv"
    rc = main(
        [
            "leaks",
            str(p),
            "--query",
            "split=test",
            "--against",
            "split=train",
            "--threshold",
            "0.9",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    df = pd.read_csv(out)
    an = EmbeddingAnalyzer(p)
    want = an.sel(split="test").leaks(an.sel(split="train"), threshold=0.9)
    assert sorted(zip(df["image_id_query"], df["image_id_against"])) == sorted(
        zip(want["image_id_query"], want["image_id_against"])
    )
    assert "leaking pairs" in capsys.readouterr().out
