"""``over=("y", "x")``: search, dedup and cluster spatial feature maps of a real model store.

A torchvision ResNet-18 with random weights extracts ``layer3`` feature maps
``(channel, y, x)`` from scikit-image photos (one photo twice, so that there
is a duplicate), stored ragged (``embstore extract model`` layout) and
dense. Every result through ``VectorSpec(over="y,x")``, the analyzer and the
``--over y,x`` command line is compared with the same computation on a NumPy
mean over ``y, x`` of the raw maps.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tv = pytest.importorskip("torchvision")
skd = pytest.importorskip("skimage.data")
pytest.importorskip("faiss")

from PIL import Image  # noqa: E402

from embstore import EmbeddingAnalyzer, Store  # noqa: E402
from embstore.analysis.blocks import vector_blocks  # noqa: E402
from embstore.analysis.spec import VectorSpec  # noqa: E402
from embstore.cli import main  # noqa: E402
from embstore.errors import ValidationError  # noqa: E402
from embstore.search.graph import find_duplicate_groups, threshold_clusters  # noqa: E402
from embstore.search.knn import knn_search, knn_self  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "astronaut")  # the last is a duplicate
SIDE = 96


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    """Raw layer3 maps of each photo (ragged: photos keep their aspect ratio) and the extractor."""
    from extractors.models import ModelExtractor

    torch.manual_seed(0)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    weights = tmp_path_factory.mktemp("w") / "r18.pth"
    torch.save({"state_dict": tv.models.resnet18().state_dict()}, weights)
    photos = []
    for name in PHOTOS:
        im = Image.fromarray(getattr(skd, name)()).convert("RGB")
        photos.append(im.resize((SIDE, SIDE * im.height // im.width)))
    ex = ModelExtractor("torchvision:resnet18", ["layer3"], weights)
    try:
        out = ex.extract_images(photos)["layer3"]
    finally:
        torch.set_num_threads(before)
    # the transforms crop every photo to 224 px: crop the maps per photo to make them ragged
    cut = {name: c for c, name in enumerate(dict.fromkeys(PHOTOS))}
    raw = [np.asarray(a, dtype=np.float32) for a in out]
    return [a[:, : a.shape[1] - cut[n], : a.shape[2] - cut[n] % 2] for a, n in zip(raw, PHOTOS)], ex


@pytest.fixture(scope="module")
def ragged_store(maps, tmp_path_factory):
    raw, ex = maps
    path = tmp_path_factory.mktemp("s") / "ragged.zarr"
    with Store.create(path, variables=ex.variables, ragged=ex.ragged, dtypes=ex.dtypes) as st:
        st.append(
            [f"img{i}" for i in range(len(raw))],
            {"layer3": raw},
            coords={"photo": list(PHOTOS)},
        )
    return str(path)


@pytest.fixture(scope="module")
def dense_store(maps, tmp_path_factory):
    raw, _ = maps
    h = min(a.shape[1] for a in raw)
    w = min(a.shape[2] for a in raw)
    dense = np.stack([a[:, :h, :w] for a in raw])
    path = tmp_path_factory.mktemp("s") / "dense.zarr"
    with Store.create(
        path, variables={"fmap": ("channel", "y", "x")}, dtypes={"fmap": "float32"}
    ) as st:
        st.append([f"img{i}" for i in range(len(raw))], {"fmap": dense})
    return str(path), dense


def _numpy_means(raw):
    return np.stack([a.mean(axis=(1, 2), dtype=np.float64) for a in raw]).astype(np.float32)


def test_ragged_maps_are_stored_with_spatial_dims(ragged_store, maps):
    raw, _ = maps
    st = Store.open(ragged_store)
    assert st.ragged_variables["layer3"] == ("layer3_channel", "y", "x")
    assert len({a.shape for a in raw}) > 1  # truly ragged: different feature-map sizes
    np.testing.assert_array_equal(st.get_ragged("layer3", "img1"), raw[1])


@pytest.mark.parametrize("which", ["ragged", "dense"])
def test_over_yx_vectors_equal_a_numpy_mean(which, ragged_store, dense_store, maps):
    if which == "ragged":
        path, want = ragged_store, _numpy_means(maps[0])
        name = "layer3"
    else:
        path, dense = dense_store
        want, name = dense.mean(axis=(2, 3), dtype=np.float64).astype(np.float32), "fmap"
    spec = VectorSpec(name, pool="mean", over="y,x")
    blocks, labels = vector_blocks(path, spec, block_rows=2)
    got = np.concatenate([b for _, b in blocks])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert labels["image_id"].tolist() == [f"img{i}" for i in range(len(PHOTOS))]
    # the same vectors through every free function that names a vector source
    ref = knn_self(want, 3, device="cpu")
    res = knn_self(path, 3, spec=spec, device="cpu")
    np.testing.assert_array_equal(res.ids, ref.ids)
    np.testing.assert_allclose(res.scores, ref.scores, rtol=1e-5, atol=1e-6)
    s, i = knn_search(path, want[1:4], 2, spec=spec, device="cpu")
    assert i[:, 0].tolist() == [1, 2, 3]
    np.testing.assert_allclose(s[:, 0], 1.0, rtol=1e-5)
    dups = find_duplicate_groups(path, 0.9999, k=3, spec=spec, device="cpu")
    assert dups.pairs.as_set() == {(0, 4)}  # the repeated photo, and only it
    np.testing.assert_array_equal(
        threshold_clusters(path, 0.5, k=5, spec=spec, device="cpu").labels,
        threshold_clusters(want, 0.5, k=5, device="cpu").labels,
    )


def test_over_must_name_all_spatial_dims_of_a_ragged_map(ragged_store):
    with pytest.raises(ValidationError, match="pools over"):
        vector_blocks(ragged_store, VectorSpec("layer3", over="x"))


def test_dask_client_gives_the_local_groups(dense_store):
    path, _ = dense_store
    spec = VectorSpec("fmap", over=("y", "x"))
    local = threshold_clusters(path, 0.6, k=4, spec=spec, device="cpu")
    dask = threshold_clusters(path, 0.6, k=4, spec=spec, client="dask", block_rows=2)
    np.testing.assert_array_equal(dask.labels, local.labels)


def test_cli_over_search_dedup_cluster(ragged_store, dense_store, tmp_path, capsys, maps):
    want = _numpy_means(maps[0])
    out = tmp_path / "dedup"
    assert (
        main(
            ["dedup", ragged_store, "--variable", "layer3", "--over", "y,x"]
            + ["--threshold", "0.9999", "--device", "cpu", "--no-progress", "--out", str(out)]
        )
        == 0
    )
    assert (out / "removed_ids.txt").read_text().split() == ["img4"]
    capsys.readouterr()
    path, _ = dense_store
    assert (
        main(
            ["search", path, "--variable", "fmap", "--over", "y,x", "--ids", "img2", "-k", "2"]
            + ["--device", "cpu", "--no-progress"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "img2" in printed
    # cluster ids are written to the real store although the variable was pooled first
    copy = tmp_path / "r.zarr"
    import shutil

    shutil.copytree(ragged_store, copy)
    assert (
        main(
            ["cluster", str(copy), "--variable", "layer3", "--over", "y,x", "--threshold", "0.5"]
            + ["-k", "5", "--device", "cpu", "--no-progress", "--write-labels", "--coord", "cl"]
        )
        == 0
    )
    labels = Store.open(copy).coords["cl"].to_numpy()
    np.testing.assert_array_equal(labels, threshold_clusters(want, 0.5, k=5, device="cpu").labels)
    an = EmbeddingAnalyzer(str(copy))
    assert "layer3" in an.ragged_variables  # the store itself is unchanged but for the coordinate
