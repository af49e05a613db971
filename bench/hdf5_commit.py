"""Benchmark: the cost of crash safety on HDF5, against store size.

The HDF5 backend never writes the committed ``.h5`` in place: a writer
session copies it once (at its first write), journals every write and renames
the copy over the file at close (see
:mod:`embstore.store.backends.hdf5_backend`). This prints, for stores of
several sizes (rows of 100 x 256 float16), the time of

* ``first commit``: ``Store.open(mode="a")``, append one chunk of rows,
  ``flush()`` (includes the copy of the whole file),
* ``commit``: append one more chunk and ``flush()`` (median of ``--commits``),
* ``close``: ``close()`` (fsync + rename),

and the same operations on a Zarr store of the same rows (the baseline, in
the same run). A commit should not grow with the store; the first commit
grows linearly (the copy).

Measured on the shared 2-core development VM (bulk rows written once into the
working copy, the journal holding references; no fsync before ``close``)::

      MiB backend  first commit s  commit s  close s
       32    zarr           0.070     0.025    0.003
       32    hdf5           0.086     0.023    0.129
      128    zarr           0.060     0.026    0.005
      128    hdf5           0.145     0.039    0.313
      512    zarr           0.064     0.033    0.005
      512    hdf5           0.326     0.028    1.168

(Before, with every byte journalled and an fsync per commit, an HDF5 commit
took 0.18-0.35 s and close up to 1.56 s.) ``close`` is the fsync of the
working copy plus the rename: HDF5's durability point.

Usage::

    python bench/hdf5_commit.py                 # 32, 128, 512 MiB stores
    python bench/hdf5_commit.py --sizes 16 64
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from embstore import Store

VAR = "query_embeddings"
ROW_BYTES = 100 * 256 * 2


def build(path: str, n: int) -> None:
    rng = np.random.default_rng(0)
    with Store.create(path, variables={VAR: ("query", "hidden")}, dtypes={VAR: "float16"}) as st:
        for a in range(0, n, 512):
            b = min(n, a + 512)
            st.append(
                list(range(a, b)),
                {VAR: rng.standard_normal((b - a, 100, 256), dtype=np.float32)},
                coords={"skin": np.arange(a, b) % 10},
            )


def session(path: str, n: int, commits: int) -> tuple[float, float, float]:
    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    st = Store.open(path, mode="a", write_chunks=1)
    cr = st._schema.chunk_rows
    times = []
    nxt = n
    for i in range(commits + 1):
        data = rng.standard_normal((cr, 100, 256), dtype=np.float32)
        t = time.perf_counter()
        st.append(list(range(nxt, nxt + cr)), {VAR: data}, coords={"skin": np.arange(cr) % 10})
        st.flush()
        times.append(time.perf_counter() - (t0 if i == 0 else t))
        nxt += cr
    t = time.perf_counter()
    st.close()
    return times[0], statistics.median(times[1:]), time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--sizes", type=int, nargs="+", default=[32, 128, 512], help="store sizes in MiB"
    )
    ap.add_argument("--commits", type=int, default=5)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(dir=args.dir, prefix="hdf5_commit_")
    print(
        f"{'MiB':>5} {'backend':>7} {'first commit s':>15} {'commit s':>9} {'close s':>8}  (commit = one chunk)"
    )
    try:
        for mib in args.sizes:
            n = mib * 2**20 // ROW_BYTES
            res = {}
            for ext in (".zarr", ".h5"):
                p = os.path.join(tmp, f"s{mib}{ext}")
                build(p, n)
                res[ext] = session(p, n, args.commits)
                shutil.rmtree(p, ignore_errors=True) if ext == ".zarr" else os.remove(p)
            for ext, name in ((".zarr", "zarr"), (".h5", "hdf5")):
                f, c, cl = res[ext]
                print(f"{mib:>5} {name:>7} {f:>15.3f} {c:>9.3f} {cl:>8.3f}")
            z, h = res[".zarr"], res[".h5"]
            print(
                f"{mib:>5} {'h5/zarr':>7} {h[0] / z[0]:>14.2f}x {h[1] / z[1]:>8.2f}x {h[2] / max(z[2], 1e-9):>7.2f}x"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
