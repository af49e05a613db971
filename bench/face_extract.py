"""Face extraction throughput on this machine (images/s), r18 and r34 at batch 32.

Baseline, measured in the same run: the bare model forward on already
preprocessed tensors (what the GPU/CPU can do at best). Measured: the full
``extract_face`` pipeline (JPEG decode, resize/normalise, forward, float16
cast, store append + commit) over a folder of images. Printed: images/s of
both and their ratio (pipeline / bare forward; 1.0 = no overhead).

Run: ``python bench/face_extract.py [--images 64] [--repeats 2]`` (minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

_MALLOC = {
    "MALLOC_MMAP_THRESHOLD_": "4294967296",
    "MALLOC_TRIM_THRESHOLD_": "4294967296",
    "MALLOC_TOP_PAD_": "1073741824",
}
if any(
    k not in os.environ for k in _MALLOC
):  # steady timings (see DESIGN.md), set before any allocation
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **_MALLOC})

import numpy as np
import torch
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from extractors.face.extractor import FaceExtractor, extract_face, preprocess_face
from extractors.face.iresnet import iresnet


def write_images(folder: Path, n: int) -> list[Path]:
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        img = photos[i % len(photos)]
        y, x = rng.integers(0, 150, 2)
        crop = np.ascontiguousarray(img[y : y + 250, x : x + 250])
        p = folder / f"{i:06d}.jpg"
        Image.fromarray(crop).save(p, quality=90)
        paths.append(p)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-face-"))
    try:
        paths = write_images(tmp / "imgs", args.images)
        batch = np.stack([preprocess_face(Image.open(p)) for p in paths[: args.batch_size]])
        x = torch.from_numpy(batch)
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.images} images, "
            f"batch {args.batch_size}"
        )
        for arch in ("r18", "r34"):
            torch.manual_seed(0)
            model = iresnet(arch).eval()
            fx = FaceExtractor(model, l2_norm=True)
            with torch.inference_mode():
                model(x[:2])  # warm-up
            bare, full = [], []
            n_batches = max(1, args.images // args.batch_size)
            for r in range(args.repeats):
                t0 = time.perf_counter()
                with torch.inference_mode():
                    for _ in range(n_batches):
                        model(x)
                bare.append(n_batches * len(x) / (time.perf_counter() - t0))
                out = tmp / f"{arch}_{r}.zarr"
                t0 = time.perf_counter()
                summary = extract_face(
                    None,
                    tmp / "imgs",
                    out,
                    extractor=fx,
                    batch_size=args.batch_size,
                    num_workers=0,
                    progress=False,
                )
                full.append(summary.written / (time.perf_counter() - t0))
                shutil.rmtree(out)
            b, f = statistics.median(bare), statistics.median(full)
            print(
                f"{arch}: bare forward {b:7.1f} images/s | extract_face pipeline {f:7.1f} images/s | "
                f"ratio pipeline/bare = {f / b:.2f} (median of {args.repeats})"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
