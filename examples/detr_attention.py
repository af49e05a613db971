"""DETR attention maps: extract them into a store, read them back, overlay them on a photo.

Uses a small DETR (ResNet-18 backbone, deterministic random weights saved as
an official-format checkpoint: no download) on photos bundled with
scikit-image, so the maps show the mechanics rather than a trained model's
focus. With the released ``detr-r50-e632da11.pth`` the same commands give
the maps of the DETR paper::

    embstore extract detr --checkpoint detr-r50-e632da11.pth --images photos/ \\
        --out coco_att.zarr --extract-type decoder,attention --encoder-attention-points "0.5,0.5"

Usage::

    python examples/detr_attention.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data as skd

from embstore import EmbeddingAnalyzer
from extractors.detr import DetrExtractor
from extractors.detr.run import extract_detr
from extractors.detr.testing import deterministic_state_dict

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        default=os.environ.get("EMBSTORE_EXAMPLE_OUT"),
        help="output folder (default: a temporary one)",
    )
    args = parser.parse_args(argv)
    tmp = None if args.out else tempfile.mkdtemp(prefix="embstore-attention-")
    out = Path(args.out or tmp)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    try:
        photos = out / "photos"
        photos.mkdir(exist_ok=True)
        for name in ("astronaut", "coffee", "chelsea"):
            im = Image.fromarray(getattr(skd, name)())
            im.resize((im.width // 2, im.height // 2), Image.BILINEAR).save(photos / f"{name}.png")
        cfg = json.loads((REPO / "tests" / "data" / "detr" / "configs.json").read_text())["small"]
        model = DetrExtractor.from_config(cfg).model
        ckpt = out / "detr_small.pth"
        torch.save(
            {"model": deterministic_state_dict(model), "args": {"nheads": cfg["nheads"]}}, ckpt
        )

        store = out / "attention.zarr"
        summary = extract_detr(
            ckpt,
            photos,
            store,
            extract_type=["decoder", "attention"],
            overwrite=True,
            encoder_attention_points="0.5,0.5;0.25,0.75",
            min_size=224,
            max_size=320,
            batch_size=2,
            num_workers=0,
            device="cpu",
            dtype="float32",
            progress=False,
        )
        print(summary)
        an = EmbeddingAnalyzer(str(store))
        image_id = an.ids[0]
        maps = an.attention(image_id, layer=-1)
        print(f"decoder_attention of image {image_id}: dims {maps.dims}, shape {maps.shape}")
        print("each map sums to 1:", bool(np.allclose(maps.sum(("y", "x")), 1.0, atol=1e-4)))
        enc = an.attention(image_id, variable="encoder_attention")
        print(f"encoder_attention: dims {enc.dims}, shape {enc.shape}")
        an.plot_attention(image_id, queries="top", k=4, path=out / "attention.png")
        print("figure:", out / "attention.png")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
