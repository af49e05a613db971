"""Interactive explorer: exact streamed PCA, standalone page, rendered in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("plotly")
skdata = pytest.importorskip("skimage.data")

from embstore import EmbeddingAnalyzer  # noqa: E402
from embstore.cli import main  # noqa: E402
from embstore.discovery.explorer import streamed_pca  # noqa: E402
from embstore.errors import ValidationError  # noqa: E402
from embstore.testing.stores import vector_store  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "img"
    root.mkdir()
    photos = [skdata.astronaut(), skdata.coffee(), skdata.chelsea()]
    for i, arr in enumerate(photos):
        Image.fromarray(arr).save(root / f"p{i}.jpg")
    rng = np.random.default_rng(0)
    n, d = 90, 12
    skin = rng.integers(1, 4, n)
    x = rng.normal(size=(n, d)) + 3 * skin[:, None] * np.eye(d)[0]
    p = tmp_path / "x.zarr"
    vector_store(
        p,
        x.astype(np.float32),
        ids=np.arange(n) + 500,
        coords={
            "skin": skin,
            "lighting": rng.choice(["well", "dim"], n),
            "filename": [f"p{i % 4}.jpg" for i in range(n)],  # p3.jpg is missing
        },
    )
    return p, root, x


def test_streamed_pca_equals_svd():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 6)) * np.arange(1, 7)
    keep = np.array([0, 5, 77, 199])
    blocks = [(s, x[s : s + 33].astype(np.float32)) for s in range(0, 200, 33)]
    got, ratio = streamed_pca(blocks, 6, keep)
    xc = x - x.mean(0)
    _u, sv, vt = np.linalg.svd(xc, full_matrices=False)
    want = xc[keep] @ vt[:2].T
    np.testing.assert_allclose(np.abs(got), np.abs(want), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ratio, (sv**2 / (sv**2).sum())[:2], rtol=1e-6)


def test_page_is_standalone_and_subsamples(store, tmp_path):
    p, root, _ = store
    an = EmbeddingAnalyzer(p)
    info = an.explore(tmp_path / "e.html", color="skin", image_root=root)
    page = (tmp_path / "e.html").read_text()
    assert info["n_shown"] == 90 and not info["subsampled"]
    assert not re.search(r"<script[^>]+src=", page)  # plotly.js inlined, no CDN
    assert "Plotly" in page and "data:image/jpeg;base64," in page
    assert "skin=1" in page and "PC1" in page
    info = an.explore(tmp_path / "s.html", color="lighting", max_points=40)
    assert info["subsampled"] and info["n_shown"] == 40 and "random subsample" in info["note"]
    with pytest.raises(ValidationError, match="not a coordinate"):
        an.explore(tmp_path / "bad.html", color="nope")


def _run(args, timeout=120):
    return subprocess.run(
        [CHROMIUM, *FLAGS, *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_renders_in_headless_chromium(store, tmp_path):
    p, root, _ = store
    out = tmp_path / "explore.html"
    assert (
        main(["explore", str(p), "--color", "skin", "--image-root", str(root), "--out", str(out)])
        == 0
    )
    url = out.resolve().as_uri()
    prof = tmp_path / "profile"
    common = [
        f"--user-data-dir={prof}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=15000",
    ]
    dom = _run([*common, "--dump-dom", url + "#select=0,1,2"])
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'data-embstore-ready="90"' in html  # our script ran after plotly drew the plot
    assert "main-svg" in html  # plotly rendered
    box = re.search(r'<textarea id="embstore-selected"[^>]*>([^<]*)</textarea>', html).group(1)
    assert box.split() == ["500", "501", "502"]  # the selection handler lists ids
    assert re.search(r'<pre id="embstore-errors">\s*</pre>', html)  # no script errors
    console = [
        ln
        for ln in dom.stderr.splitlines()
        if "CONSOLE" in ln and ("rror" in ln or "Uncaught" in ln)
    ]
    assert not console, console
    hover = _run([*common, "--dump-dom", url + "#hover=0"]).stdout
    assert re.search(r'id="embstore-tip"[^>]*style="[^"]*display: block', hover)
    assert "data:image/jpeg;base64," in re.search(r'id="embstore-tip".*?</div>', hover, re.S).group(
        0
    )
    shot = tmp_path / "shot.png"
    r = _run([*common, f"--screenshot={shot}", "--window-size=1300,900", url])
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    im = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert im.std() > 10  # not blank
    sat = im.max(-1) - im.min(-1)
    assert (sat > 80).sum() > 200  # coloured markers drawn
