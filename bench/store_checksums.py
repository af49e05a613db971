"""Benchmark: the cost of crc32c chunk checksums (store v2) on writes and reads.

Writes the same DETR-shaped rows (query [100, 256] float16, decoder
[6, 100, 256] float16, logits [100, 92] float32) into two Zarr stores, with
and without the ``crc32c`` codec on data chunks, round-robin, and times

* the write (append + close),
* a full eager read (``Store.read``: whole chunks, checksums verified),
* a 10% subset read by ids (partial chunks: not verified, so no cost expected).

It prints medians and the ratio checksums / none for each (1.00 = free).

Usage::

    python bench/store_checksums.py            # N=1500
    python bench/store_checksums.py --n 400    # quicker, noisier
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from embstore import Store
from embstore.store.backends.zarr_backend import ZarrBackend

VARIABLES = {
    "query_embeddings": ("query", "hidden"),
    "decoder_output": ("layer", "query", "hidden"),
    "pred_logits": ("query", "class"),
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1500, help="rows (default 1500)")
    ap.add_argument("--repeat", type=int, default=5, help="repeats (median; default 5)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    batch = {
        "query_embeddings": rng.standard_normal((16, 100, 256), dtype=np.float32),
        "decoder_output": rng.standard_normal((16, 6, 100, 256), dtype=np.float32),
        "pred_logits": rng.standard_normal((16, 100, 92), dtype=np.float32),
    }
    work = Path(tempfile.mkdtemp(prefix="embstore-crc-"))
    sub = np.sort(rng.choice(args.n, args.n // 10, replace=False))
    times: dict[str, list[float]] = {}

    def write(path: Path, crc: bool) -> float:
        ZarrBackend.chunk_checksums = crc
        if path.exists():
            shutil.rmtree(path)
        t0 = time.perf_counter()
        with Store.create(str(path), variables=VARIABLES, dtypes={"pred_logits": "float32"}) as st:
            for s in range(0, args.n, 16):
                k = min(16, args.n - s)
                st.append(list(range(s, s + k)), {v: a[:k] for v, a in batch.items()})
        ZarrBackend.chunk_checksums = True
        return time.perf_counter() - t0

    def timed(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    try:
        paths = {True: work / "crc.zarr", False: work / "plain.zarr"}
        for r in range(args.repeat):
            for crc in (True, False) if r % 2 == 0 else (False, True):
                tag = "crc32c" if crc else "none"
                times.setdefault(f"write {tag}", []).append(write(paths[crc], crc))
        for r in range(args.repeat):
            for crc in (True, False) if r % 2 == 0 else (False, True):
                tag = "crc32c" if crc else "none"
                with Store.open(str(paths[crc])) as st:
                    times.setdefault(f"full read {tag}", []).append(
                        timed(lambda: st.read("decoder_output"))
                    )
                    times.setdefault(f"subset read {tag}", []).append(
                        timed(lambda: st.read("decoder_output", ids=sub.tolist()))
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{'':16s}{'crc32c s':>10s}{'none s':>10s}{'ratio':>8s}")
    for what in ("write", "full read", "subset read"):
        a, b = med[f"{what} crc32c"], med[f"{what} none"]
        print(f"{what:16s}{a:10.4f}{b:10.4f}{a / b:8.2f}")


if __name__ == "__main__":
    main()
