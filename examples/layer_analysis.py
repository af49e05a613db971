"""Layer-wise analysis on a synthetic layered store (runs in well under a minute).

Builds a store whose ``decoder_output`` has 6 layers; skin tone 2's
embeddings are shifted from layer 3 on, growing with depth (the effect the
analysis should find), then:

* ``an.layer_profile`` - probe accuracy, centroid distance and energy test
  p-values per layer with bootstrap intervals,
* ``an.cka_matrix`` - linear CKA between the layers,
* ``embstore.analysis.cka`` - CKA between two stores of the same images,
  aligned by id,

and writes ``layer_profile.png`` and ``cka.png``.

Usage::

    python examples/layer_analysis.py [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from embstore import EmbeddingAnalyzer, Store
from embstore.analysis import cka
from embstore.analysis.layers import plot_cka_matrix, plot_layer_profile
from embstore.fairness import make_synthetic_facet

SHIFTS = (0.0, 0.0, 0.0, 1.0, 2.0, 3.0)


def build_store(path: Path, n_images: int = 240, seed: int = 0):
    """A DETR-like store: decoder_output (layer, query, hidden), skin 2 shifted from layer 3 on."""
    rng = np.random.default_rng(seed)
    layers, base = [], None
    for shift in SHIFTS:
        data = make_synthetic_facet(n_images, shift_group=2, shift=shift, seed=seed)
        base = base or data
        layers.append(data.query_embeddings + 0.3 * rng.normal(size=data.query_embeddings.shape))
    st = Store.create(
        str(path),
        row_dim="image",
        id_name="image_id",
        variables={"decoder_output": ("layer", "query", "hidden")},
        overwrite=True,
    )
    st.append(
        base.images["image_id"].to_numpy(),
        {"decoder_output": np.stack(layers, axis=1).astype(np.float32)},
        coords={
            "skin": base.images["skin"].to_numpy(),
            "lighting": base.images["lighting"].to_numpy(),
        },
    )
    st.close()
    return base


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        default=os.environ.get("EMBSTORE_EXAMPLE_OUT"),
        help="output folder (default: a temporary one)",
    )
    parser.add_argument("--n-boot", type=int, default=200)
    args = parser.parse_args(argv)
    tmp = None if args.out else tempfile.mkdtemp(prefix="embstore-layers-")
    out = Path(args.out or tmp)
    out.mkdir(parents=True, exist_ok=True)
    try:
        build_store(out / "layers.zarr")
        an = EmbeddingAnalyzer(str(out / "layers.zarr"))
        table = an.layer_profile(
            "decoder_output", by="skin", n_boot=args.n_boot, n_perm=99, min_count=15
        )
        acc = table[table.metric == "probe_accuracy"].set_index("layer")
        print("planted shift of skin tone 2 by layer:", SHIFTS)
        print("linear-probe accuracy (skin) by layer:")
        for layer, r in acc.iterrows():
            print(
                f"  layer {layer}: {r['value']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]"
                f"  (majority baseline {r['baseline']:.3f})"
            )
        dist = table[(table.metric == "centroid_distance") & (table.skin == 2)].set_index("layer")
        print(
            "centroid distance of skin 2 to the others:",
            " ".join(f"{v:.3f}" for v in dist["value"]),
        )
        plot_layer_profile(table, out / "layer_profile.png", title="decoder_output by skin")
        M = an.cka_matrix("decoder_output")
        plot_cka_matrix(M, out / "cka.png")
        print(
            "CKA between consecutive layers:",
            " ".join(f"{M.values[i, i + 1]:.3f}" for i in range(M.shape[0] - 1)),
        )
        # two "models" of the same images, aligned by id (the second store has fewer rows)
        first = an.vectors("decoder_output", pool="mean", layer=0)
        other = an.sel(skin=[1, 2, 3]).vectors("decoder_output", pool="mean", layer=-1)
        print(f"CKA(layer 0, last layer of a subset) on shared ids: {cka(first, other):.3f}")
        print("figures:", out / "layer_profile.png", out / "cka.png")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
