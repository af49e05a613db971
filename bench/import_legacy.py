"""Import speed of a DETR per-file directory (files/s) vs a plain ``torch.load`` loop.

Builds a directory of ``embedding_{id:012d}.pt`` files with the ``decoder``
extract type's real shapes (query_embeddings [100, 256], decoder_output
[6, 100, 256], pred_logits [100, 92], pred_boxes [100, 4], encoder_output
[h*w, 256] with varying h, w) plus ``metadata.json``. Baseline, in the same
run over the same files: ``for f in files: torch.load(f, weights_only=True)``
(what the old analyzer did to read them). Measured: ``import_detr_dir`` into
a Zarr store (load + validate + write + commit). Printed: files/s of both and
the ratio (import / plain load; the import also writes every byte once more).

Run: ``python bench/import_legacy.py [--files 200] [--repeats 3]``.
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
if any(k not in os.environ for k in _MALLOC):  # steady timings (see DESIGN.md)
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **_MALLOC})

import json

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from embstore.legacy.detr_pt import import_detr_dir, pt_filename
from embstore.store import Store  # noqa: F401  (imported up front: not part of the timing)


def write_dir(d: Path, n: int) -> int:
    d.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    total = 0
    for i in range(1, n + 1):
        h, w = 20 + i % 9, 25 + i % 13
        entry = {
            "decoder_output": torch.randn(6, 100, 256, generator=g),
            "query_embeddings": torch.randn(100, 256, generator=g),
            "encoder_output": torch.randn(h * w, 256, generator=g),
            "pred_logits": torch.randn(100, 92, generator=g),
            "pred_boxes": torch.rand(100, 4, generator=g),
        }
        torch.save(entry, d / pt_filename(i))
        total += (d / pt_filename(i)).stat().st_size
    meta = {
        "image_ids": list(range(1, n + 1)),
        "num_images": n,
        "extract_type": "decoder",
        "embedding_keys": list(entry),
    }
    (d / "metadata.json").write_text(json.dumps(meta))
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        src = tmp / "embeddings_output"
        nbytes = write_dir(src, args.files)
        files = [src / pt_filename(i) for i in range(1, args.files + 1)]
        print(f"{args.files} files, {nbytes / 2**20:.0f} MiB (decoder extract type, float32)")
        plain, imp, imp16 = [], [], []
        for r in range(args.repeats):
            t0 = time.perf_counter()
            for f in files:
                torch.load(f, weights_only=True)
            plain.append(len(files) / (time.perf_counter() - t0))
            out = tmp / f"run{r}.zarr"
            t0 = time.perf_counter()
            rep = import_detr_dir(src, out, progress=False)
            imp.append(rep.imported / (time.perf_counter() - t0))
            shutil.rmtree(out)
            out16 = tmp / f"run{r}_f16.zarr"
            t0 = time.perf_counter()
            rep = import_detr_dir(
                src,
                out16,
                progress=False,
                dtypes=dict.fromkeys(
                    ("decoder_output", "query_embeddings", "encoder_output"), "float16"
                ),
            )
            imp16.append(rep.imported / (time.perf_counter() - t0))
            shutil.rmtree(out16)
        p, i, i16 = (statistics.median(v) for v in (plain, imp, imp16))
        print(f"plain torch.load loop      : {p:7.1f} files/s (baseline)")
        print(f"import_detr_dir (float32)  : {i:7.1f} files/s | ratio import/plain = {i / p:.2f}")
        print(
            f"import_detr_dir (float16)  : {i16:7.1f} files/s | ratio import/plain = {i16 / p:.2f}"
        )
        print(f"(median of {args.repeats} runs each)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
