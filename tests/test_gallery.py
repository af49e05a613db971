"""Captioned HTML galleries: captions, aspect ratio, placeholders, order, pages, every kind."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("faiss")
skdata = pytest.importorskip("skimage.data")

from embstore import EmbeddingAnalyzer  # noqa: E402
from embstore.cli import main  # noqa: E402
from embstore.discovery.gallery import Group, Item, write_gallery  # noqa: E402
from embstore.errors import ValidationError  # noqa: E402
from embstore.testing.stores import vector_store  # noqa: E402

PHOTOS = {
    "astronaut.jpg": skdata.astronaut,
    "coffee.jpg": skdata.coffee,
    "chelsea.jpg": skdata.chelsea,
    "rocket.jpg": skdata.rocket,
    "camera.png": skdata.camera,
}


@pytest.fixture
def photo_store(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    sizes = {}
    for name, fn in PHOTOS.items():
        im = Image.fromarray(fn())
        im.save(root / name)
        sizes[name] = im.size
    rng = np.random.default_rng(0)
    names = list(PHOTOS) * 4 + ["gone.jpg"]  # 21 rows; gone.jpg does not exist
    n, d = len(names), 32
    base = {nm: rng.normal(size=d) for nm in set(names)}
    x = np.array([base[nm] + 0.02 * rng.normal(size=d) for nm in names], np.float32)
    x[-1] = rng.normal(size=d)
    split = np.where(np.arange(n) % 2 == 0, "train", "test")
    p = tmp_path / "g.zarr"
    vector_store(
        p,
        x,
        ids=np.arange(n) + 1000,
        coords={
            "filename": names,
            "skin": rng.integers(1, 11, n),
            "lighting": rng.choice(["well_lit", "dim"], n),
            "split": split,
        },
    )
    return p, root, sizes, names


def _imgs(html):
    return re.findall(r'<img src="data:([^;]+);base64,([^"]+)"', html)


def test_duplicates_gallery_captions_aspect_and_placeholder(photo_store, tmp_path):
    p, root, sizes, names = photo_store
    an = EmbeddingAnalyzer(p)
    page = an.gallery("duplicates", tmp_path / "dups", image_root=root, threshold=0.9, per_group=10)
    html = page.read_text()
    sizes_shown = [int(s) for s in re.findall(r"\((\d+) images\)", html)]
    assert sizes_shown == [4] * 5  # five groups of four near-copies
    assert "<b>id</b> 1000" in html and "file</b> astronaut.jpg" in html
    assert (
        "skin</b>" in html
        and "lighting</b>" in html
        and "score</b>" in html
        and "group</b>" in html
    )
    imgs = _imgs(html)
    assert len(imgs) == 20 and all(kind == "image/jpeg" for kind, _ in imgs)
    for nm, (w, h) in sizes.items():
        i = names.index(nm)
        fig = re.search(
            rf"<figure[^>]*>(?:(?!</figure>).)*<b>id</b> {1000 + i}<", html, re.S
        ).group(0)
        data = re.search(r"base64,([^\"]+)", fig).group(1)
        tw, th = Image.open(io.BytesIO(base64.b64decode(data))).size
        assert max(tw, th) == 160
        assert abs(tw / th - w / h) < 0.02  # aspect ratio kept
    out = an.gallery("outliers", tmp_path / "out", image_root=root, per_group=5, k=3)
    html = out.read_text()
    svg = [b for kind, b in _imgs(html) if kind == "image/svg+xml"]
    assert len(svg) == 1 and b"missing image" in base64.b64decode(svg[0])
    assert b"gone.jpg" in base64.b64decode(svg[0])
    first = re.search(r"<b>id</b> (\d+)", html).group(1)
    assert first == str(1000 + names.index("gone.jpg"))  # the random row is the top outlier


def test_pagination_and_order(tmp_path):
    groups = [
        Group(f"g{i}", [Item(i * 10 + j, None, 0.5) for j in range(n)], score=1.0 - i / 10)
        for i, n in enumerate([5, 4, 3, 3, 2])
    ]
    page = write_gallery(groups, tmp_path / "pg", per_page=7, thumb=40)
    files = sorted(f.name for f in (tmp_path / "pg").iterdir())
    assert files == ["index.html", "page-2.html", "page-3.html"]  # [5], [4, 3], [3, 2]
    html = page.read_text()
    assert 'href="page-2.html"' in html and "page 1 of 3" in html
    assert (tmp_path / "pg" / "page-3.html").read_text().count("<figure") == 5
    with pytest.raises(ValidationError, match="per_page"):
        write_gallery(groups, tmp_path / "x", per_page=0)


def test_other_kinds_and_cli(photo_store, tmp_path):
    p, root, _, _names = photo_store
    an = EmbeddingAnalyzer(p)
    html = an.gallery("clusters", tmp_path / "cl", image_root=root, threshold=0.9).read_text()
    assert html.count("(4 images)") == 5
    html = an.gallery(
        "neighbors", tmp_path / "nb", image_root=root, ids=[1000, 1001], per_group=4
    ).read_text()
    assert html.count("<figure") == 8 and 'class="query"' in html
    html = (
        an.sel(split="test")
        .gallery(
            "leaks", tmp_path / "lk", image_root=root, against=an.sel(split="train"), threshold=0.9
        )
        .read_text()
    )
    assert "side</b> query" in html and "side</b> against" in html
    with pytest.raises(ValidationError, match="against"):
        an.gallery("leaks", tmp_path / "bad")
    with pytest.raises(ValidationError, match="gallery kind"):
        an.gallery("faces", tmp_path / "bad")
    rc = main(
        [
            "gallery",
            str(p),
            "--kind",
            "duplicates",
            "--image-root",
            str(root),
            "--out",
            str(tmp_path / "cli"),
            "--threshold",
            "0.9",
        ]
    )
    assert rc == 0 and (tmp_path / "cli" / "index.html").exists()
    rc = main(
        [
            "gallery",
            str(p),
            "--kind",
            "leaks",
            "--query",
            "split=test",
            "--against",
            "split=train",
            "--image-root",
            str(root),
            "--out",
            str(tmp_path / "cli2"),
            "--threshold",
            "0.9",
        ]
    )
    assert rc == 0 and "side</b> against" in (tmp_path / "cli2" / "index.html").read_text()


def test_cluster_previews_include_the_captioned_gallery(tmp_path):
    from embstore.search import save_group_previews

    p = tmp_path / "a.jpg"
    Image.fromarray(skdata.astronaut()).save(p)
    save_group_previews(
        np.array([0, 0, 1]), [p, tmp_path / "nope.jpg", p], tmp_path / "prev", per_group=5
    )
    html = (tmp_path / "prev" / "index.html").read_text()
    assert "group 0 (size 2)" in html and "file</b> a.jpg" in html and "nope.jpg" in html
