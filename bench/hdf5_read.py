"""Benchmark: subset reads of the HDF5 backend vs the Zarr backend, and the HDF5 strategies tried.

Two stores with the same rows (N x 100 x 256 float16 ``query_embeddings``, a
``skin`` coordinate with 10 values, rows in random skin order) are written,
one Zarr, one HDF5. Then rows are selected by ``skin`` at about 1% (one skin
value, every 10th such row), 10% (``skin == 3``) and 50% (``skin`` in 0..4),
and read by:

* ``zarr Store.read``: ``Store.open(zarr).read(var, mask=...)``, the baseline;
* ``hdf5 Store.read``: the same call on the HDF5 store (what users get: the
  direct chunk reader :mod:`embstore.store.backends.h5raw`);
* the alternatives tried, on the same HDF5 file with h5py:
  ``h5py fancy`` (``ds[sorted_positions]``, the old path),
  ``h5py runs`` (one ``read_direct`` per run of consecutive rows, into a
  preallocated array), ``h5py chunks`` (per chunk holding selected rows, one
  slice read of the span, then a take), ``h5py full+mask`` (``ds[:]`` then
  the mask).

Every timed call opens the file, reads, closes. Times are medians over
``--repeat`` rounds with the order of the methods rotated each round; the
ratio column is time / zarr time of the same selection (goal: HDF5
``Store.read`` within 2x of Zarr at 10%).

Measured on the shared 2-core development VM (N=20000, medians of 3, times /
Zarr ``Store.read`` of the same rows in the same run)::

    selection  rows   hdf5 Store.read  h5py fancy  h5py runs  h5py chunks  h5py full+mask
    1%          195       1.45x          90x        23x        17x           134x
    10%        1949       0.50x          37x        5.0x       3.1x          13x
    50%        9964       0.47x          (skipped)  2.9x       0.84x         4.4x

(write of the two stores: HDF5 1.42x the Zarr time.)

Usage::

    python bench/hdf5_read.py              # N=20000 (2 GB of stores on disk), a few minutes
    python bench/hdf5_read.py --n 2000     # quick
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


def build(path: str, n: int, skin: np.ndarray) -> float:
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    with Store.create(path, variables={VAR: ("query", "hidden")}, dtypes={VAR: "float16"}) as st:
        for a in range(0, n, 256):
            b = min(n, a + 256)
            st.append(
                list(range(a, b)),
                {VAR: rng.standard_normal((b - a, 100, 256), dtype=np.float32)},
                coords={"skin": skin[a:b]},
            )
    return time.perf_counter() - t0


def store_read(path: str, mask: np.ndarray) -> np.ndarray:
    with Store.open(path) as st:
        return st.read(VAR, mask=mask)


def h5_fancy(path: str, mask: np.ndarray) -> np.ndarray:
    import h5py

    with h5py.File(path, "r", locking=False) as f:
        return f[VAR][np.flatnonzero(mask)]


def h5_runs(path: str, mask: np.ndarray) -> np.ndarray:
    import h5py

    pos = np.flatnonzero(mask)
    with h5py.File(path, "r", locking=False) as f:
        ds = f[VAR]
        out = np.empty((len(pos),) + ds.shape[1:], dtype=ds.dtype)
        brk = np.flatnonzero(np.diff(pos) != 1) + 1
        starts = np.concatenate(([0], brk))
        stops = np.concatenate((brk, [len(pos)]))
        for s, e in zip(starts.tolist(), stops.tolist()):
            p = int(pos[s])
            ds.read_direct(out, source_sel=np.s_[p : p + (e - s)], dest_sel=np.s_[s:e])
        return out


def h5_chunks(path: str, mask: np.ndarray) -> np.ndarray:
    import h5py

    pos = np.flatnonzero(mask)
    with h5py.File(path, "r", locking=False) as f:
        ds = f[VAR]
        cr = ds.chunks[0]
        out = np.empty((len(pos),) + ds.shape[1:], dtype=ds.dtype)
        ch = pos // cr
        brk = np.flatnonzero(np.diff(ch) != 0) + 1
        starts = np.concatenate(([0], brk))
        stops = np.concatenate((brk, [len(pos)]))
        for s, e in zip(starts.tolist(), stops.tolist()):
            a, b = int(pos[s]), int(pos[e - 1]) + 1
            out[s:e] = ds[a:b][pos[s:e] - a]
        return out


def h5_full_mask(path: str, mask: np.ndarray) -> np.ndarray:
    import h5py

    with h5py.File(path, "r", locking=False) as f:
        return f[VAR][: len(mask)][mask]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to write the stores (default: a temp dir)")
    ap.add_argument(
        "--skip-slow", action="store_true", help="skip h5py fancy at 50%% (tens of seconds)"
    )
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(dir=args.dir, prefix="hdf5_read_")
    try:
        rng = np.random.default_rng(1)
        skin = rng.integers(0, 10, args.n)
        zp, hp = os.path.join(tmp, "s.zarr"), os.path.join(tmp, "s.h5")
        tz = build(zp, args.n, skin)
        th = build(hp, args.n, skin)
        print(
            f"N={args.n} rows of 100x256 float16 ({args.n * 51200 / 2**20:.0f} MiB); "
            f"write: zarr {tz:.1f} s, hdf5 {th:.1f} s (hdf5/zarr {th / tz:.2f}x)"
        )
        sel3 = np.flatnonzero(skin == 3)
        one = np.zeros(args.n, dtype=bool)
        one[sel3[::10]] = True
        sels = {"1%": one, "10%": skin == 3, "50%": skin < 5}
        methods = {
            "zarr Store.read": lambda m: store_read(zp, m),
            "hdf5 Store.read": lambda m: store_read(hp, m),
            "h5py fancy": lambda m: h5_fancy(hp, m),
            "h5py runs": lambda m: h5_runs(hp, m),
            "h5py chunks": lambda m: h5_chunks(hp, m),
            "h5py full+mask": lambda m: h5_full_mask(hp, m),
        }
        ref = {k: store_read(zp, m) for k, m in sels.items()}
        print(f"{'selection':>9} {'method':>16} {'rows':>6} {'median s':>9} {'vs zarr':>8}")
        results: dict[str, dict[str, float]] = {}
        for label, mask in sels.items():
            names = list(methods)
            if args.skip_slow and label == "50%":
                names.remove("h5py fancy")
            times: dict[str, list[float]] = {k: [] for k in names}
            for r in range(args.repeat):
                order = names[r % len(names) :] + names[: r % len(names)]
                for k in order:
                    t0 = time.perf_counter()
                    out = methods[k](mask)
                    times[k].append(time.perf_counter() - t0)
                    if r == 0:
                        np.testing.assert_array_equal(out, ref[label])
            med = {k: statistics.median(v) for k, v in times.items()}
            results[label] = med
            for k in names:
                print(
                    f"{label:>9} {k:>16} {int(mask.sum()):>6} {med[k]:>9.4f} {med[k] / med['zarr Store.read']:>7.2f}x"
                )
        ratio = results["10%"]["hdf5 Store.read"] / results["10%"]["zarr Store.read"]
        print(
            f"goal: 10% subset on HDF5 within 2x of Zarr: {ratio:.2f}x -> {'MET' if ratio <= 2 else 'NOT MET'}"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
