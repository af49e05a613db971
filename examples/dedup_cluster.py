"""The face-clustering pipeline on a store: near-duplicates, identities, training labels.

Replaces the old ``final_embs.npy`` + FAISS scripts: a store of L2-normalised
512-d embeddings (here synthetic: 40 "identities" with a few exact-ish
duplicates planted, so the result can be checked), then

1. ``find_duplicates`` / ``remove_duplicates`` (cosine >= 0.9, connected components),
2. ``cluster`` (union-find over the top-k graph above 0.7; ids written back as a coordinate),
3. ``export_training_labels`` (``fr_train_*_classes.npy`` + ``_data_list.npy``).

Output goes to ``$EMBSTORE_EXAMPLE_OUT`` (default: a temporary folder).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from embstore import EmbeddingAnalyzer, Store

out = Path(os.environ.get("EMBSTORE_EXAMPLE_OUT") or tempfile.mkdtemp(prefix="embstore-dedup-"))
rng = np.random.default_rng(0)

# 40 identities x 6 photos; each photo = identity centre + noise (cosine ~0.8 to the centre).
n_ids, per_id, dim = 40, 6, 512
centres = rng.normal(size=(n_ids, dim))
emb = np.repeat(centres, per_id, axis=0) + 0.45 * rng.normal(size=(n_ids * per_id, dim))
identity = np.repeat(np.arange(n_ids), per_id)
# Plant 10 near-duplicates: copies of random photos with a tiny perturbation.
sources = rng.choice(len(emb), size=10, replace=False)
emb = np.vstack([emb, emb[sources] + 0.01 * rng.normal(size=(10, dim))])
identity = np.concatenate([identity, identity[sources]])
emb /= np.linalg.norm(emb, axis=1, keepdims=True)
paths = [f"faces/{identity[i]:03d}/{i:05d}.jpg" for i in range(len(emb))]

store_path = out / "faces.zarr"
with Store.create(
    store_path,
    row_dim="image",
    id_name="index",
    variables={"embedding": ("hidden",)},
    dtypes={"embedding": "float32"},
    overwrite=True,
) as st:
    st.append(
        ids=np.arange(len(emb)),
        data={"embedding": emb.astype(np.float32)},
        coords={"path": paths, "true_identity": identity},
    )

with Store.open(store_path, mode="a") as st:
    an = EmbeddingAnalyzer(st)
    pairs = an.find_duplicates(threshold=0.9, k=20, variable="embedding")
    print(f"near-duplicate pairs (cosine >= 0.9): {len(pairs)}")
    print(pairs[["group", "index_i", "index_j", "score"]].head(), "\n")

    dedup = an.remove_duplicates(threshold=0.9, k=20, variable="embedding")
    print(f"removed {dedup.n_removed} duplicates, kept {len(dedup.kept_ids)} rows")
    found = {frozenset((i, j)) for i, j in zip(pairs["index_i"], pairs["index_j"])}
    planted = {frozenset((int(src), n_ids * per_id + k)) for k, src in enumerate(sources)}
    print(f"planted duplicate pairs found: {len(planted & found)} of {len(planted)}\n")

    clusters = an.cluster(threshold=0.7, k=20, variable="embedding")
    print("cluster statistics:", {k: v for k, v in clusters.stats.items() if k != "size_histogram"})
    labels = st.coords[["true_identity", "cluster"]]
    purity = labels.groupby("cluster")["true_identity"].nunique().eq(1).mean()
    print(
        f"clusters: {labels['cluster'].nunique()} (true identities: {n_ids}); "
        f"share of clusters holding one identity: {purity:.2f}\n"
    )

    written = an.export_training_labels(out / "labels", clusters, dedup=dedup, path_coord="path")
    print(
        "training labels:",
        {k: (Path(v).name if isinstance(v, (str, os.PathLike)) else v) for k, v in written.items()},
    )
