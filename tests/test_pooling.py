"""Pooling kernels against plain NumPy / SciPy references."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import softmax

from embstore.analysis.pooling import (
    confidence_weights,
    parse_pool,
    pool_array,
    pool_dataarray,
    query_scores,
    topk_indices,
)
from embstore.errors import ShapeMismatchError, ValidationError

# ----------------------------------------------------------------- references


def ref_scores(logits: np.ndarray, score: str) -> np.ndarray:
    p = softmax(logits.astype(np.float64), axis=-1)
    if score == "foreground":
        # the sum of object-class probabilities, not 1 - p(no-object): the latter
        # cancels catastrophically (even in float64) when p(no-object) ~ 1
        return p[..., :-1].sum(axis=-1)
    return p[..., :-1].max(axis=-1)


def ref_confidence(x: np.ndarray, scores: np.ndarray) -> np.ndarray:
    out = []
    for row, s in zip(x.astype(np.float64), scores.astype(np.float64)):
        w = s / s.sum() if s.sum() > 0 else np.full(len(s), 1 / len(s))
        out.append((w[:, None] * row).sum(axis=0))
    return np.array(out)


def ref_topk(x: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    out = []
    for row, s in zip(x.astype(np.float64), scores):
        order = sorted(range(len(s)), key=lambda q: (-float(s[q]), q))[:k]
        out.append(row[order].mean(axis=0))
    return np.array(out)


@st.composite
def batches(draw):
    rows = draw(st.integers(1, 5))
    q = draw(st.integers(1, 7))
    d = draw(st.integers(1, 4))
    c = draw(st.integers(2, 5))
    dtype = draw(st.sampled_from([np.float16, np.float32]))
    x = draw(arrays(dtype, (rows, q, d), elements=st.floats(-100, 100, width=16)))
    logits = draw(arrays(np.float32, (rows, q, c), elements=st.floats(-30, 30, width=32)))
    return x, logits


# ---------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(batches(), st.sampled_from(["foreground", "max_class"]))
def test_scores_match_scipy_softmax(batch, score):
    _, logits = batch
    got = query_scores(logits, score)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref_scores(logits, score), rtol=1e-5, atol=1e-6)
    assert np.all((got >= 0) & (got <= 1))


@settings(max_examples=60, deadline=None)
@given(batches())
def test_mean_and_max_match_numpy(batch):
    x, _ = batch
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(pool_array(x, "mean"), x64.mean(axis=1), rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(pool_array(x, "max"), x.astype(np.float32).max(axis=1))


@settings(max_examples=60, deadline=None)
@given(batches(), st.sampled_from(["foreground", "max_class"]))
def test_confidence_matches_reference(batch, score):
    x, logits = batch
    got = pool_array(x, "confidence", logits=logits, score=score)
    want = ref_confidence(x, ref_scores(logits, score))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


@settings(max_examples=60, deadline=None)
@given(batches(), st.data())
def test_topk_matches_reference(batch, data):
    x, logits = batch
    k = data.draw(st.integers(1, x.shape[1]))
    # ranking uses the (separately tested) float32 scores, ties -> lower index
    scores = query_scores(logits)
    got = pool_array(x, "topk", logits=logits, k=k)
    np.testing.assert_allclose(got, ref_topk(x, scores, k), rtol=1e-5, atol=1e-4)


@settings(max_examples=30, deadline=None)
@given(batches(), st.sampled_from(["mean", "max", "confidence", "topk"]))
def test_lazy_dataarray_equals_numpy_kernel(batch, method):
    x, logits = batch
    rows, q, d = x.shape
    k = max(1, q // 2) if method == "topk" else None
    arr = xr.DataArray(
        da.from_array(x, chunks=(2, q, d)),
        dims=("image", "query", "hidden"),
        coords={"image_id": ("image", np.arange(rows) + 10)},
    )
    lg = xr.DataArray(da.from_array(logits, chunks=(3, q, -1)), dims=("image", "query", "class"))
    out = pool_dataarray(arr, "query", method, logits=lg, k=k)
    assert isinstance(out.data, da.Array)  # still lazy
    assert out.dims == ("image", "hidden")
    assert out["image_id"].values.tolist() == list(range(10, 10 + rows))
    want = pool_array(x, method, logits=logits, k=k)
    np.testing.assert_allclose(out.values, want, rtol=1e-5, atol=1e-4)


# -------------------------------------------------------------- edge cases


def test_weights_sum_to_one_and_zero_rows_fall_back_to_uniform():
    w = confidence_weights(np.array([[0.2, 0.6, 0.2], [0.0, 0.0, 0.0]]))
    np.testing.assert_allclose(w.sum(axis=1), [1.0, 1.0])
    np.testing.assert_allclose(w[1], [1 / 3] * 3)


def test_confidence_of_certain_background_equals_mean():
    x = np.random.default_rng(0).normal(size=(2, 4, 3)).astype(np.float32)
    logits = np.zeros((2, 4, 3), np.float32)
    logits[..., -1] = 300.0  # p(no-object) = 1 in float32: all scores 0
    assert np.all(query_scores(logits) == 0)
    np.testing.assert_allclose(
        pool_array(x, "confidence", logits=logits), x.mean(axis=1), rtol=1e-6
    )


def test_confidence_prefers_confident_queries():
    x = np.array([[[1.0, 0.0], [0.0, 1.0]]], np.float32)
    logits = np.array([[[8.0, -8.0], [-8.0, 8.0]]], np.float32)  # q0 object, q1 background
    out = pool_array(x, "confidence", logits=logits)
    assert out[0, 0] > 0.99 and out[0, 1] < 0.01


def test_float16_storage_is_computed_in_float32():
    x = np.full((1, 4, 2), 60000, dtype=np.float16)  # float16 sum overflows
    with np.errstate(over="ignore"):
        assert np.isinf(x.sum(axis=1, dtype=np.float16)).all()
    np.testing.assert_allclose(pool_array(x, "mean"), 60000.0, rtol=1e-3)


def test_topk_ties_take_lower_query_and_k_equal_q_is_mean():
    assert topk_indices(np.array([0.5, 0.5, 0.9, 0.5]), 2).tolist() == [2, 0]
    x = np.random.default_rng(1).normal(size=(3, 5, 2)).astype(np.float32)
    lg = np.random.default_rng(2).normal(size=(3, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(pool_array(x, "topk", logits=lg, k=5), x.mean(axis=1), rtol=1e-6)


def test_bad_arguments_raise_helpful_errors():
    x = np.zeros((1, 3, 2), np.float32)
    lg = np.zeros((1, 3, 4), np.float32)
    with pytest.raises(ValidationError, match="k=4 is out of range"):
        pool_array(x, "topk", logits=lg, k=4)
    with pytest.raises(ValidationError, match="needs k"):
        pool_array(x, "topk", logits=lg)
    with pytest.raises(ValidationError, match="unknown pooling method 'median'"):
        pool_array(x, "median")
    with pytest.raises(ValidationError, match="needs pred_logits"):
        pool_array(x, "confidence")
    with pytest.raises(ShapeMismatchError, match="does not match"):
        pool_array(x, "confidence", logits=np.zeros((1, 2, 4)))
    with pytest.raises(ValidationError, match="unknown score"):
        query_scores(lg, "argmax")
    with pytest.raises(ValidationError, match="at least 2 classes"):
        query_scores(np.zeros((3, 1)))
    arr = xr.DataArray(x, dims=("image", "query", "hidden"))
    with pytest.raises(ValidationError, match="cannot pool over"):
        pool_dataarray(arr, "token")
    with pytest.raises(ValidationError, match="pools over 'query' only"):
        pool_dataarray(
            arr,
            ("query", "hidden"),
            "confidence",
            logits=xr.DataArray(lg, dims=("image", "query", "class")),
        )


def test_parse_pool_specs():
    assert parse_pool("topk:7") == ("topk", 7)
    assert parse_pool("topk:7", k=3) == ("topk", 3)
    assert parse_pool(None) == (None, None)
    assert parse_pool("confidence") == ("confidence", None)
    with pytest.raises(ValidationError, match="bad pool spec"):
        parse_pool("mean:3")
    with pytest.raises(ValidationError, match="unknown pooling method"):
        parse_pool("avg")
