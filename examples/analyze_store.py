"""Analyse a small synthetic DETR-style store: select, pool, label, stream.

Builds a store of 60 images with 20 object queries each (random embeddings
whose first queries are "confident detections"), then shows the analyzer's
main calls. Runs in a few seconds, offline.

Run: ``python examples/analyze_store.py``; output goes to
``$EMBSTORE_EXAMPLE_OUT`` (default: a temporary directory).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from embstore import EmbeddingAnalyzer, Store

N_IMAGES, N_QUERIES, HIDDEN, N_CLASSES = 60, 20, 32, 92


def build_store(path: Path) -> Store:
    rng = np.random.default_rng(0)
    skin = rng.integers(1, 11, N_IMAGES)  # Monk skin tone 1..10
    lighting = rng.choice(["well_lit", "dimly_lit"], N_IMAGES)
    # each image has a latent "content" vector; confident queries carry it
    content = rng.normal(size=(N_IMAGES, 1, HIDDEN))
    queries = rng.normal(size=(N_IMAGES, N_QUERIES, HIDDEN)) + 0.5 * content
    logits = rng.normal(size=(N_IMAGES, N_QUERIES, N_CLASSES))
    logits[:, :3, 1] += 8.0  # three confident "person" detections per image
    logits[:, 3:, -1] += 6.0  # the other queries say "no object"
    queries[:, :3] += 2.0 * content  # detections are about the image content
    st = Store.create(
        str(path),
        row_dim="image",
        id_name="image_id",
        variables={"query_embeddings": ("query", "hidden"), "pred_logits": ("query", "class")},
        attrs={"model": "synthetic-detr", "extract_type": "decoder"},
    )
    st.append(
        np.arange(1, N_IMAGES + 1),
        {"query_embeddings": queries, "pred_logits": logits},
        coords={"skin": skin, "lighting": lighting},
    )
    st.flush()
    return st


def main() -> None:
    out = Path(os.environ.get("EMBSTORE_EXAMPLE_OUT") or tempfile.mkdtemp())
    store = build_store(out / "synthetic_detr.zarr")
    an = EmbeddingAnalyzer(store)
    print(an)

    # 1. select by metadata (non-unique labels, lists, several coordinates)
    dark = an.sel(skin=[8, 9, 10], lighting="dimly_lit")
    print(f"\nimages with skin 8-10 in dim light: {len(dark)}")

    # 2. pool the 20 queries of each image into one vector (lazy, labeled)
    pooled = dark.pool(method="confidence")
    print("\nconfidence-pooled vectors (lazy until .values):")
    print(pooled)

    # 3. how close is each pooling method to the image content?
    def unit(m: np.ndarray) -> np.ndarray:
        return m / np.linalg.norm(m, axis=1, keepdims=True)

    detections = unit(an.matrix(pool="topk:3")[0])

    def similarity(method: str) -> float:
        return float((unit(an.matrix(pool=method)[0]) * detections).sum(axis=1).mean())

    print("\nmean cosine to the top-3 detections' centroid:")
    for method in ("mean", "max", "confidence"):
        print(f"  {method:<10s} {similarity(method):.3f}")

    # 4. a matrix with row labels, every query kept (the old API's layout)
    matrix, labels = an.sel(skin=1).matrix("query_embeddings", pool=None)
    print(f"\nunpooled matrix {matrix.shape}; first labels:")
    print(labels.head(4).to_string(index=False))

    # 5. stream blocks (works on stores larger than memory)
    total = sum(len(block) for _, block in an.iter_vectors(pool=None, block_rows=256))
    print(f"\nstreamed {total} query vectors in blocks of <= 256")

    # 6. the old analyzer API still works
    stats = an.get_embedding_statistics("query_embeddings")
    print(f"statistics: shape {stats['shape']}, mean norm {stats['norm_mean']:.2f}")


if __name__ == "__main__":
    main()
