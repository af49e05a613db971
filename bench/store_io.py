"""Benchmark: embstore Store vs the per-file ``torch.save`` layout.

N DETR-shaped images (query [100, 256], decoder [6, 100, 256], logits
[100, 92], boxes [100, 4], encoder ragged ~600-1300 x 256) are written

* as one ``embedding_{id:012d}.pt`` file per image (``torch.save`` of a dict
  of float32 tensors; the baseline, measured in the same run), and
* into a Store (Zarr v3, default dtypes: float16 hidden states, float32
  logits/boxes) and, as a variant, a sharded Store (``inner_chunk_rows=1``).

It prints write time and bytes on disk, the time of a full read of
``query_embeddings``, of a 10% subset selected by ``skin``, and of a raw
``np.fromfile`` of the same stored chunk files (the physical limit), each as
ratios against the baseline, with the goal and whether it is met. Times are
medians of round-robin runs (``--write-repeat`` for writes, with the order
rotated each repeat; ``--repeat`` for reads); files are read from the page
cache (both layouts alike).

What is timed is what a user calls, store opening included (every timed call
opens the store, reads, closes):

* eager reads (the goals' paths) go through ``Store.read``, the documented
  eager NumPy API: full read ``Store.open(p).read("query_embeddings")``,
  subset read ``Store.open(p).read("query_embeddings", skin=3)``;
* the card line ``Store.open(p).query_embeddings.sel(skin=3).values`` and
  ``Store.open(p).sel(skin=3).query_embeddings.values`` against
  ``Store.open(p).read("query_embeddings", skin=3)`` (medians of 7,
  alternating, same run; goal: within 2x). The views are lazily indexed
  xarray arrays whose selection reaches the same fast reader; they also
  decode float16 to float32 (``embstore.store.decode``, block by block; the
  header line names the decoder: the native F16C module when it was built
  at install time, else NumPy).
  The CPU-time ratio of the same calls is printed too (info): on a shared
  machine it is less disturbed by other processes than wall time;
* also printed, without goals: the views' ``.values`` against the
  baseline (``st.query_embeddings.values``, ``st.sel(skin=3).query_embeddings.values``,
  ``st.query_embeddings.sel(skin=3).values``);
* baseline: ``torch.load`` of each ``embedding_{id:012d}.pt`` (all rows, or
  the rows with ``skin == 3``), stacking ``query_embeddings``.

Goals: write at least as fast as the baseline at <= 0.55x its bytes; full
read >= 15x and subset read >= 20x faster than the baseline; full read within
2x of raw ``np.fromfile``; the card line's lazy ``.values`` within 2x of
``Store.read``.

Usage::

    python bench/store_io.py            # N=2000, about 1-2 minutes
    python bench/store_io.py --n 600    # quicker, noisier
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

# Fresh large allocations are slow and erratic on some VMs; pinning glibc's
# malloc thresholds makes timings steady (see DESIGN.md). Re-exec once with them.
_MALLOC = {
    "MALLOC_MMAP_THRESHOLD_": "33554432",
    "MALLOC_TRIM_THRESHOLD_": "4294967296",
    "MALLOC_TOP_PAD_": "268435456",
}
if __name__ == "__main__" and any(os.environ.get(k) != v for k, v in _MALLOC.items()):
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **_MALLOC})

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from embstore import Store
from embstore.store.decode import DECODER

VARIABLES = {
    "query_embeddings": ("query", "hidden"),
    "decoder_output": ("layer", "query", "hidden"),
    "pred_logits": ("query", "class"),
    "pred_boxes": ("query", "box"),
}
RAGGED = {"encoder_output": ("token", "hidden")}


def make_image(i: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    h, w = int(rng.integers(20, 34)), int(rng.integers(30, 40))
    return {
        "query_embeddings": rng.standard_normal((100, 256), dtype=np.float32),
        "decoder_output": rng.standard_normal((6, 100, 256), dtype=np.float32),
        "pred_logits": rng.standard_normal((100, 92), dtype=np.float32),
        "pred_boxes": rng.random((100, 4), dtype=np.float32),
        "encoder_output": rng.standard_normal((h * w, 256), dtype=np.float32),
        "hw": np.array([h, w]),
    }


def du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _cpu(fn) -> float:
    """CPU seconds (process, all threads) of one call of ``fn``."""
    c0 = time.process_time()
    fn()
    return time.process_time() - c0


def median_times(fns, repeat: int):
    """Median time and last result of each function, run round-robin (fair to each)."""
    times: list[list[float]] = [[] for _ in fns]
    outs: list = [None] * len(fns)
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            outs[k] = fn()
            times[k].append(time.perf_counter() - t0)
    return [(statistics.median(t), o) for t, o in zip(times, outs)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="number of images (default 2000)")
    ap.add_argument("--batch", type=int, default=16, help="images per append (default 16)")
    ap.add_argument(
        "--repeat", type=int, default=5, help="repeats of each read (median; default 5)"
    )
    ap.add_argument(
        "--write-repeat",
        type=int,
        default=3,
        help="round-robin repeats of each write (median; default 3)",
    )
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir, removed)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    work = Path(args.dir or tempfile.mkdtemp(prefix="embstore-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    n = args.n
    ids = np.arange(1, n + 1) * 7
    skin = rng.integers(1, 11, size=n)
    # generate data up front (not timed); reuse a pool to bound memory
    pool = [make_image(i, rng) for i in range(min(n, 64))]
    images = [pool[i % len(pool)] for i in range(n)]

    # ------------------------------------------------------------------ writes
    pt_dir = work / "pt"

    def write_pt(path: Path) -> None:
        path.mkdir()
        for i, img in zip(ids, images):
            torch.save(
                {k: torch.from_numpy(v) for k, v in img.items() if k != "hw"},
                path / f"embedding_{int(i):012d}.pt",
            )

    # batches as a model would hand them over (stacked arrays), built before timing;
    # batches repeat with the image pool, so only a few distinct ones are kept
    batch_cache: dict[int, tuple[dict, list]] = {}

    def batch_data(s: int) -> tuple[dict, list]:
        key = s % len(pool)
        if key not in batch_cache:
            batch = images[s : s + args.batch]
            batch_cache[key] = (
                {
                    **{k: np.stack([b[k] for b in batch]) for k in VARIABLES},
                    "encoder_output": [b["encoder_output"] for b in batch],
                },
                [tuple(b["hw"]) for b in batch],
            )
        return batch_cache[key]

    starts = list(range(0, n, args.batch))
    if len(pool) % args.batch == 0:
        for s0 in starts:
            batch_data(s0)

    def write_store(path: Path, **kw) -> None:
        with Store.create(str(path), variables=VARIABLES, ragged=RAGGED, **kw) as st:
            for s in starts:
                sl = slice(s, s + args.batch)
                data, hw = batch_data(s)
                if len(data["pred_boxes"]) != len(ids[sl]):  # last, shorter batch
                    data = {k: v[: len(ids[sl])] for k, v in data.items()}
                    hw = hw[: len(ids[sl])]
                st.append(
                    ids[sl], data, coords={"skin": skin[sl]}, ragged_hw={"encoder_output": hw}
                )

    # warm-up (not timed): the first Store.create imports zarr & co (a one-time
    # cost, like `import torch` before the baseline)
    with Store.create(str(work / "warmup.zarr"), variables={"e": ("d",)}) as st:
        st.append([1], {"e": np.zeros((1, 4), dtype=np.float32)})
    shutil.rmtree(work / "warmup.zarr")
    zpath = work / "run.zarr"
    spath = work / "sharded.zarr"
    writers = [
        ("pt", pt_dir, write_pt),
        ("zarr", zpath, write_store),
        ("sharded", spath, lambda path: write_store(path, inner_chunk_rows=1)),
    ]
    # Round-robin repeats, the order rotated each time so that no layout is
    # always first (on VMs the page-cache write speed depends on what ran
    # before). Each write starts with no dirty pages pending (an untimed
    # os.sync), so one layout's writeback does not throttle the next one, and
    # with the previous repeat's output removed (untimed), so every repeat
    # starts from the same files on disk. The last repeat's output is read below.
    write_times: dict[str, list[float]] = {name: [] for name, _, _ in writers}
    for r in range(args.write_repeat):
        for name, path, fn in writers[r % 3 :] + writers[: r % 3]:
            shutil.rmtree(path, ignore_errors=True)
            os.sync()
            t0 = time.perf_counter()
            fn(path)
            write_times[name].append(time.perf_counter() - t0)
    t_pt_write, t_z_write, t_s_write = (
        statistics.median(write_times[k]) for k in ("pt", "zarr", "sharded")
    )
    b_pt, b_z, b_s = du(pt_dir), du(zpath), du(spath)

    # -------------------------------------------------------------- full read
    def pt_full():
        return np.stack(
            [
                torch.load(pt_dir / f"embedding_{int(i):012d}.pt")["query_embeddings"].numpy()
                for i in ids
            ]
        )

    def store_full(path: Path):
        with Store.open(str(path)) as st:
            return st.read("query_embeddings")

    def store_full_values(path: Path):
        with Store.open(str(path)) as st:
            return st.query_embeddings.values

    qarr = zpath / "query_embeddings"
    if (qarr / "c").is_dir():  # "/" chunk keys: c/<i>/0/0
        qdir = qarr / "c"
        qfiles = sorted(qdir.rglob("*"), key=lambda p: int(p.relative_to(qdir).parts[0]))
        qfiles = [p for p in qfiles if p.is_file()]
    else:  # "." chunk keys (embstore's default): c.<i>.0.0 next to zarr.json
        qfiles = sorted(qarr.glob("c.*"), key=lambda p: int(p.name.split(".")[1]))

    def raw_full():
        return np.concatenate([np.fromfile(p, dtype=np.float16) for p in qfiles])

    store_full(zpath)  # warm-up: first use imports xarray/dask (one-time cost)
    store_full_values(zpath)
    (t_pt_full, ref), (t_z_full, got), (t_s_full, _got_s), (t_raw_full, raw), (t_z_vals, got_v) = (
        median_times(
            [
                pt_full,
                lambda: store_full(zpath),
                lambda: store_full(spath),
                raw_full,
                lambda: store_full_values(zpath),
            ],
            args.repeat,
        )
    )
    assert np.array_equal(got, got_v), "Store.read and DataArray.values differ"
    assert np.allclose(got.astype(np.float32), ref, atol=2e-2), "store read mismatch"
    assert raw.size >= got.size  # the last chunk file holds a whole (partly unused) chunk

    # ------------------------------------------------------- 10% subset read
    value = 3
    sel_ids = ids[skin == value]

    def pt_subset():
        return np.stack(
            [
                torch.load(pt_dir / f"embedding_{int(i):012d}.pt")["query_embeddings"].numpy()
                for i in sel_ids
            ]
        )

    def store_subset(path: Path):
        with Store.open(str(path)) as st:
            return st.sel(skin=value).query_embeddings.values

    def store_subset_da(path: Path):
        with Store.open(str(path)) as st:
            return st.query_embeddings.sel(skin=value).values

    def store_subset_read(path: Path):
        with Store.open(str(path)) as st:
            return st.read("query_embeddings", skin=value)

    (
        (t_pt_sub, ref_sub),
        (t_z_sub, got_sub),
        (t_s_sub, got_s_sub),
        (t_z_sub_da, got_da),
        (t_z_sub_rd, got_rd),
    ) = median_times(
        [
            pt_subset,
            lambda: store_subset(zpath),
            lambda: store_subset(spath),
            lambda: store_subset_da(zpath),
            lambda: store_subset_read(zpath),
        ],
        args.repeat,
    )
    assert got_sub.shape == ref_sub.shape == got_s_sub.shape == got_da.shape == got_rd.shape
    assert np.allclose(got_sub.astype(np.float32), ref_sub, atol=2e-2), "store subset mismatch"
    assert np.array_equal(got_sub, got_da) and np.array_equal(got_sub, got_rd)

    # ---------------- the card line: lazy views vs Store.read (medians of 7, same run)
    def store_subset_read_f32(path: Path):  # what the views do: read + decode float16 -> float32
        return store_subset_read(path).astype(np.float32)

    card_fns = [
        lambda: store_subset_read(zpath),
        lambda: store_subset_da(zpath),
        lambda: store_subset(zpath),
        lambda: store_subset_read_f32(zpath),
    ]
    (t_card_rd, _), (t_card_da, _), (t_card_ds, _), (t_card_rd32, _) = median_times(card_fns, 7)
    # CPU time of the same calls (this process, all threads): less disturbed
    # than wall time when other processes share the CPU
    cpu_times: list[list[float]] = [[], [], []]
    for _ in range(7):
        for k, fn in enumerate(card_fns[:3]):
            cpu_times[k].append(_cpu(fn))
    cpu_card = [statistics.median(t) for t in cpu_times]

    # ------------------------------------------------------------------ report
    mb = 2**20
    print(
        f"embstore store_io benchmark: N={n} images, batch={args.batch}, subset={len(sel_ids)} rows "
        f"(skin={value}), writes: medians of {args.write_repeat}, reads: medians of {args.repeat}; "
        f"float16 decoder: {DECODER}"
    )
    print(f"{'':34s}{'time s':>9s}{'MB':>9s}")
    print(
        "write times of each repeat (s): "
        + ", ".join(f"{k} " + "/".join(f"{t:.2f}" for t in v) for k, v in write_times.items())
    )
    print(f"{'per-file torch.save write':34s}{t_pt_write:9.3f}{b_pt / mb:9.1f}")
    print(f"{'store write (zarr)':34s}{t_z_write:9.3f}{b_z / mb:9.1f}")
    print(f"{'store write (sharded)':34s}{t_s_write:9.3f}{b_s / mb:9.1f}")
    print(f"{'per-file full read':34s}{t_pt_full:9.4f}")
    print(f"{'store full read (Store.read)':34s}{t_z_full:9.4f}")
    print(f"{'store full read (lazy .values)':34s}{t_z_vals:9.4f}")
    print(f"{'sharded full read':34s}{t_s_full:9.4f}")
    print(f"{'raw np.fromfile full read':34s}{t_raw_full:9.4f}")
    print(f"{'per-file subset read':34s}{t_pt_sub:9.4f}")
    print(f"{'store subset read (Store.sel)':34s}{t_z_sub:9.4f}")
    print(f"{'sharded subset read (Store.sel)':34s}{t_s_sub:9.4f}")
    print(f"{'store subset read (DataArray.sel)':34s}{t_z_sub_da:9.4f}")
    print(f"{'store subset read (Store.read)':34s}{t_z_sub_rd:9.4f}")
    print()

    def line(label: str, value: float, goal: str, ok: bool | None, extra: str = "") -> None:
        verdict = "" if ok is None else ("met" if ok else "NOT met")
        print(f"  {label:38s}{value:8.3f}x  [{goal:>6s}]  {verdict:8s}{extra}")

    print("ratios [goal] (store = unsharded default; sharded = inner_chunk_rows=1, no goal):")
    line(
        "write speed store/baseline",
        t_pt_write / t_z_write,
        ">= 1",
        t_pt_write / t_z_write >= 1,
        f"  sharded {t_pt_write / t_s_write:.2f}x",
    )
    line(
        "bytes store/baseline",
        b_z / b_pt,
        "<= 0.55",
        b_z / b_pt <= 0.55,
        f"  sharded {b_s / b_pt:.3f}x",
    )
    line(
        "full read speedup vs baseline",
        t_pt_full / t_z_full,
        ">= 15",
        t_pt_full / t_z_full >= 15,
        f"  sharded {t_pt_full / t_s_full:.1f}x",
    )
    line(
        "subset read speedup vs baseline",
        t_pt_sub / t_z_sub_rd,
        ">= 20",
        t_pt_sub / t_z_sub_rd >= 20,
        f"  sharded (Store.sel) {t_pt_sub / t_s_sub:.1f}x",
    )
    line(
        "full read time / raw fromfile",
        t_z_full / t_raw_full,
        "<= 2",
        t_z_full / t_raw_full <= 2,
        f"  sharded {t_s_full / t_raw_full:.2f}x",
    )
    line(
        "card line DataArray.sel(skin).values / read",
        t_card_da / t_card_rd,
        "<= 2",
        t_card_da / t_card_rd <= 2,
    )
    line(
        "Store.sel(skin).<var>.values / read",
        t_card_ds / t_card_rd,
        "<= 2",
        t_card_ds / t_card_rd <= 2,
    )
    line("card line / (read + float32 decode)", t_card_da / t_card_rd32, "info", None)
    line(
        "card line CPU time / read CPU time",
        cpu_card[1] / cpu_card[0],
        "info",
        None,
        f"  Store.sel form {cpu_card[2] / cpu_card[0]:.2f}x; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
    )
    line("subset speedup, Store.sel(...).values", t_pt_sub / t_z_sub, "info", None)
    line("subset speedup, DataArray.sel(...).values", t_pt_sub / t_z_sub_da, "info", None)
    line("full read speedup, lazy .values", t_pt_full / t_z_vals, "info", None)
    line("full read / raw, lazy .values", t_z_vals / t_raw_full, "info", None)
    if args.dir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
