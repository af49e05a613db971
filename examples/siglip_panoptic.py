"""SigLIP-style embeddings of COCO-panoptic segments, into a store and out to the old cache.

Builds a two-image COCO-panoptic dataset (scikit-image photos, panoptic PNGs
with ``segment_id = R + 256 G + 65536 B``), registers a tiny open_clip config
with random local weights (with a real checkpoint use
``model_name="ViT-B-16-SigLIP", pretrained="open_clip_pytorch_model.bin"``),
embeds every segment (masked, padded crop; background blended at
``bg_alpha``), selects by coordinates, and exports the
``<image_id>_<segment_id>.npy`` + ``inst2feat.tsv`` cache. Offline, seconds.

Run: ``python examples/siglip_panoptic.py``; output goes to
``$EMBSTORE_EXAMPLE_OUT`` (default: a temporary directory).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from embstore import Store
from embstore.legacy import export_siglip_cache
from extractors.siglip import SiglipExtractor
from extractors.siglip.panoptic import encode_panoptic_ids
from extractors.siglip.testing import register_tiny_config, save_random_weights


def write_coco(root: Path) -> None:
    """Two images, a 'thing' (disc) and a 'stuff' (top band) segment each."""
    (root / "val2017").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "panoptic_val2017").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for image_id, img in [(397133, data.astronaut()[::2, ::2]), (37777, data.coffee()[::2, ::2])]:
        h, w = img.shape[:2]
        yy, xx = np.mgrid[:h, :w]
        ids = np.zeros((h, w), np.int64)
        ids[(yy - h // 2) ** 2 + (xx - w // 2) ** 2 < (h // 4) ** 2] = 15466
        ids[: h // 6] = 3
        name = f"{image_id:012d}"
        Image.fromarray(img).save(root / "val2017" / f"{name}.jpg")
        Image.fromarray(encode_panoptic_ids(ids)).save(
            root / "annotations" / "panoptic_val2017" / f"{name}.png"
        )
        segs = []
        for sid, cat in [(15466, 1), (3, 187)]:
            ys, xs = np.nonzero(ids == sid)
            segs.append(
                {
                    "id": sid,
                    "category_id": cat,
                    "iscrowd": 0,
                    "area": len(xs),
                    "bbox": [
                        int(xs.min()),
                        int(ys.min()),
                        int(np.ptp(xs) + 1),
                        int(np.ptp(ys) + 1),
                    ],
                }
            )
        images.append({"id": image_id, "file_name": f"{name}.jpg", "width": w, "height": h})
        anns.append({"image_id": image_id, "file_name": f"{name}.png", "segments_info": segs})
    cats = [
        {"id": 1, "name": "person", "isthing": 1},
        {"id": 187, "name": "sky-other-merged", "isthing": 0},
    ]
    (root / "annotations" / "panoptic_val2017.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats})
    )


def main() -> None:
    out = Path(os.environ.get("EMBSTORE_EXAMPLE_OUT") or tempfile.mkdtemp())
    write_coco(out / "coco")
    name = register_tiny_config()
    weights = save_random_weights(out / "tiny_siglip.pt", name, seed=0)
    ex = SiglipExtractor(name, pretrained=weights, device="cpu")
    summary = ex.extract_panoptic(
        out / "coco",
        split="val",
        out=out / "val_siglip.zarr",
        bg_alpha=0.3,
        pad_ratio=0.1,
        batch_size=8,
    )
    print("extracted:", {k: getattr(summary, k) for k in ("written", "already_done", "skipped")})
    again = ex.extract_panoptic(out / "coco", split="val", out=out / "val_siglip.zarr")
    print("re-run (resume):", {k: again[k] for k in ("written", "already_done")})
    with Store.open(out / "val_siglip.zarr") as st:
        print(st)
        print(st.coords[["image_id", "segment_id", "category", "isthing", "area"]])
        things = st.sel(isthing=1)
        print(
            "things:",
            things.sizes[st.row_dim],
            "rows;",
            "norms:",
            np.round(np.linalg.norm(np.asarray(st.embedding.values, np.float32), axis=1), 3),
        )
    n = export_siglip_cache(out / "val_siglip.zarr", out / "cache" / "vis_embed")
    print(f"exported {n} files; inst2feat.tsv:")
    print((out / "cache" / "vis_embed" / "inst2feat.tsv").read_text())


if __name__ == "__main__":
    main()
