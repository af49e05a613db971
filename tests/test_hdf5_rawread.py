"""The direct HDF5 row reader (embstore.store.backends.h5raw) against h5py, and Store.read on HDF5."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embstore import Store
from embstore.store.backends.h5raw import RawH5Rows


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 60),
    chunk=st.integers(1, 16),
    trailing=st.sampled_from([(), (3,), (2, 5)]),
    dtype=st.sampled_from(["float16", "float32", "int64", "uint8", "int8"]),
    seed=st.integers(0, 2**31 - 1),
    written=st.floats(0.3, 1.0),
)
def test_raw_reader_equals_h5py(tmp_path_factory, n, chunk, trailing, dtype, seed, written):
    rng = np.random.default_rng(seed)
    path = str(tmp_path_factory.mktemp("raw") / "a.h5")
    data = (rng.normal(size=(n,) + trailing) * 50).astype(dtype)
    upto = max(1, int(n * written))  # rows past ``upto`` stay unwritten (unallocated chunks)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(
            "x",
            shape=(n,) + trailing,
            chunks=(chunk,) + trailing,
            dtype=dtype,
            maxshape=(None,) + trailing,
        )
        ds[:upto] = data[:upto]
    with h5py.File(path, "r") as f:
        ds = f["x"]
        raw = RawH5Rows.build(ds)
        assert raw is not None
        pos = np.unique(rng.integers(0, n, rng.integers(0, n + 1)))
        np.testing.assert_array_equal(raw.read(pos), ds[:][pos])
        a, b = sorted(rng.integers(0, n + 1, 2).tolist())
        np.testing.assert_array_equal(raw.read_range(a, b), ds[a:b])
        raw.close()


def test_raw_reader_declines_what_it_cannot_read(tmp_path):
    path = str(tmp_path / "b.h5")
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "gz", data=np.arange(20.0).reshape(10, 2), chunks=(4, 2), compression="gzip"
        )
        f.create_dataset("contig", data=np.arange(10.0))
        f.create_dataset("split", data=np.arange(20.0).reshape(10, 2), chunks=(4, 1))
        f.create_dataset(
            "s", data=np.array(["a", "b"], dtype=object), dtype=h5py.string_dtype(), chunks=(1,)
        )
    with h5py.File(path, "r") as f:
        for name in ("gz", "contig", "split", "s"):
            assert RawH5Rows.build(f[name]) is None, name


@pytest.mark.parametrize("frac", [0.01, 0.1, 0.5])
def test_store_read_hdf5_equals_zarr(tmp_path, frac):
    rng = np.random.default_rng(0)
    n = 300
    data = rng.normal(size=(n, 5, 8)).astype(np.float32)
    flags = rng.random(n) < 0.5
    mask = rng.random(n) < frac
    out = {}
    for ext in (".zarr", ".h5"):
        p = str(tmp_path / f"s{ext}")
        with Store.create(p, variables={"e": ("q", "h")}, chunk_rows=16) as s:
            s.append(list(range(n)), {"e": data}, coords={"flag": flags, "skin": np.arange(n) % 10})
        with Store.open(p) as s:
            out[ext] = (
                s.read("e", mask=mask),
                s.read("e", skin=3),
                s.read("e", ids=[7, 3, 250, 3]),
                s.coords["flag"].to_numpy(),
            )
    for a, b in zip(out[".zarr"], out[".h5"]):
        np.testing.assert_array_equal(a, b)
    assert out[".h5"][3].dtype == bool
    np.testing.assert_array_equal(out[".h5"][1], data[np.arange(n) % 10 == 3].astype(np.float16))


def test_compressed_store_reads_by_chunk_spans(tmp_path):
    """Datasets the direct reader declines (gzip) are read per chunk span, same values."""
    rng = np.random.default_rng(1)
    data = rng.normal(size=(90, 4)).astype(np.float32)
    p = str(tmp_path / "z.h5")
    with Store.create(
        p, variables={"e": ("h",)}, dtypes={"e": "float32"}, chunk_rows=8, compressor="zstd"
    ) as s:
        s.append(list(range(90)), {"e": data}, coords={"skin": np.arange(90) % 10})
    with Store.open(p) as s:
        assert s._backend.h5["e"].compression == "gzip"
        assert s._backend._raw_reader("e") is None
        np.testing.assert_array_equal(s.read("e", skin=3), data[np.arange(90) % 10 == 3])
        np.testing.assert_array_equal(s.read("e", ids=[89, 0, 45]), data[[89, 0, 45]])
