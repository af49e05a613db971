"""Extract DETR embeddings of photos with FACET-style annotations into a store.

Runs offline in well under a minute on a CPU: the photos are scikit-image's
bundled ones, the annotations file is written here in FACET's
``annotations.csv`` format, and the model is a tiny DETR (ResNet-18 backbone,
small transformer) with random weights saved as an official-format
checkpoint. With the real model, pass ``detr-r50-e632da11.pth`` (or its URL)
as ``--checkpoint`` and drop ``--min-size/--max-size``.

Output goes to ``$EMBSTORE_EXAMPLE_OUT`` (default: a temporary folder).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd
import skimage.data
import torch
from PIL import Image

from embstore import Store
from embstore.cli import main as embstore_cli
from extractors.detr import DetrExtractor

OUT = Path(os.environ.get("EMBSTORE_EXAMPLE_OUT") or tempfile.mkdtemp(prefix="embstore-detr-"))

# 1. Photos, named like FACET's (sa_<id>.jpg), in a FACET-like folder.
photos = {1: "astronaut", 2: "coffee", 3: "chelsea", 4: "rocket", 5: "camera", 6: "immunohistochemistry"}
image_dir = OUT / "facet" / "imgs_1"
image_dir.mkdir(parents=True, exist_ok=True)
for image_id, name in photos.items():
    Image.fromarray(getattr(skimage.data, name)()).save(image_dir / f"sa_{image_id}.jpg", quality=90)

# 2. A FACET-format annotations.csv: one row per person, annotator vote counts.
#    image -> list of (skin tone voted by the 3 annotators, lighting label)
people = {1: [(1, "well_lit")], 2: [(5, "well_lit")], 3: [(1, "dimly_lit"), (2, "dimly_lit")],
          4: [(3, "well_lit")], 5: [(8, "underexposed")], 6: [(1, "dimly_lit")]}
rows = []
for image_id, persons in people.items():
    for tone, light in persons:
        row = {"person_id": len(rows) + 1, "filename": f"sa_{image_id}.jpg", "class1": "person",
               "class2": "", "bounding_box": str({"x": 10, "y": 10, "width": 50, "height": 80})}
        row.update({f"skin_tone_{t}": (3 if t == tone else 0) for t in range(1, 11)})
        row["skin_tone_na"] = 0
        for label in ("well_lit", "dimly_lit", "underexposed", "overexposed", "na"):
            row[f"lighting_{label}"] = 3 if label == light else 0
        rows.append(row)
csv = OUT / "facet" / "annotations.csv"
pd.DataFrame(rows).to_csv(csv, index=False)

# 3. A tiny DETR with random weights, saved like an official checkpoint.
config = {"backbone": "resnet18", "hidden_dim": 64, "nheads": 4, "enc_layers": 2, "dec_layers": 3,
          "dim_feedforward": 128, "num_queries": 20, "num_classes": 91}
torch.manual_seed(0)
checkpoint = OUT / "detr_tiny.pth"
torch.save({"model": DetrExtractor.from_config(config).model.state_dict(),
            "args": {"nheads": config["nheads"]}}, checkpoint)

# 4. Extract (the same command line you would type in a shell).
store_path = OUT / "facet.zarr"
argv = ["extract", "detr", "--checkpoint", str(checkpoint), "--images", str(image_dir),
        "--annotations", str(csv), "--out", str(store_path), "--extract-type", "all",
        "--min-size", "128", "--max-size", "200", "--batch-size", "2", "--num-workers", "0",
        "--device", "cpu", "--overwrite"]
assert embstore_cli(argv) == 0

# 5. Re-running resumes: nothing is left to extract.
assert embstore_cli(argv[:-1]) == 0

# 6. Use the store.
st = Store.open(store_path)
print(st)
print(st.coords[["file_name", "width", "height", "skin", "lighting", "n_people"]])
skin1 = st.query_embeddings.sel(skin=1)
print("images with majority skin tone 1:", skin1["image_id"].values.tolist(), "shape", skin1.shape)
well = st.pred_boxes.sel(lighting="well_lit")
print("well-lit images:", well["image_id"].values.tolist())
print("mean distance of each image's mean query embedding to the overall mean, per skin tone:")
pooled = st.query_embeddings.astype("float32").mean("query")  # (image, hidden), lazy
dist = ((pooled - pooled.mean("image")) ** 2).sum("hidden") ** 0.5
print(dist.groupby("skin").mean().to_series().round(4))
hw = st.ragged_hw("encoder_output")
print("encoder grid of image 2:", tuple(hw.loc[2, ["h", "w"]]),
      "-> encoder_output", st.get_ragged("encoder_output", 2).shape)
print(st.read_table("persons")[["person_id", "image_id", "x", "y", "w", "h", "skin", "lighting"]])
print("checkpoint sha256:", st.attrs["checkpoint_sha256"][:16], "...")
