"""Extraction throughput with store writes versus with writes disabled.

Same model, same images, same process: the baseline runs the whole pipeline
(DataLoader, model, writer thread with device-to-host copy and dtype cast)
with ``write=False``; the measured run also appends to a Zarr store and
commits it. Runs alternate in ABBA order (baseline, store, store, baseline, ...) and
the medians are compared. Goal: ratio >= 0.95 (writing costs at most 5%, because
the writer thread overlaps the next forward pass).

Usage::

    python bench/extract_overhead.py                       # tiny DETR on CPU, ~1-2 min
    python bench/extract_overhead.py --config r50 --min-size 800 --device cuda --n 256
    python bench/extract_overhead.py --extract-type decoder,attention   # attention maps, goal >= 0.9

Weights are random (no download); images are scikit-image's bundled photos,
repeated with distinct ids.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

_MALLOC = {
    "MALLOC_MMAP_THRESHOLD_": "1073741824",
    "MALLOC_TRIM_THRESHOLD_": "2147483648",
    "MALLOC_TOP_PAD_": "268435456",
}
if any(k not in os.environ for k in _MALLOC):  # steady timings (see DESIGN.md): re-exec once
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **_MALLOC})

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


def make_images(folder: Path, n: int) -> None:
    import skimage.data as skd
    from PIL import Image

    photos = [Image.fromarray(getattr(skd, name)()) for name in PHOTOS]
    for i in range(n):
        photos[i % len(photos)].save(folder / f"img_{i:06d}.jpg", quality=90)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--config", default="small", help="entry of tests/data/detr/configs.json (small, r50)"
    )
    ap.add_argument("--n", type=int, default=32, help="images per run")
    ap.add_argument("--min-size", type=int, default=256)
    ap.add_argument("--max-size", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--num-workers", type=int, default=1)
    ap.add_argument(
        "--extract-type",
        default="decoder",
        help="extract type(s), comma-separated (decoder,attention stores attention maps)",
    )
    ap.add_argument(
        "--encoder-attention-points",
        default=None,
        metavar="Y,X;Y,X",
        help="also store encoder self-attention of these relative points",
    )
    ap.add_argument("--dtype", default="float16")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads on CPU")
    args = ap.parse_args()

    import torch

    from embstore import Store
    from extractors.datasets import folder_dataset
    from extractors.detr import DetrExtractor
    from extractors.detr.run import DetrPipelineExtractor
    from extractors.pipeline import run_extraction

    torch.set_num_threads(args.threads)
    cfg = json.loads((REPO / "tests" / "data" / "detr" / "configs.json").read_text())[args.config]
    torch.manual_seed(0)
    types = [t for t in args.extract_type.split(",") if t]
    detr = DetrExtractor.from_config(
        cfg,
        device=args.device,
        extract_type=types,
        min_size=args.min_size,
        max_size=args.max_size,
        storage_dtype=args.dtype,
        encoder_attention_points=args.encoder_attention_points,
    )
    # attention maps are L*Q values per feature cell: the writer has more to copy and compress
    goal = 0.9 if {"decoder_attention", "encoder_attention"} & set(detr.output_names) else 0.95
    ex = DetrPipelineExtractor(detr)
    work = Path(tempfile.mkdtemp(prefix="embstore-bench-"))
    try:
        imgs = work / "imgs"
        imgs.mkdir()
        make_images(imgs, args.n)
        dataset = folder_dataset(imgs)
        # warm-up (kernel selection, page cache)
        run_extraction(
            ex,
            dataset.filter(limit=args.batch_size),
            None,
            batch_size=args.batch_size,
            num_workers=0,
            write=False,
            progress=False,
        )
        base, store_t, run_t, busy_b, busy_s = [], [], [], [], []

        def run_base() -> None:
            t0 = time.perf_counter()
            s0 = run_extraction(
                ex,
                dataset,
                None,
                batch_size=args.batch_size,
                num_workers=args.num_workers,
                write=False,
                progress=False,
            )
            base.append(time.perf_counter() - t0)
            busy_b.append(s0.writer_seconds)
            assert s0.written == args.n

        def run_store(r: int) -> None:
            out = work / f"run{r}.zarr"
            t0 = time.perf_counter()
            with Store.create(
                out, variables=ex.variables, ragged=ex.ragged, dtypes=ex.dtypes
            ) as st:
                t1 = time.perf_counter()
                s1 = run_extraction(
                    ex,
                    dataset,
                    st,
                    batch_size=args.batch_size,
                    num_workers=args.num_workers,
                    progress=False,
                )
                run_t.append(time.perf_counter() - t1)  # the pipeline incl. its final commit
            store_t.append(time.perf_counter() - t0)  # includes create, final commit and close
            busy_s.append(s1.writer_seconds)
            assert s1.written == args.n and len(Store.open(out)) == args.n
            shutil.rmtree(out)

        for r in range(args.repeats):  # ABBA order cancels a drift in machine speed
            if r % 2 == 0:
                run_base()
                run_store(r)
            else:
                run_store(r)
                run_base()
        b, s = statistics.median(base), statistics.median(store_t)
        print(
            f"config={args.config} device={detr.device} n={args.n} batch={args.batch_size} "
            f"workers={args.num_workers} min/max={args.min_size}/{args.max_size} "
            f"extract_type={args.extract_type} dtype={args.dtype} repeats={args.repeats}"
        )
        print(
            f"no writes   : {args.n / b:8.2f} images/s (median {b:.2f} s; runs {[round(x, 2) for x in base]})"
        )
        print(
            f"store writes: {args.n / s:8.2f} images/s (median {s:.2f} s; runs {[round(x, 2) for x in store_t]})"
        )
        print(
            f"writer thread busy (median): {statistics.median(busy_b):.2f} s without writes, "
            f"{statistics.median(busy_s):.2f} s with writes (overlaps compute)"
        )
        ratio = b / s
        ratio_run = b / statistics.median(run_t)
        print(
            f"pipeline only (without Store.create/close): median {statistics.median(run_t):.2f} s; "
            f"ratio = {ratio_run:.3f}"
        )
        print(
            f"ratio (with writes / without, end to end) = {ratio:.3f}  "
            f"(goal >= {goal}: {'met' if ratio >= goal else 'NOT met'})"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
