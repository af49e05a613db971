"""Text and image queries: extract_texts equals open_clip; search_text / search_images equal brute force."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")
pytest.importorskip("faiss")
skdata = pytest.importorskip("skimage.data")

from embstore import EmbeddingAnalyzer, Store  # noqa: E402
from embstore.cli import main  # noqa: E402
from embstore.errors import CheckpointError, ValidationError  # noqa: E402

TEXTS = ["a person in dim light", "a cat on a sofa", "rocket launch", "coffee"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from extractors.siglip import SiglipExtractor
    from extractors.siglip.testing import register_tiny_config, save_random_weights

    # the tiny config under a name without "siglip": open_clip then uses its built-in
    # SimpleTokenizer (SigLIP names pick a Hugging Face tokenizer that would need a download)
    name = register_tiny_config("embstore-tiny-textclip")
    weights = save_random_weights(tmp_path_factory.mktemp("w") / "tiny.pt", name, seed=0)
    return name, weights, SiglipExtractor(name, pretrained=weights)


@pytest.fixture(scope="module")
def photo_store(tiny, tmp_path_factory):
    _name, _weights, ex = tiny
    d = tmp_path_factory.mktemp("q")
    photos = {
        "astronaut": skdata.astronaut(),
        "coffee": skdata.coffee(),
        "chelsea": skdata.chelsea(),
        "rocket": skdata.rocket(),
        "camera": np.stack([skdata.camera()] * 3, -1),
    }
    paths = []
    for nm, arr in photos.items():
        p = d / f"{nm}.png"
        Image.fromarray(arr).save(p)
        paths.append(p)
    # more rows: flipped and cropped variants of the photos
    images = [Image.open(p).convert("RGB") for p in paths]
    images += [im.transpose(Image.FLIP_LEFT_RIGHT) for im in images]
    images += [im.crop((0, 0, im.width // 2, im.height // 2)) for im in images[:5]]
    emb = ex.extract_images(images)["embedding"]
    sp = d / "s.zarr"
    with Store.create(
        sp,
        row_dim="image",
        id_name="image_id",
        variables=dict(ex.variables),
        dtypes=dict(ex.dtypes),
        attrs=ex.provenance(),
    ) as st:
        st.append(
            ids=np.arange(len(images)),
            data={"embedding": emb},
            coords={"skin": np.arange(len(images)) % 3 + 1},
        )
    return sp, paths, emb


def test_extract_texts_equals_open_clip(tiny):
    name, weights, ex = tiny
    got = ex.extract_texts(TEXTS)
    model = open_clip.create_model(name, pretrained=str(weights), device="cpu").eval()
    tok = open_clip.get_tokenizer(name)(TEXTS)
    with torch.no_grad():
        want = model.encode_text(tok, normalize=True).numpy()
    assert got.shape == (4, 32) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    assert not np.allclose(got[0], got[1])
    np.testing.assert_allclose(ex.extract_texts("coffee"), got[3:], atol=1e-6)
    with pytest.raises(ValidationError, match="no texts"):
        ex.extract_texts([])


def test_search_text_rebuilds_extractor_and_equals_brute_force(tiny, photo_store):
    _, _, ex = tiny
    sp, _, _ = photo_store
    an = EmbeddingAnalyzer(sp)
    df = an.search_text(TEXTS[:2], k=4)  # extractor=None: rebuilt from the store's provenance
    assert list(df.columns[:2]) == ["text", "rank"]
    assert {"image_id", "skin", "score"} <= set(df.columns)
    stored = Store.open(sp).read("embedding").astype(np.float32)
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    q = ex.extract_texts(TEXTS[:2])
    sims = q @ stored.T
    for t, text in enumerate(TEXTS[:2]):
        part = df[df["text"] == text].sort_values("rank")
        want = np.argsort(-sims[t], kind="stable")[:4]
        assert part["image_id"].tolist() == want.tolist()
        np.testing.assert_allclose(part["score"], sims[t][want], atol=1e-4)


def test_search_images_finds_the_photo_itself(photo_store):
    sp, paths, _ = photo_store
    df = EmbeddingAnalyzer(sp).search_images(paths[:3], k=2)
    top = df[df["rank"] == 0]
    assert top["image"].tolist() == [str(p) for p in paths[:3]]
    assert top["image_id"].tolist() == [0, 1, 2]  # each photo's own row
    assert (top["score"] > 0.99).all()
    with pytest.raises(ValidationError, match="cannot be read"):
        EmbeddingAnalyzer(sp).search_images([paths[0].parent / "nope.png"])


def test_missing_or_changed_weights_name_the_file(tiny, photo_store, tmp_path):
    _, weights, _ = tiny
    sp, _, _ = photo_store
    moved = tmp_path / "moved.zarr"
    shutil.copytree(sp, moved)
    with Store.open(moved, mode="a") as st:
        st.update_attrs(pretrained=str(tmp_path / "gone" / "tiny.pt"))
    with pytest.raises(CheckpointError, match=r"gone/tiny\.pt.*not found"):
        EmbeddingAnalyzer(moved).search_text("coffee")
    df = EmbeddingAnalyzer(moved).search_text(
        "coffee", k=1, weights=weights
    )  # moved weights: found again
    assert len(df) == 1
    other = tmp_path / "other.pt"
    other.write_bytes(b"not the same" + bytes(10))
    with pytest.raises(CheckpointError, match="different sha256"):
        EmbeddingAnalyzer(moved).search_text("coffee", weights=other)


def test_search_cli_text_and_image(photo_store, capsys):
    sp, paths, _ = photo_store
    assert main(["search", str(sp), "--text", "a person in dim light", "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "a person in dim light" in out and "score" in out
    assert main(["search", str(sp), "--image", str(paths[1]), "-k", "2"]) == 0
    assert str(paths[1]) in capsys.readouterr().out
