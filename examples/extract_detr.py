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

from embstore import Store
from embstore.cli import main as embstore_cli
from extractors.samples import (
    save_tiny_detr_checkpoint,
    write_facet_annotations,
    write_sample_photos,
)

OUT = Path(os.environ.get("EMBSTORE_EXAMPLE_OUT") or tempfile.mkdtemp(prefix="embstore-detr-"))

# 1-3. Photos named like FACET's (sa_<id>.jpg), a FACET-format annotations.csv (one row per
#      person, annotator vote counts for skin tone and lighting), and a tiny DETR with random
#      weights saved like an official checkpoint. See extractors/samples.py.
image_dir = OUT / "facet" / "imgs_1"
write_sample_photos(image_dir)
csv = OUT / "facet" / "annotations.csv"
write_facet_annotations(csv)
checkpoint = save_tiny_detr_checkpoint(OUT / "detr_tiny.pth")

# 4. Extract (the same command line you would type in a shell).
store_path = OUT / "facet.zarr"
argv = [
    "extract",
    "detr",
    "--checkpoint",
    str(checkpoint),
    "--images",
    str(image_dir),
    "--annotations",
    str(csv),
    "--out",
    str(store_path),
    "--extract-type",
    "all",
    "--min-size",
    "128",
    "--max-size",
    "200",
    "--batch-size",
    "2",
    "--num-workers",
    "0",
    "--device",
    "cpu",
    "--overwrite",
]
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
print(
    "encoder grid of image 2:",
    tuple(hw.loc[2, ["h", "w"]]),
    "-> encoder_output",
    st.get_ragged("encoder_output", 2).shape,
)
print(st.read_table("persons")[["person_id", "image_id", "x", "y", "w", "h", "skin", "lighting"]])
print("checkpoint sha256:", st.attrs["checkpoint_sha256"][:16], "...")
