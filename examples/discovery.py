"""Discovery and curation on a small store of real photos: outliers, leaks, galleries,
text queries, the interactive explorer and exports.

The store holds embeddings of scikit-image photos and their flipped, cropped and
darkened variants, computed with a tiny open_clip model with random weights (no
download; replace it with ``SiglipExtractor("ViT-B-16-SigLIP", pretrained=...)``
for real use). Rows carry skin / lighting / split / filename coordinates.

Output goes to ``$EMBSTORE_EXAMPLE_OUT`` (default: a temporary folder).
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance
from skimage import data

from embstore import EmbeddingAnalyzer, Store
from extractors.siglip import SiglipExtractor
from extractors.siglip.testing import register_tiny_config, save_random_weights

out = Path(os.environ.get("EMBSTORE_EXAMPLE_OUT") or tempfile.mkdtemp(prefix="embstore-discovery-"))
photos = out / "photos"
photos.mkdir(parents=True, exist_ok=True)

# 1. Photos: 6 originals, each also flipped, cropped and darkened -> 24 images.
rng = np.random.default_rng(0)
originals = {
    "astronaut": data.astronaut(),
    "coffee": data.coffee(),
    "chelsea": data.chelsea(),
    "rocket": data.rocket(),
    "camera": np.stack([data.camera()] * 3, -1),
    "immunohistochemistry": data.immunohistochemistry(),
}
files, lighting = [], []
for name, arr in originals.items():
    im = Image.fromarray(arr)
    variants = {
        "": im,
        "_flip": im.transpose(Image.FLIP_LEFT_RIGHT),
        "_crop": im.crop((0, 0, im.width * 3 // 4, im.height * 3 // 4)),
        "_dark": ImageEnhance.Brightness(im).enhance(0.35),
    }
    for suffix, v in variants.items():
        fn = f"{name}{suffix}.jpg"
        v.save(photos / fn, quality=92)
        files.append(fn)
        lighting.append("dim" if suffix == "_dark" else "well_lit")
files.append("lost_photo.jpg")  # listed but missing on disk: galleries show a placeholder
lighting.append("well_lit")

# 2. Embed with a tiny open_clip model (random weights, no download) and record provenance.
model = register_tiny_config("embstore-tiny-textclip")
weights = save_random_weights(out / "tiny_weights.pt", model, seed=0)
ex = SiglipExtractor(model, pretrained=weights)
images = [Image.open(photos / f).convert("RGB") for f in files[:-1]]
images.append(
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
)  # noise: an outlier
emb = ex.extract_images(images)["embedding"]
n = len(files)
split = np.where(np.arange(n) % 4 == 1, "test", "train")  # flipped copies are in the test split
store_path = out / "photos.zarr"
with Store.create(
    store_path,
    row_dim="image",
    id_name="image_id",
    variables=dict(ex.variables),
    dtypes=dict(ex.dtypes),
    attrs=ex.provenance(),
    overwrite=True,
) as st:
    st.append(
        ids=np.arange(n),
        data={"embedding": emb},
        coords={
            "filename": files,
            "skin": rng.integers(1, 11, n),
            "lighting": lighting,
            "split": split,
        },
    )

with Store.open(store_path, mode="a") as st:
    an = EmbeddingAnalyzer(st)

    # 3. Outliers: mean cosine distance to the 3 nearest neighbours, written back as a coordinate.
    top = an.outliers(k=3, coord="outlier_score")
    print(
        "most unusual rows:\n",
        top[["image_id", "filename", "lighting", "score"]].head(3).to_string(index=False),
    )
    per_light = an.outliers(k=2, by="lighting")
    print(
        "most unusual per lighting group:\n",
        per_light[per_light["rank"] == 0][["lighting", "filename", "score"]].to_string(index=False),
    )

    # 4. Cross-split leaks: test rows that are near copies of training rows.
    leaks = an.sel(split="test").leaks(an.sel(split="train"), threshold=0.9)
    print(f"\n{len(leaks)} test/train pairs with cosine >= 0.9, e.g.:")
    print(leaks[["filename_query", "filename_against", "score"]].head(3).to_string(index=False))

    # 5. Captioned galleries.
    for kind in ("duplicates", "outliers", "leaks"):
        page = an.gallery(
            kind,
            out / f"gallery_{kind}",
            image_root=photos,
            threshold=0.9,
            against=an.sel(split="train"),
            per_group=6,
        )
        print(f"gallery ({kind}): {page}")

    # 6. Text and image queries with the extractor rebuilt from the store's provenance.
    hits = an.search_text(["a person in dim light", "a cup of coffee"], k=2)
    print("\ntext queries (random weights: the ranking is arbitrary here):")
    print(hits[["text", "rank", "filename", "score"]].to_string(index=False))
    img = an.search_images([photos / "coffee.jpg"], k=3)
    print("image query coffee.jpg ->", img["filename"].tolist())

    # 7. Interactive explorer (Plotly, one standalone HTML file).
    info = an.explore(out / "explore.html", color="lighting", image_root=photos)
    print(f"\nexplorer: {info['path']} ({info['note']})")

    # 8. Exports: Parquet and a Hugging Face dataset whose faiss index finds the same neighbours.
    pq_path = st.to_parquet(out / "photos.parquet", variables="embedding")
    print(f"parquet: {pq_path}")
    if importlib.util.find_spec("datasets") is not None:
        import faiss

        ds = an.to_hf_dataset(variables="embedding", normalize=True, path=out / "hf" / "data.arrow")
        ds.add_faiss_index(column="embedding", metric_type=faiss.METRIC_INNER_PRODUCT)
        q = np.asarray(ds[0]["embedding"], np.float32)
        _, nearest = ds.get_nearest_examples("embedding", q, k=3)
        same = an.search(ids=[0], k=3, variable="embedding")["image_id"].tolist()
        print(
            f"HF dataset: {len(ds)} rows; faiss neighbours of row 0 {nearest['image_id']} == an.search {same}"
        )
