"""Regenerate the screenshots of docs/discovery.rst (needs Debian's chromium).

Builds a small store of scikit-image photos and their variants, embedded with a
simple deterministic image descriptor (a 16x16 grey thumbnail plus an RGB
histogram, L2-normalised) so that variants of one photo are close, writes a
duplicates gallery, an outlier gallery and the explorer, and screenshots them
with headless Chromium into ``docs/_static/discovery/``.

Usage::

    python docs/make_discovery_figures.py
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance
from skimage import data

from embstore import EmbeddingAnalyzer, Store

OUT = Path(__file__).parent / "_static" / "discovery"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=15000",
]


def descriptor(im: Image.Image) -> np.ndarray:
    g = np.asarray(im.convert("L").resize((16, 16)), np.float32).ravel() / 255
    h = np.concatenate(
        [np.histogram(np.asarray(im)[..., c], 16, (0, 255))[0] for c in range(3)]
    ).astype(np.float32)
    v = np.concatenate([g - g.mean(), 4 * h / h.sum()])
    return v / np.linalg.norm(v)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="embstore-docfig-"))
    photos = tmp / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    originals = {
        "astronaut": data.astronaut(),
        "coffee": data.coffee(),
        "chelsea": data.chelsea(),
        "rocket": data.rocket(),
        "camera": np.stack([data.camera()] * 3, -1),
        "hubble": data.hubble_deep_field(),
        "cells": data.immunohistochemistry(),
    }
    files, light, vecs = [], [], []
    for name, arr in originals.items():
        im = Image.fromarray(arr)
        for suffix, v in {
            "": im,
            "_flip": im.transpose(Image.FLIP_LEFT_RIGHT),
            "_bright": ImageEnhance.Brightness(im).enhance(1.15),
            "_dark": ImageEnhance.Brightness(im).enhance(0.5),
        }.items():
            fn = f"{name}{suffix}.jpg"
            v.save(photos / fn)
            files.append(fn)
            light.append("dim" if suffix == "_dark" else "well_lit")
            vecs.append(descriptor(v))
    files.append("missing.jpg")
    light.append("well_lit")
    vecs.append(descriptor(Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))))
    n = len(files)
    store = tmp / "photos.zarr"
    with Store.create(
        store,
        row_dim="image",
        id_name="image_id",
        variables={"embedding": ("hidden",)},
        dtypes={"embedding": "float32"},
    ) as st:
        st.append(
            ids=np.arange(n),
            data={"embedding": np.array(vecs, np.float32)},
            coords={"filename": files, "skin": rng.integers(1, 11, n), "lighting": light},
        )
    an = EmbeddingAnalyzer(store)
    dup = an.gallery("duplicates", tmp / "dups", image_root=photos, threshold=0.97, thumb=120)
    out = an.gallery(
        "outliers", tmp / "outl", image_root=photos, k=3, per_group=6, n_groups=1, thumb=120
    )
    ex = an.explore(tmp / "explore.html", color="lighting", image_root=photos)["path"]
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    OUT.mkdir(parents=True, exist_ok=True)
    for page, name, size in [
        (dup, "gallery_duplicates.png", "1100,800"),
        (out, "gallery_outliers.png", "1100,420"),
        (ex, "explorer.png", "1240,780"),
    ]:
        url = Path(page).resolve().as_uri() + ("#hover=27" if name == "explorer.png" else "")
        subprocess.run(
            [
                chromium,
                *FLAGS,
                f"--user-data-dir={tmp / 'prof'}",
                f"--window-size={size}",
                f"--screenshot={OUT / name}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        print("wrote", OUT / name)


if __name__ == "__main__":
    main()
