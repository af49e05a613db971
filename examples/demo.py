"""embstore end to end on an embedded default (``make demo``).

Builds a small store from photos bundled with scikit-image (FACET-style
annotations with skin tone and lighting, a tiny random-weight DETR; nothing is
downloaded), prints its summary and a selection, then pools and searches it.

Output goes to ``$EMBSTORE_EXAMPLE_OUT`` (default: ``./embstore-demo``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from embstore import EmbeddingAnalyzer, Store
from embstore.summary import format_selection, format_summary
from extractors.detr.run import extract_detr
from extractors.samples import save_tiny_detr_checkpoint, write_facet_annotations, write_sample_photos

out = Path(os.environ.get("EMBSTORE_EXAMPLE_OUT") or "embstore-demo")
images = out / "facet" / "images"
write_sample_photos(images)
write_facet_annotations(out / "facet" / "annotations.csv")
checkpoint = save_tiny_detr_checkpoint(out / "detr_tiny.pth")

store_path = out / "demo.zarr"
summary = extract_detr(
    checkpoint, images, store_path, annotations=out / "facet" / "annotations.csv",
    extract_type="all", min_size=160, max_size=240, batch_size=2, num_workers=0,
    device="cpu", overwrite=True, progress=False,
)
print(f"extraction: {summary}\n")

with Store.open(store_path) as st:
    print(format_summary(st), "\n")
    print(format_selection(st, {"skin": 1}), "\n")
    print("Store.open(...).query_embeddings.sel(skin=1, lighting='dimly_lit'):")
    print(st.query_embeddings.sel(skin=1, lighting="dimly_lit"), "\n")

    analyzer = EmbeddingAnalyzer(st)
    pooled = analyzer.pool("query_embeddings", method="confidence")
    print("confidence-pooled query embeddings (labeled):")
    table = pd.DataFrame(pooled.values[:, :4], columns=[f"hidden_{i}" for i in range(4)],
                         index=pd.MultiIndex.from_arrays(
                             [pooled["image_id"].values, pooled["skin"].values, pooled["lighting"].values],
                             names=["image_id", "skin", "lighting"]))
    print(table.round(3), "\n")
    try:
        neighbours = analyzer.search(ids=[1], k=3)
    except ImportError as exc:  # faiss is an optional extra
        print(f"search skipped: {exc}")
    else:
        print("nearest images to image 1 (cosine, mean-pooled queries):")
        print(neighbours[[c for c in neighbours.columns if c in (
            "query_image_id", "rank", "image_id", "neighbour_image_id", "skin", "neighbour_skin",
            "lighting", "neighbour_lighting", "score")]])
