"""
embstore end to end (``make demo``)
===================================

Builds a FACET-like image set from the photos bundled with scikit-image
(random crops, flips and brightness changes; one or two synthetic people per
image with a skin tone and a lighting label), extracts DETR embeddings and
predictions with a tiny random-weight DETR into one store (nothing is
downloaded), inspects and searches the store, and writes the fairness report
with bootstrap intervals. About a minute on a laptop CPU.

Output goes to ``$EMBSTORE_EXAMPLE_OUT`` (default: ``./embstore-demo``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from embstore import EmbeddingAnalyzer, Store
from embstore.fairness.report import write_fairness_report
from embstore.summary import format_selection, format_summary
from extractors.detr.run import extract_detr
from extractors.samples import save_tiny_detr_checkpoint, write_augmented_facet

N_IMAGES = int(os.environ.get("EMBSTORE_DEMO_IMAGES", "160"))
t0 = time.perf_counter()
out = Path(os.environ.get("EMBSTORE_EXAMPLE_OUT") or "embstore-demo")
images = out / "facet" / "images"
annotations = out / "facet" / "annotations.csv"

# %%
# 1. Images and FACET-style annotations
# -------------------------------------
# Lighting labels follow the brightness change applied to each image, so the
# embeddings really differ by lighting; skin tones are drawn at random.
people = write_augmented_facet(images, annotations, n_images=N_IMAGES, size=128, seed=0)
print(f"{N_IMAGES} images with {len(people)} annotated people in {images}")

# %%
# 2. Extract into one store
# -------------------------
# A tiny random-weight DETR stands in for a real checkpoint (on the command
# line: ``embstore extract detr --checkpoint detr-r50-e632da11.pth ...``).
checkpoint = save_tiny_detr_checkpoint(out / "detr_tiny.pth")
store_path = out / "demo.zarr"
summary = extract_detr(
    checkpoint,
    images,
    store_path,
    annotations=annotations,
    variables=["query_embeddings", "pred_logits", "pred_boxes"],
    min_size=128,
    max_size=128,
    batch_size=16,
    num_workers=0,
    device="cpu",
    overwrite=True,
    progress=False,
)
print(f"extraction: {summary}\n")

# %%
# 3. Inspect, select, search
# --------------------------
with Store.open(store_path) as st:
    print(format_summary(st), "\n")
    print(format_selection(st, {"skin": 1, "lighting": "dimly_lit"}).splitlines()[0], "\n")
    analyzer = EmbeddingAnalyzer(st)
    try:
        neighbours = analyzer.search(ids=[1], k=3)
    except ImportError as exc:  # faiss is an optional extra
        print(f"search skipped: {exc}\n")
    else:
        print(f"nearest images to image 1 ({neighbours.attrs.get('index', 'exact scan')}):")
        print(
            neighbours[
                [
                    c
                    for c in ("rank", "image_id", "skin", "lighting", "score")
                    if c in neighbours.columns
                ]
            ].to_string(index=False),
            "\n",
        )

# %%
# 4. Fairness report with bootstrap intervals
# -------------------------------------------
report = write_fairness_report(
    EmbeddingAnalyzer(str(store_path)),
    ["skin", "lighting"],
    out / "fairness",
    n_boot=100,
    n_perm=49,
    min_count=15,
    seed=0,
    image_root=str(images),
)
table = report.group_stats.table
for _, row in table[table["grouping"] == "lighting"].iterrows():
    print(
        f"lighting={row['lighting']:<12} n={int(row['count']):>3}  dist_to_others "
        f"{row['dist_to_others']:.3f} [{row['dist_to_others_lo']:.3f}, {row['dist_to_others_hi']:.3f}]"
    )
if report.detection is not None:
    det = report.detection.table
    for _, row in det[det["grouping"] == "skin"].iterrows():
        print(
            f"skin={int(row['skin'])}  people={int(row['count']):>3}  recall {row['recall']:.3f} "
            f"[{row['recall_lo']:.3f}, {row['recall_hi']:.3f}] (random weights: near 0 is expected)"
        )

# %%
# What was built, and what to try next
# ------------------------------------
print(f"""
What was built ({time.perf_counter() - t0:.0f} s), where:
  images + annotations  {images}  ({N_IMAGES} images, {annotations.name})
  store                 {store_path}  (query embeddings, predictions, skin/lighting coordinates)
  fairness report       {report.html or report.markdown}  ({len(report.files)} files: tables, figures)

Next, try:
  embstore info {store_path}
  embstore search {store_path} --ids 1 -k 5 --variable query_embeddings
  embstore fairness {store_path} --by skin --by lighting --out {out / "fairness-svg"} --format svg
""")
