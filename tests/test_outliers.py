"""Outlier scores equal brute force; planted outliers rank first; per-group view."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("faiss")

from embstore import EmbeddingAnalyzer, Store
from embstore.discovery.outliers import WIDEN_FACTOR, outlier_scores
from embstore.errors import ReadOnlyStoreError, ValidationError
from embstore.testing.stores import vector_store


def brute_scores(x, k, metric="cosine"):
    if metric == "l2":
        d = np.sqrt(np.maximum(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1), 0))
        np.fill_diagonal(d, np.inf)
        d.sort(axis=1)
        kk = min(k, len(x) - 1)
        return d[:, :kk].mean(axis=1) if kk else np.full(len(x), np.nan)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = xn.astype(np.float64) @ xn.T.astype(np.float64)
    np.fill_diagonal(s, -np.inf)
    s = -np.sort(-s, axis=1)
    kk = min(k, len(x) - 1)
    return (1 - s[:, :kk]).mean(axis=1) if kk else np.full(len(x), np.nan)


def planted(n_in=300, n_out=6, d=32, seed=0):
    """Inliers in 5 tight clusters, plus n_out random directions (the outliers)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, d))
    x = centres[rng.integers(0, 5, n_in)] + 0.3 * rng.normal(size=(n_in, d))
    out = rng.normal(size=(n_out, d)) * 3
    allx = np.vstack([x, out]).astype(np.float32)
    perm = rng.permutation(len(allx))
    is_out = np.zeros(len(allx), bool)
    is_out[np.flatnonzero(perm >= n_in)] = True
    return allx[perm], is_out


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    n=st.integers(2, 60),
    d=st.sampled_from([3, 8]),
    k=st.integers(1, 8),
    row_batch=st.integers(1, 70),
    block_rows=st.integers(1, 70),
    dup=st.booleans(),
    metric=st.sampled_from(["cosine", "l2"]),
    seed=st.integers(0, 2**16),
)
def test_scores_equal_brute_force(n, d, k, row_batch, block_rows, dup, metric, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    if dup and n > 3:
        x[1] = x[0]  # exact duplicate: the row itself may not be at rank 0
        x[2] = x[0]
    got = outlier_scores(x, k, metric, row_batch=row_batch, block_rows=block_rows, device="cpu")
    want = brute_scores(x.astype(np.float64), k, metric)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5)


def test_single_row_has_nan_score():
    assert np.isnan(outlier_scores(np.ones((1, 4), np.float32), 3, device="cpu")).all()


def test_bad_k_is_rejected():
    with pytest.raises(ValidationError, match="k must be a positive integer"):
        outlier_scores(np.ones((3, 4), np.float32), 0)


@pytest.fixture
def store(tmp_path):
    x, is_out = planted()
    n = len(x)
    rng = np.random.default_rng(1)
    p = tmp_path / "o.zarr"
    vector_store(
        p,
        x,
        ids=np.arange(100, 100 + n),
        coords={"skin": rng.integers(1, 4, n), "outlier_truth": is_out.astype(np.int8)},
    )
    return p, x, is_out


def test_planted_outliers_rank_first(store):
    p, x, is_out = store
    an = EmbeddingAnalyzer(p)
    df = an.outliers(k=10)
    assert list(df.columns[:2]) == ["image_id", "skin"]
    assert df["score"].is_monotonic_decreasing
    assert df["rank"].tolist() == list(range(len(x)))
    top = df.head(is_out.sum())
    assert set(top["image_id"]) == set(np.arange(100, 100 + len(x))[is_out])
    np.testing.assert_allclose(df.sort_index()["score"], brute_scores(x, 10), rtol=1e-4, atol=1e-5)


def test_ivf_kind_finds_planted_outliers(store):
    p, _, is_out = store
    df = EmbeddingAnalyzer(p).outliers(k=5, kind="ivf", nprobe=2)
    assert df.head(is_out.sum())["outlier_truth"].sum() == is_out.sum()


def test_per_group_view_equals_brute_force_within_groups(store):
    p, x, _ = store
    an = EmbeddingAnalyzer(p)
    df = an.outliers(k=4, by="skin")
    skin = an.coords["skin"].to_numpy()
    want = np.empty(len(x))
    for g in np.unique(skin):
        m = skin == g
        want[m] = brute_scores(x[m], 4)
    np.testing.assert_allclose(df.sort_index()["score"], want, rtol=1e-4, atol=1e-5)
    for _, part in df.groupby("skin"):
        assert part["rank"].tolist() == list(range(len(part)))
        assert part["score"].is_monotonic_decreasing


def test_scores_written_back_as_coordinate(store):
    p, _x, _ = store
    with pytest.raises(ReadOnlyStoreError, match="mode='a'"):
        EmbeddingAnalyzer(p).outliers(k=3, coord="outlier_score")
    with Store.open(p, mode="a") as s:
        df = EmbeddingAnalyzer(s).outliers(k=3, coord="outlier_score")
    got = Store.open(p).coords["outlier_score"]
    pd.testing.assert_series_equal(
        got.sort_index(),
        df.set_index("image_id")["score"].sort_index(),
        check_names=False,
        check_dtype=False,
        check_index_type=False,
    )


def test_selection_and_errors(store):
    p, _x, _ = store
    an = EmbeddingAnalyzer(p)
    sub = an.sel(skin=2)
    df = sub.outliers(k=3)
    assert set(df["skin"]) == {2}
    with pytest.raises(ValidationError, match="method"):
        an.outliers(method="lof")
    with pytest.raises(ValidationError, match="not a coordinate"):
        an.outliers(by="nope")


def test_outliers_cli(store, tmp_path, capsys):
    from embstore.cli import main

    p, x, is_out = store
    out = tmp_path / "o.csv"
    assert main(["outliers", str(p), "-k", "10", "--top", "3", "--out", str(out)]) == 0
    df = pd.read_csv(out)
    assert set(df.head(is_out.sum())["image_id"]) == set(np.arange(100, 100 + len(x))[is_out])
    assert "wrote" in capsys.readouterr().out
    assert main(["outliers", str(p), "-k", "3", "--coord", "oscore", "--by", "skin"]) == 0
    assert "oscore" in Store.open(p).coords.columns


def test_auto_switches_to_ivf_at_scale(store, monkeypatch):
    import embstore.discovery.outliers as mod

    p, _, is_out = store
    monkeypatch.setattr(mod, "IVF_ROWS", 100)  # pretend 306 rows is "at scale"
    an = EmbeddingAnalyzer(p)
    df = an.outliers(k=5)
    kinds = [name.split(".")[-2] for name in an.index.catalog.names()]
    assert kinds == ["ivf"]  # an IVF index was built (and the exact scan skipped)
    assert df.head(is_out.sum())["outlier_truth"].sum() == is_out.sum()


def test_ivf_scores_only_overestimate_and_refine_restores_the_exact_top(store):
    p, x, is_out = store
    an = EmbeddingAnalyzer(p)
    exact = brute_scores(x, 5)
    raw = an.outliers(k=5, kind="ivf", nprobe=1, refine=0).sort_index()["score"].to_numpy()
    assert np.all(raw >= exact - 1e-5)  # an index can only miss neighbours
    assert np.abs(raw - exact).max() > 1e-3  # nprobe=1 does miss some here
    ref = an.outliers(k=5, kind="ivf", nprobe=1, refine=40)
    got = ref.sort_index()["score"].to_numpy()
    # the WIDEN_FACTOR * 40 highest approximate scores are searched again with more probes...
    widened = np.argsort(-raw, kind="stable")[: 40 * WIDEN_FACTOR]
    rest = np.setdiff1d(np.arange(len(x)), widened)
    np.testing.assert_array_equal(got[rest], raw[rest])  # ...the others are untouched
    assert np.all(got >= exact - 1e-5) and np.all(
        got <= raw + 1e-6
    )  # still upper bounds, never worse
    assert (
        np.abs(got - exact).sum() < np.abs(raw - exact).sum()
    )  # the wider search found missed neighbours
    # ...then the 40 highest of those are re-scored exactly
    assert np.isclose(got, exact, rtol=1e-4, atol=1e-5)[widened].sum() >= 40
    assert set(ref.head(is_out.sum()).index) == set(np.flatnonzero(is_out))
