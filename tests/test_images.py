"""Robust image loading: colour modes -> RGB, bad files -> skip reasons."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from embstore.errors import EmbstoreError, ValidationError
from extractors.images import IMAGE_EXTENSIONS, load_image, to_rgb


@pytest.fixture()
def rgb_array() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(12, 17, 3), dtype=np.uint8)


def _save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


def test_rgb_png_roundtrip_is_exact(tmp_path: Path, rgb_array: np.ndarray) -> None:
    p = _save(Image.fromarray(rgb_array), tmp_path / "a.png")
    img, reason = load_image(p)
    assert reason is None
    assert img.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(img), rgb_array)


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    gray = np.arange(60, dtype=np.uint8).reshape(6, 10) * 4
    p = _save(Image.fromarray(gray, mode="L"), tmp_path / "g.png")
    img, reason = load_image(p)
    assert reason is None and img.mode == "RGB"
    arr = np.asarray(img)
    for c in range(3):
        np.testing.assert_array_equal(arr[:, :, c], gray)


def test_gray_alpha_and_rgba_drop_alpha(tmp_path: Path, rgb_array: np.ndarray) -> None:
    alpha = np.full(rgb_array.shape[:2], 7, np.uint8)
    rgba = np.dstack([rgb_array, alpha])
    p = _save(Image.fromarray(rgba, mode="RGBA"), tmp_path / "a.png")
    img, _ = load_image(p)
    assert img.mode == "RGB"
    # alpha is dropped, not blended: colours are unchanged (as PIL's convert("RGB"))
    np.testing.assert_array_equal(np.asarray(img), rgb_array)
    la = Image.fromarray(np.dstack([rgb_array[:, :, 0], alpha]), mode="LA")
    img2, _ = load_image(_save(la, tmp_path / "la.png"))
    np.testing.assert_array_equal(np.asarray(img2)[:, :, 1], rgb_array[:, :, 0])


def test_cmyk_jpeg_converted_like_pil(tmp_path: Path, rgb_array: np.ndarray) -> None:
    cmyk = Image.fromarray(rgb_array).convert("CMYK")
    p = _save(cmyk, tmp_path / "c.jpg", quality=95)
    with Image.open(p) as raw:
        assert raw.mode == "CMYK"
        expected = np.asarray(raw.convert("RGB"))
    img, reason = load_image(p)
    assert reason is None and img.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(img), expected)


def test_palette_with_and_without_transparency(tmp_path: Path) -> None:
    pal = Image.new("P", (4, 3))
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    pal.putdata([0, 1, 2, 0] * 3)
    img, _ = load_image(_save(pal, tmp_path / "p.png"))
    assert img.mode == "RGB"
    assert tuple(np.asarray(img)[0, 1]) == (0, 255, 0)
    pal.info["transparency"] = 0
    img2, _ = load_image(_save(pal, tmp_path / "pt.png", transparency=0))
    assert img2.mode == "RGB"
    assert tuple(np.asarray(img2)[0, 2]) == (0, 0, 255)


def test_16_bit_grayscale_is_rescaled(tmp_path: Path) -> None:
    arr = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000).astype(np.uint16)
    p = _save(Image.fromarray(arr), tmp_path / "g16.png")
    img, reason = load_image(p)
    assert reason is None and img.mode == "RGB"
    got = np.asarray(img)[:, :, 0].astype(int)
    np.testing.assert_allclose(got, np.rint(arr / 257.0), atol=1)


@pytest.mark.parametrize(
    ("content", "prefix"),
    [
        (b"", "empty file"),
        (b"this is not an image at all", "not an image"),
    ],
)
def test_bad_bytes_are_reasons_not_errors(tmp_path: Path, content: bytes, prefix: str) -> None:
    p = tmp_path / "bad.jpg"
    p.write_bytes(content)
    img, reason = load_image(p)
    assert img is None
    assert reason.startswith(prefix) and str(p) in reason


def test_truncated_jpeg_is_skipped(tmp_path: Path, rgb_array: np.ndarray) -> None:
    big = np.repeat(np.repeat(rgb_array, 8, axis=0), 8, axis=1)
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, format="JPEG", quality=90)
    p = tmp_path / "t.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    img, reason = load_image(p)
    assert img is None
    assert reason.startswith("truncated or corrupt")


def test_missing_and_directory(tmp_path: Path) -> None:
    img, reason = load_image(tmp_path / "nope.png")
    assert img is None and reason.startswith("missing file")
    img, reason = load_image(tmp_path)
    assert img is None and reason.startswith("unreadable")


def test_to_rgb_arrays_and_errors(rgb_array: np.ndarray) -> None:
    assert to_rgb(rgb_array).mode == "RGB"
    assert to_rgb(rgb_array[:, :, :1]).size == (17, 12)
    rgba = np.dstack([rgb_array, np.zeros(rgb_array.shape[:2], np.uint8)])
    np.testing.assert_array_equal(np.asarray(to_rgb(rgba)), rgb_array)
    with pytest.raises(ValidationError, match="dtype float"):
        to_rgb(rgb_array.astype(np.float32))
    with pytest.raises(ValidationError, match="shape"):
        to_rgb(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(EmbstoreError, match="PIL image"):
        to_rgb("x.jpg")


def test_image_extensions_cover_the_documented_set() -> None:
    assert set(IMAGE_EXTENSIONS) == {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@settings(max_examples=25, deadline=None)
@given(
    arrays(np.uint8, st.tuples(st.integers(1, 9), st.integers(1, 9), st.just(3))),
    st.sampled_from(["png", "bmp", "webp"]),
)
def test_lossless_roundtrip_property(
    tmp_path_factory: pytest.TempPathFactory, arr: np.ndarray, fmt: str
) -> None:
    p = tmp_path_factory.mktemp("rt") / f"x.{fmt}"
    kw = {"lossless": True} if fmt == "webp" else {}
    Image.fromarray(arr).save(p, **kw)
    img, reason = load_image(p)
    assert reason is None
    np.testing.assert_array_equal(np.asarray(img), arr)
