"""Group statistics of embeddings: bootstrap, permutation test, disparity, planted effects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from embstore.errors import ShapeMismatchError, UnknownVariableError, ValidationError
from embstore.fairness.bootstrap import bootstrap_means, percentile_ci, resample_counts
from embstore.fairness.disparity import difference, disparity_summary, ratio
from embstore.fairness.permutation import energy_distance, energy_permutation_test
from embstore.fairness.stats import (
    centroid_distances,
    group_statistics,
    groupings_of,
    holm,
    knn_own_share,
)
from embstore.fairness.synthetic import make_synthetic_facet

FAST = dict(n_perm=49, probe_folds=3)


# ----------------------------------------------------------------- bootstrap
def test_resample_counts_rows_sum_to_n_and_are_reproducible():
    W1 = resample_counts(7, 50, np.random.default_rng(3))
    W2 = resample_counts(7, 50, np.random.default_rng(3))
    assert W1.shape == (50, 7)
    assert np.all(W1.sum(1) == 7)
    assert np.array_equal(W1, W2)
    # each row is used about once on average
    assert abs(W1.mean() - 1.0) < 1e-6


def test_percentile_ci_matches_numpy_quantiles():
    reps = np.random.default_rng(0).normal(size=(500, 3))
    lo, hi = percentile_ci(reps, alpha=0.1)
    np.testing.assert_allclose(lo, np.quantile(reps, 0.05, axis=0))
    np.testing.assert_allclose(hi, np.quantile(reps, 0.95, axis=0))


def test_bootstrap_means_ignores_nan_and_covers_the_mean():
    rng = np.random.default_rng(1)
    v = rng.normal(2.0, 1.0, size=(400, 2))
    v[::3, 1] = np.nan
    est, lo, hi = bootstrap_means(v, 500, rng)
    np.testing.assert_allclose(est, np.nanmean(v, axis=0))
    assert np.all(lo < est) and np.all(est < hi)
    # the interval width is close to the normal-theory one
    se = np.nanstd(v, axis=0, ddof=1) / np.sqrt((~np.isnan(v)).sum(0))
    np.testing.assert_allclose(hi - lo, 2 * 1.96 * se, rtol=0.2)


@settings(max_examples=30, deadline=None)
@given(st.floats(-1e3, 1e3, allow_nan=False), st.integers(1, 30))
def test_bootstrap_of_a_constant_is_degenerate(value, n):
    est, lo, hi = bootstrap_means(np.full((n, 1), value), 20, np.random.default_rng(0))
    assert (
        est[0] == pytest.approx(value)
        and lo[0] == pytest.approx(value)
        and hi[0] == pytest.approx(value)
    )


# ----------------------------------------------------------------- disparity
@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.001, 1.0), min_size=1, max_size=12))
def test_difference_and_ratio_properties(values):
    assert difference(values) == pytest.approx(max(values) - min(values))
    assert 0 < ratio(values) <= 1
    assert ratio(values) == pytest.approx(min(values) / max(values))
    # NaN (small groups) are ignored
    assert difference(values + [float("nan")]) == pytest.approx(difference(values))


def test_disparity_summary_names_the_extreme_groups():
    t = pd.DataFrame(
        {
            "skin": [1, 2, 3, None],
            "lighting": [None, None, None, "dim"],
            "grouping": ["skin"] * 3 + ["lighting"],
            "x": [0.2, 0.8, np.nan, 0.5],
        }
    )
    d = disparity_summary(t, ["x"], ["skin", "lighting"])
    row = d.loc[("skin", "x")]
    assert row["n_groups"] == 2 and row["argmin"] == "skin=1" and row["argmax"] == "skin=2"
    assert row["difference"] == pytest.approx(0.6) and row["ratio"] == pytest.approx(0.25)
    with pytest.raises(ValidationError, match="nope"):
        disparity_summary(t, ["nope"], ["skin"])


def test_holm_matches_the_step_down_definition():
    p = np.random.default_rng(2).uniform(0, 0.2, 9)
    adj = holm(p)
    order = np.argsort(p)
    m = len(p)
    ref = np.empty(m)
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[j]))
        ref[j] = running
    np.testing.assert_allclose(adj, ref)
    assert np.all(adj >= p)


# --------------------------------------------------------------- permutation
def test_energy_distance_matches_scipy_in_one_dimension():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=30), rng.normal(1.0, 2.0, size=45)
    # scipy returns sqrt(2 E|X-Y| - E|X-X'| - E|Y-Y'|) for 1-D samples
    assert energy_distance(x[:, None], y[:, None]) == pytest.approx(sps.energy_distance(x, y) ** 2)


def test_permutation_test_rejects_a_shift_and_pvalue_is_in_range():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 5))
    y = rng.normal(size=(50, 5))
    null = energy_permutation_test(x, y, n_perm=99, rng=1)
    alt = energy_permutation_test(x + 1.0, y, n_perm=99, rng=1)
    assert 0 < null.p_value <= 1 and null.p_value > 0.05
    assert alt.p_value == pytest.approx(1 / 100)
    assert alt.statistic > null.statistic
    # subsampling is reported
    sub = energy_permutation_test(x, y, n_perm=9, rng=1, max_per_sample=20)
    assert (sub.n1, sub.n2) == (20, 20)
    with pytest.raises(ValidationError):
        energy_permutation_test(x, y[:, :3])


def test_permutation_tests_do_not_reject_more_than_chance_on_null_data():
    """20 seeds x 3 groups on a null data set: rejections at 0.05 within a binomial bound."""
    pvals = []
    for seed in range(20):
        data = make_synthetic_facet(
            90, skins=(1, 2, 3), shift_group=None, miss_group=None, seed=seed
        )
        X = data.query_embeddings.mean(axis=1)
        res = group_statistics(X, data.images, ["skin"], n_boot=0, min_count=5, seed=seed, **FAST)
        pvals.extend(res.table["p_value"].tolist())
    pvals = np.array(pvals)
    assert len(pvals) == 60 and np.all(np.isfinite(pvals))
    rejections = int(np.sum(pvals <= 0.05))
    # P(Binomial(60, 0.05) > bound) < 0.001
    bound = int(sps.binom.ppf(0.999, len(pvals), 0.05))
    assert rejections <= bound
    # and the p-values are not piled up near 0 (a KS test against uniform, loose)
    assert sps.kstest(pvals, "uniform").pvalue > 0.001


# ------------------------------------------------------------ point figures
def test_dispersion_and_centroid_norm_match_brute_force():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(30, 4)) + [1.0, 0, 0, 0]
    labels = pd.DataFrame({"g": ["a"] * 12 + ["b"] * 18})
    t = group_statistics(X, labels, "g", n_boot=0, min_count=2, **FAST).table
    for name, rows in (("a", slice(0, 12)), ("b", slice(12, 30))):
        Xg = X[rows]
        U = Xg / np.linalg.norm(Xg, axis=1, keepdims=True)
        n = len(Xg)
        off = ~np.eye(n, dtype=bool)
        disp = np.mean((1 - U @ U.T)[off])
        norm2 = np.mean((Xg @ Xg.T)[off])
        row = t[t["g"] == name].iloc[0]
        assert row["dispersion"] == pytest.approx(disp)
        assert row["centroid_norm"] == pytest.approx(np.sqrt(max(norm2, 0)))


def test_centroid_distances_are_cosine_distances_of_means():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(20, 3))
    codes = np.repeat([0, 1, 2], [5, 7, 8])
    D = centroid_distances(X, codes, 3)
    C = np.stack([X[codes == g].mean(0) for g in range(3)])
    Cu = C / np.linalg.norm(C, axis=1, keepdims=True)
    np.testing.assert_allclose(D, 1 - Cu @ Cu.T, atol=1e-12)
    assert np.allclose(D, D.T)


def test_knn_neighbours_match_brute_force_and_exclude_self():
    rng = np.random.default_rng(8)
    U = rng.normal(size=(50, 6))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    rows, nbrs = knn_own_share(U, 5, rng)
    assert np.array_equal(rows, np.arange(50))
    sim = U @ U.T
    np.fill_diagonal(sim, -np.inf)
    ref = np.argsort(-sim, axis=1)[:, :5]
    for i in range(50):
        assert set(nbrs[i]) == set(ref[i])
        assert i not in nbrs[i]


# ---------------------------------------------------------- planted effects
@pytest.fixture(scope="module")
def planted():
    data = make_synthetic_facet(400, skins=(1, 2, 3, 4), shift_group=2, shift=1.0, seed=11)
    X = data.query_embeddings.mean(axis=1)
    res = group_statistics(
        X,
        data.images,
        ["skin", "lighting"],
        n_boot=200,
        min_count=10,
        seed=0,
        n_perm=199,
        probe_folds=3,
    )
    return data, res


def test_planted_shift_is_detected_with_the_expected_size(planted):
    data, res = planted
    t = res.table[res.table["grouping"] == "skin"].set_index("skin")
    expected_norm = np.hypot(data.truth["base_norm"], data.truth["shift"])
    assert t.loc[2, "centroid_norm"] == pytest.approx(expected_norm, abs=0.1)
    assert (
        t.loc[2, "centroid_norm_lo"] <= expected_norm + 0.02
        and expected_norm - 0.02 <= t.loc[2, "centroid_norm_hi"]
    )
    for g in (1, 3, 4):
        assert t.loc[g, "centroid_norm"] == pytest.approx(data.truth["base_norm"], abs=0.1)
        assert t.loc[g, "centroid_norm_hi"] < t.loc[2, "centroid_norm_lo"]
    D = res.distances["skin"]
    expected_d = data.expected_centroid_distance()
    for other in ("skin=1", "skin=3", "skin=4"):
        assert float(D.sel(group="skin=2", other=other)) == pytest.approx(expected_d, abs=0.05)
        assert float(D.sel(group="skin=1", other=other if other != "skin=1" else "skin=3")) < 0.08
    assert t.loc[2, "p_value"] <= 0.05 and t.loc[2, "p_holm"] <= 0.05
    assert t.loc[2, "homophily_ratio_lo"] > 1.2
    assert t.loc[2, "probe_recall"] == t["probe_recall"].max()
    assert res.probe.loc["skin", "accuracy"] > res.probe.loc["skin", "majority_baseline"]
    d = res.disparity.loc[("skin", "centroid_norm")]
    assert d["argmax"] == "skin=2"
    assert d["difference"] == pytest.approx(expected_norm - data.truth["base_norm"], abs=0.15)


def test_every_grouping_and_intersection_is_reported(planted):
    data, res = planted
    t = res.table
    assert list(t.columns[:4]) == ["skin", "lighting", "grouping", "count"]
    assert "p_value" in t.columns
    assert groupings_of(["skin", "lighting"]) == [("skin",), ("lighting",), ("skin", "lighting")]
    for g, n_groups in (("skin", 4), ("lighting", 2), ("skin*lighting", 8)):
        sub = t[t["grouping"] == g]
        assert len(sub) == n_groups
        assert sub["count"].sum() == len(data.images)
    inter = t[t["grouping"] == "skin*lighting"]
    ref = data.images.groupby(["skin", "lighting"]).size()
    for _, r in inter.iterrows():
        assert r["count"] == ref[(r["skin"], r["lighting"])]
    assert t.loc[t["grouping"] == "skin", "lighting"].isna().all()
    for fig in ("centroid_norm", "dispersion", "dist_to_others", "homophily", "probe_recall"):
        ok = t[fig].notna()
        assert (t.loc[ok, f"{fig}_lo"] <= t.loc[ok, fig] + 1e-9).all()
        assert (t.loc[ok, f"{fig}_hi"] >= t.loc[ok, fig] - 1e-9).all()


def test_small_groups_are_kept_with_nan_figures():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(63, 5))
    labels = pd.DataFrame({"skin": [1] * 30 + [2] * 30 + [9] * 3})
    t = group_statistics(X, labels, "skin", n_boot=20, min_count=10, **FAST).table.set_index("skin")
    assert t.loc[9, "count"] == 3
    for col in (
        "centroid_norm",
        "dispersion",
        "homophily",
        "probe_recall",
        "p_value",
        "centroid_norm_lo",
    ):
        assert np.isnan(t.loc[9, col])
    assert np.isfinite(t.loc[1, "dispersion"]) and np.isfinite(t.loc[2, "p_value"])


def test_rows_with_missing_or_unknown_labels_are_left_out_and_counted():
    rng = np.random.default_rng(10)
    X = rng.normal(size=(40, 3))
    labels = pd.DataFrame({"skin": [1.0] * 18 + [np.nan] * 4 + [2.0] * 18})
    res = group_statistics(X, labels, "skin", n_boot=0, min_count=5, **FAST)
    assert res.table["count"].tolist() == [18, 18]
    assert res.table["skin"].tolist() == [1, 2]
    assert res.n_excluded == 4
    # FACET's unknowns: skin 0 and lighting "na"
    labels = pd.DataFrame(
        {"skin": [0] * 5 + [1] * 17 + [2] * 18, "lighting": ["na"] * 3 + ["well_lit"] * 37}
    )
    res = group_statistics(X, labels, ["skin", "lighting"], n_boot=0, min_count=5, **FAST)
    assert res.n_excluded == 5
    assert set(res.table["skin"].dropna()) == {1, 2}
    assert set(res.table["lighting"].dropna()) == {"well_lit"}
    # an explicit empty mapping keeps them as groups
    kept = group_statistics(X, labels, "skin", n_boot=0, min_count=5, missing_values={}, **FAST)
    assert kept.table["skin"].tolist() == [0, 1, 2] and kept.n_excluded == 0
    with pytest.raises(ValidationError, match="no rows"):
        group_statistics(X[:5], labels[:5], "skin", n_boot=0)


def test_same_seed_same_result_and_bad_inputs_are_rejected():
    rng = np.random.default_rng(12)
    X = rng.normal(size=(60, 4))
    labels = pd.DataFrame({"g": np.repeat(["a", "b"], 30)})
    a = group_statistics(X, labels, "g", n_boot=30, min_count=5, seed=3, **FAST).table
    b = group_statistics(X, labels, "g", n_boot=30, min_count=5, seed=3, **FAST).table
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(UnknownVariableError, match="skin"):
        group_statistics(X, labels, "skin")
    with pytest.raises(KeyError):
        group_statistics(X, labels, ["skin"])
    with pytest.raises(ShapeMismatchError, match="59"):
        group_statistics(X[:59], labels, "g")
    with pytest.raises(ValidationError, match="min_count"):
        group_statistics(X, labels, "g", min_count=1)
    with pytest.raises(ValidationError, match="alpha"):
        group_statistics(X, labels, "g", alpha=1.5, n_boot=0)


def test_analyzer_group_stats_on_a_store_matches_the_pure_function(tmp_path):
    from embstore import EmbeddingAnalyzer
    from embstore.fairness.synthetic import write_synthetic_store

    data = make_synthetic_facet(120, skins=(1, 2, 3), seed=13)
    write_synthetic_store(data, tmp_path / "s.zarr")
    an = EmbeddingAnalyzer(str(tmp_path / "s.zarr"))
    t = an.group_stats("query_embeddings", by=["skin"], pool="mean", n_boot=30, min_count=5, **FAST)
    ref = group_statistics(
        data.query_embeddings.mean(axis=1), data.images, ["skin"], n_boot=30, min_count=5, **FAST
    ).table
    pd.testing.assert_frame_equal(t, ref, check_dtype=False, atol=1e-5)
    D = an.group_distances(by="skin")
    assert D.dims == ("group", "other") and list(D["group"].values) == [
        "skin=1",
        "skin=2",
        "skin=3",
    ]
    sub = an.sel(skin=[1, 2]).group_stats(by="skin", n_boot=0, min_count=5, **FAST)
    assert sub["skin"].tolist() == [1, 2]


def test_bootstrap_intervals_cover_known_values_at_about_the_nominal_rate():
    """30 simulated data sets: the 95% intervals of centroid_norm and dispersion cover the truth."""
    D = 6
    mu = np.zeros(D)
    mu[0] = 1.0
    big = np.random.default_rng(123).normal(size=(50000, D)) + mu
    m = (big / np.linalg.norm(big, axis=1, keepdims=True)).mean(0)
    true_disp = 1 - m @ m  # E[1 - u.u'] for independent rows
    hits = {"centroid_norm": 0, "dispersion": 0}
    reps = 30
    for r in range(reps):
        rng = np.random.default_rng(1000 + r)
        X = np.vstack([rng.normal(size=(40, D)) + mu, rng.normal(size=(40, D)) - mu])
        labels = pd.DataFrame({"g": ["a"] * 40 + ["b"] * 40})
        row = group_statistics(
            X, labels, "g", n_boot=200, min_count=5, n_perm=1, probe_folds=2, seed=r
        ).table.iloc[0]
        hits["centroid_norm"] += row["centroid_norm_lo"] <= 1.0 <= row["centroid_norm_hi"]
        hits["dispersion"] += row["dispersion_lo"] <= true_disp <= row["dispersion_hi"]
    # P(Binomial(30, 0.95) <= 24) < 0.01
    assert hits["centroid_norm"] >= 25 and hits["dispersion"] >= 25
