"""Any model, any layer: two models' layers into two stores, then cross-model CKA.

Saves random weights of torchvision's ResNet-18 and timm's ViT-Tiny to local
files (nothing is downloaded; with real checkpoints the commands are the
same), extracts pooled layers of both for photos bundled with scikit-image
with each library's own preprocessing, and compares every ResNet layer with
every ViT block by linear CKA, aligned by image id::

    embstore models layers torchvision:resnet18
    embstore extract model --model torchvision:resnet18 --weights r18.pth \\
        --layers layer2,layer3,layer4 --pool mean --images photos/ --out r18.zarr

Usage::

    python examples/any_model.py [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from PIL import Image
from skimage import data as skd

from embstore import EmbeddingAnalyzer, Store
from embstore.analysis import cka
from embstore.analysis.layers import plot_cka_matrix
from extractors.models.run import extract_model

PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "cat",
    "retina",
    "camera",
    "moon",
    "page",
    "text",
)
R18_LAYERS = ["layer1", "layer2", "layer3", "layer4"]
VIT_LAYERS = ["blocks.2", "blocks.5", "blocks.8", "blocks.11"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        default=os.environ.get("EMBSTORE_EXAMPLE_OUT"),
        help="output folder (default: a temporary one)",
    )
    args = parser.parse_args(argv)
    tmp = None if args.out else tempfile.mkdtemp(prefix="embstore-models-")
    out = Path(args.out or tmp)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    try:
        import timm
        import torchvision
        from safetensors.torch import save_file

        photos = out / "photos"
        photos.mkdir(exist_ok=True)
        for name in PHOTOS:
            im = Image.fromarray(getattr(skd, name)()).convert("RGB")
            im.resize((im.width // 2, im.height // 2)).save(photos / f"{name}.png")
        torch.manual_seed(0)
        torch.save(torchvision.models.resnet18().state_dict(), out / "r18.pth")
        vit = timm.create_model("vit_tiny_patch16_224", pretrained=False)
        save_file(
            {k: v.contiguous() for k, v in vit.state_dict().items()}, str(out / "vit.safetensors")
        )

        common = dict(overwrite=True, device="cpu", batch_size=6, dtype="float32", progress=False)
        print(
            extract_model(
                "torchvision:resnet18",
                out / "r18.pth",
                R18_LAYERS,
                photos,
                out / "r18.zarr",
                pool="mean",
                **common,
            )
        )
        print(
            extract_model(
                "timm:vit_tiny_patch16_224",
                out / "vit.safetensors",
                VIT_LAYERS,
                photos,
                out / "vit.zarr",
                pool="cls",
                **common,
            )
        )
        st = Store.open(out / "r18.zarr")
        print(
            "provenance:",
            st.attrs["model_spec"],
            st.attrs["weights_sha256"][:12],
            st.attrs["layers"],
        )
        r18, vt = EmbeddingAnalyzer(str(out / "r18.zarr")), EmbeddingAnalyzer(str(out / "vit.zarr"))
        M = np.array([[cka(r18.vectors(a), vt.vectors(b)) for b in VIT_LAYERS] for a in R18_LAYERS])
        matrix = xr.DataArray(
            M,
            dims=("resnet18", "vit_tiny"),
            coords={"resnet18": R18_LAYERS, "vit_tiny": VIT_LAYERS},
            attrs={"variable": "resnet18 vs vit_tiny (random weights)"},
        )
        for a, row in zip(R18_LAYERS, M):
            print(f"CKA {a:7s}: " + " ".join(f"{v:.3f}" for v in row))
        plot_cka_matrix(matrix, out / "cross_model_cka.png")
        print("figure:", out / "cross_model_cka.png")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
