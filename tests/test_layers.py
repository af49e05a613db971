"""Linear CKA and layer-wise group metrics (embstore.analysis.similarity / layers)."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from embstore import EmbeddingAnalyzer
from embstore.analysis import cka
from embstore.analysis.layers import layer_profile, plot_cka_matrix, plot_layer_profile
from embstore.errors import ShapeMismatchError, ValidationError
from embstore.fairness import make_synthetic_facet
from embstore.store import Store


def cka_reference(X, Y):
    """Kornblith et al. 2019 eq. (4), linear kernel: HSIC(K,L)/sqrt(HSIC(K,K)HSIC(L,L))."""
    n = len(X)
    K = X @ X.T
    L = Y @ Y.T
    H = np.eye(n) - np.ones((n, n)) / n

    def hsic(A, B):
        return np.trace(A @ H @ B @ H) / (n - 1) ** 2

    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(5, 40),
    p=st.integers(1, 12),
    q=st.integers(1, 12),
    seed=st.integers(0, 2**31 - 1),
)
def test_cka_matches_reference(n, p, q, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) * rng.uniform(0.1, 10, p)
    Y = X[:, :1] @ rng.normal(size=(1, q)) + rng.normal(size=(n, q))
    assert cka(X, Y) == pytest.approx(cka_reference(X, Y), abs=1e-6)


def test_cka_gram_and_feature_forms_agree():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(6, 50)), rng.normal(size=(6, 40))  # n < features: Gram form
    assert cka(X, Y) == pytest.approx(cka_reference(X, Y), abs=1e-6)
    X, Y = rng.normal(size=(300, 5)), rng.normal(size=(300, 7))  # feature form
    assert cka(X, Y) == pytest.approx(cka_reference(X, Y), abs=1e-6)


def test_cka_invariances():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(80, 10))
    Y = np.tanh(X @ rng.normal(size=(10, 6))) + 0.3 * rng.normal(size=(80, 6))
    base = cka(X, Y)
    assert 0.05 < base < 0.99
    Q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    assert cka(X @ Q, Y) == pytest.approx(base, abs=1e-9)
    assert cka(7.5 * X, 0.01 * Y) == pytest.approx(base, abs=1e-9)
    assert cka(X, X) == pytest.approx(1.0, abs=1e-12)
    # a non-orthogonal invertible map changes it
    A = np.diag(np.linspace(0.1, 10, 10))
    assert abs(cka(X @ A, Y) - base) > 1e-3


def test_cka_aligns_by_id():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(30, 4))
    Y = X @ rng.normal(size=(4, 5)) + 0.5 * rng.normal(size=(30, 5))
    ids = np.arange(100, 130)
    a = xr.DataArray(X, dims=("vector", "hidden"), coords={"image_id": ("vector", ids)})
    perm = rng.permutation(30)[:25]
    b = pd.DataFrame(Y[perm], index=ids[perm])
    assert cka(a, b) == pytest.approx(cka_reference(X[np.sort(perm)], Y[np.sort(perm)]), abs=1e-9)
    with pytest.raises(ShapeMismatchError):
        cka(X, Y[:10])
    with pytest.raises(ShapeMismatchError, match="share no id"):
        cka(a, pd.DataFrame(Y, index=ids + 1000))
    with pytest.raises(ValidationError):
        cka(X[:, 0], Y)


def _layered_store(path, planted_layer=2, n_layers=4, n_images=160, shift=3.0):
    """decoder_output (layer, query, hidden): skin 2 shifted at one layer only."""
    base = make_synthetic_facet(n_images, shift_group=None, seed=0)
    planted = make_synthetic_facet(n_images, shift_group=2, shift=shift, seed=0)
    rng = np.random.default_rng(5)
    layers = []
    for layer in range(n_layers):
        src = planted if layer == planted_layer else base
        layers.append(src.query_embeddings + 0.1 * rng.normal(size=src.query_embeddings.shape))
    out = np.stack(layers, axis=1).astype(np.float32)
    st_ = Store.create(
        str(path),
        row_dim="image",
        id_name="image_id",
        variables={"decoder_output": ("layer", "query", "hidden")},
        overwrite=True,
    )
    st_.append(
        base.images["image_id"].to_numpy(),
        {"decoder_output": out},
        coords={"skin": base.images["skin"].to_numpy()},
    )
    st_.close()
    return base


def test_layer_profile_finds_planted_layer(tmp_path):
    _layered_store(tmp_path / "l.zarr")
    an = EmbeddingAnalyzer(str(tmp_path / "l.zarr"))
    t = an.layer_profile("decoder_output", by="skin", n_boot=100, n_perm=49, min_count=10)
    assert set(t["layer"]) == {0, 1, 2, 3}
    assert set(t["metric"]) == {"probe_accuracy", "centroid_distance", "energy_p"}
    acc = t[t.metric == "probe_accuracy"].set_index("layer")
    assert acc["value"].idxmax() == 2
    assert acc.loc[2, "lo"] > acc.drop(index=2)["hi"].max()
    assert (acc["lo"] <= acc["value"]).all() and (acc["value"] <= acc["hi"]).all()
    cd = t[(t.metric == "centroid_distance") & (t.skin == 2)].set_index("layer")
    assert cd["value"].idxmax() == 2
    assert cd.loc[2, "lo"] > cd.drop(index=2)["hi"].max()
    p = t[(t.metric == "energy_p") & (t.skin == 2)].set_index("layer")
    assert p.loc[2, "value"] <= 0.02
    assert p.drop(index=2)["value"].min() > 0.02
    # deterministic under a seed
    t2 = an.layer_profile("decoder_output", by="skin", n_boot=100, n_perm=49, min_count=10)
    pd.testing.assert_frame_equal(t, t2)


def test_layer_profile_plots_and_cka_matrix(tmp_path):
    _layered_store(tmp_path / "l.zarr")
    an = EmbeddingAnalyzer(str(tmp_path / "l.zarr"))
    t = layer_profile(
        an,
        by="skin",
        metrics=["probe_accuracy", "dispersion"],
        n_boot=20,
        min_count=10,
        layers=[0, -2],
    )
    assert set(t["layer"]) == {0, 2} and set(t["metric"]) == {"probe_accuracy", "dispersion"}
    out = plot_layer_profile(t, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000 and out.endswith("p.png")
    M = an.cka_matrix("decoder_output")
    assert M.dims == ("layer", "layer_other") and M.shape == (4, 4)
    np.testing.assert_allclose(np.diag(M.values), 1.0)
    np.testing.assert_allclose(M.values, M.values.T)
    X0 = an.matrix("decoder_output", pool="mean", layer=0)[0].astype(np.float64)
    X3 = an.matrix("decoder_output", pool="mean", layer=3)[0].astype(np.float64)
    assert M.values[0, 3] == pytest.approx(cka_reference(X0, X3), abs=1e-6)
    # layer 2 (planted shift) differs most from the others
    assert M.values[0, 2] < M.values[0, 1]
    plot_cka_matrix(M, tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_layer_profile_errors(tmp_path):
    _layered_store(tmp_path / "l.zarr", n_images=40)
    an = EmbeddingAnalyzer(str(tmp_path / "l.zarr"))
    with pytest.raises(ValidationError, match="unknown layer metric"):
        an.layer_profile(metrics=["nope"])
    with pytest.raises(ValidationError, match="out of range"):
        an.layer_profile(layers=[7])
    with pytest.raises(Exception, match="not in the store"):
        an.layer_profile("missing")


def test_cli_layers(tmp_path):
    from embstore.cli import main

    _layered_store(tmp_path / "l.zarr", n_images=120)
    rc = main(
        [
            "layers",
            str(tmp_path / "l.zarr"),
            "--by",
            "skin",
            "--out",
            str(tmp_path / "rep"),
            "--n-boot",
            "50",
            "--n-perm",
            "19",
            "--min-count",
            "10",
        ]
    )
    assert rc == 0
    t = pd.read_csv(tmp_path / "rep" / "layer_profile.csv")
    assert set(t["layer"]) == {0, 1, 2, 3}
    assert (tmp_path / "rep" / "layer_profile.png").stat().st_size > 1000
    assert (tmp_path / "rep" / "cka.png").stat().st_size > 1000
    md = (tmp_path / "rep" / "layers.md").read_text()
    assert "layer 2" in md and "probe_accuracy" in md
