"""The raw-read fast path returns exactly what zarr-python returns."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embstore.store.backends.base import RowTake
from embstore.store.rawread import RawZarrArray


def make(path, n, chunk, inner=None, dtype="float16", trailing=(3, 2), written=None):
    shards = None
    chunks = (chunk,) + trailing
    if inner is not None:
        shards, chunks = (chunk,) + trailing, (inner,) + trailing
    z = zarr.create_array(
        str(path),
        shape=(n,) + trailing,
        chunks=chunks,
        shards=shards,
        dtype=dtype,
        compressors=None,
        fill_value=0,
    )
    data = (np.arange(n * int(np.prod(trailing))).reshape((n,) + trailing) % 1000).astype(dtype)
    stop = n if written is None else written
    if stop:
        z[:stop] = data[:stop]
    return z


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(1, 40),
    chunk=st.integers(1, 8),
    sharded=st.booleans(),
    data=st.data(),
)
def test_matches_zarr(tmp_path_factory, n, chunk, sharded, data):
    path = tmp_path_factory.mktemp("r") / "a"
    inner = None
    if sharded:
        inner = data.draw(st.sampled_from([d for d in range(1, chunk + 1) if chunk % d == 0]))
    written = data.draw(st.integers(0, n))
    z = make(path, n, chunk, inner, written=written)
    raw = RawZarrArray.open(str(path))
    assert raw is not None
    expected = np.asarray(z[:])
    a = data.draw(st.integers(0, n))
    b = data.draw(st.integers(a, n))
    np.testing.assert_array_equal(raw.read_range(a, b), expected[a:b])
    pos = np.array(data.draw(st.lists(st.integers(0, n - 1), max_size=12)), dtype=np.int64)
    np.testing.assert_array_equal(raw.read_positions(pos), expected[pos])


def test_unsupported_arrays_fall_back(tmp_path):
    z = zarr.create_array(str(tmp_path / "zstd"), shape=(4, 2), chunks=(2, 2), dtype="float32")
    assert RawZarrArray.open(str(tmp_path / "zstd")) is None  # default zstd compression
    zarr.create_array(str(tmp_path / "s"), shape=(4,), chunks=(2,), dtype=str)
    assert RawZarrArray.open(str(tmp_path / "s")) is None
    zarr.create_array(
        str(tmp_path / "t"), shape=(4, 6), chunks=(2, 3), dtype="float32", compressors=None
    )
    assert RawZarrArray.open(str(tmp_path / "t")) is None  # trailing dims split in chunks
    assert RawZarrArray.open(str(tmp_path / "missing")) is None
    assert z.shape == (4, 2)


def test_truncated_chunk_file_raises(tmp_path):
    make(tmp_path / "a", 8, 4, dtype="float32")
    chunk_file = tmp_path / "a" / "c" / "0" / "0" / "0"
    chunk_file.write_bytes(chunk_file.read_bytes()[:10])
    raw = RawZarrArray.open(str(tmp_path / "a"))
    with pytest.raises(OSError):
        raw.read_range(0, 4)


def test_rowtake_blocks():
    base = np.arange(20).reshape(10, 2)
    t = RowTake(lambda p: base[p], np.array([9, 0, 4]), (2,), base.dtype)
    assert t[0:2].tolist() == [[18, 19], [0, 1]]
    assert t[2].tolist() == [8, 9]
    assert t[1:3, 1:].tolist() == [[1], [9]]
    assert t[0:0].shape == (0, 2)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(1, 30),
    chunk=st.integers(1, 6),
    dtype=st.sampled_from(["float16", "float32", "int64", "bool"]),
)
def test_direct_chunk_writes_read_back_by_zarr(tmp_path_factory, n, chunk, dtype):
    path = tmp_path_factory.mktemp("w") / "a"
    z = zarr.create_array(
        str(path), shape=(n, 2), chunks=(chunk, 2), dtype=dtype, compressors=None, fill_value=0
    )
    raw = RawZarrArray.open(str(path))
    values = (np.arange(n * 2).reshape(n, 2) % 7).astype(dtype)
    raw.write_chunks(0, values)
    np.testing.assert_array_equal(np.asarray(zarr.open_array(str(path))[:]), values)
    assert not list(path.rglob("*.tmp"))
    if chunk > 1:
        with pytest.raises(ValueError):
            raw.write_chunks(1, values[:1])  # not on a chunk boundary
    assert z.shape == (n, 2)


@pytest.mark.parametrize("sharded", [False, True])
def test_chunk_files_written_in_pieces(tmp_path, monkeypatch, sharded):
    """A chunk larger than one write piece (odd piece size) is written whole."""
    import embstore.store.rawread as rawread

    monkeypatch.setattr(rawread, "WRITE_PIECE_BYTES", 5)
    values = np.arange(9 * 3, dtype="float32").reshape(9, 3) / 7
    shards = {"shards": (4, 3), "chunks": (1, 3)} if sharded else {"chunks": (4, 3)}
    zarr.create_array(
        str(tmp_path / "a"), shape=(9, 3), dtype="float32", compressors=None, fill_value=0, **shards
    )
    raw = RawZarrArray.open(str(tmp_path / "a"))
    assert raw.can_write
    raw.write_chunks(0, values)
    np.testing.assert_array_equal(np.asarray(zarr.open_array(str(tmp_path / "a"))[:]), values)


def test_write_that_makes_no_progress_raises():
    from embstore.store.rawread import _write_in_pieces

    class Stuck:
        name = "stuck.bin"

        def write(self, data):
            return 0

    with pytest.raises(OSError, match="stuck.bin"):
        _write_in_pieces(Stuck(), memoryview(b"abc"))
