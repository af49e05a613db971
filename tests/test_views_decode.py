"""The views' float16 -> float32 decoding (embstore.store.decode): exact and block-wise.

* every float16 bit pattern decodes to NumPy's ``astype(float32)``, bit for bit
  (normal, subnormal, signed zeros; blocks with infinities / NaN payloads);
* a CPU that flushes subnormals to zero falls back to NumPy's cast;
* :func:`read_decoded` reads in blocks, in order, from the calling thread,
  overlapping with the decode thread, and keeps any order and repeats;
* a view of a float16 store reads through it (one reader call per block).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from embstore import Store
from embstore.store import decode
from embstore.store.decode import float16_to_float32, read_decoded

ALL16 = np.arange(2**16, dtype=np.uint16).view(np.float16)


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint32)


def test_every_finite_float16_is_exact():
    finite = ALL16[np.isfinite(ALL16)]
    got = float16_to_float32(finite)
    np.testing.assert_array_equal(_bits(got), _bits(finite.astype(np.float32)))
    assert np.signbit(float16_to_float32(np.array([-0.0], np.float16)))[0]


def test_blocks_with_inf_and_nan_keep_numpy_results():
    # all 65536 patterns in one array: the blocks holding exponent-31 values use NumPy's cast
    got = float16_to_float32(ALL16)
    np.testing.assert_array_equal(_bits(got), _bits(ALL16.astype(np.float32)))
    x = np.ones(3 * decode.BLOCK_VALUES, dtype=np.float16)
    x[decode.BLOCK_VALUES + 5] = np.inf
    x[-1] = -np.nan
    np.testing.assert_array_equal(_bits(float16_to_float32(x)), _bits(x.astype(np.float32)))


def test_flushed_subnormals_fall_back_to_numpy(monkeypatch):
    monkeypatch.setattr(decode, "_subnormals_flushed", lambda: True)
    sub = ALL16[(ALL16.view(np.uint16) & 0x7C00) == 0]  # zeros and subnormals
    np.testing.assert_array_equal(_bits(float16_to_float32(sub)), _bits(sub.astype(np.float32)))


def test_shapes_out_and_errors():
    x = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float16)
    out = np.empty((3, 4, 5), dtype=np.float32)
    assert float16_to_float32(x, out) is out
    np.testing.assert_array_equal(out, x.astype(np.float32))
    np.testing.assert_array_equal(float16_to_float32(x[:, ::2]), x[:, ::2].astype(np.float32))
    assert float16_to_float32(np.zeros((0, 4), np.float16)).shape == (0, 4)
    with pytest.raises(ValueError, match="float16"):
        float16_to_float32(x.astype(np.float32))
    with pytest.raises(ValueError, match="out must be"):
        float16_to_float32(x, np.empty((3, 4), np.float32))


@settings(max_examples=60, deadline=None)
@given(hst.lists(hst.integers(0, 2**16 - 1), min_size=0, max_size=300))
def test_random_patterns_round_trip(patterns):
    x = np.array(patterns, dtype=np.uint16).view(np.float16)
    np.testing.assert_array_equal(_bits(float16_to_float32(x)), _bits(x.astype(np.float32)))


@pytest.mark.parametrize("threads", [0, 1])
def test_read_decoded_blocks_order_and_reader_thread(monkeypatch, threads):
    monkeypatch.setattr(decode, "DECODE_THREADS", threads)
    monkeypatch.setattr(decode, "_spare_core", lambda: True)  # also on a busy test machine
    data = np.random.default_rng(1).standard_normal((50, 3, 4)).astype(np.float16)
    pos = np.array([49, 0, 7, 7, 30, 2, 11, 48, 1, 5, 33])
    calls = []

    def read(p):
        calls.append((threading.get_ident(), p.tolist()))
        return data[p]

    got = read_decoded(read, pos, (3, 4), block_bytes=3 * 12 * 2)  # 3 rows a block
    np.testing.assert_array_equal(got, data[pos].astype(np.float32))
    assert [c[1] for c in calls] == [pos[i : i + 3].tolist() for i in range(0, len(pos), 3)]
    assert {c[0] for c in calls} == {threading.get_ident()}  # read only from the caller


def test_read_decoded_does_not_wait_for_a_busy_decode_thread(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1)
    gate = threading.Event()
    pool.submit(gate.wait, 30)  # the decode thread is busy elsewhere (another caller)
    monkeypatch.setattr(decode, "_decode_pool", lambda: pool)
    data = np.random.default_rng(3).standard_normal((64, 5)).astype(np.float16)
    try:
        got = read_decoded(lambda p: data[p], np.arange(64)[::-1], (5,), block_bytes=40)
        assert not gate.is_set()  # finished while the thread was still busy
    finally:
        gate.set()
        pool.shutdown()
    np.testing.assert_array_equal(got, data[::-1].astype(np.float32))


def test_no_decode_thread_on_a_busy_machine(monkeypatch):
    monkeypatch.setattr(decode, "DECODE_THREADS", 1)
    monkeypatch.setattr(decode, "_spare_core", lambda: False)
    assert decode._decode_pool() is None
    monkeypatch.setattr(decode, "_spare_core", lambda: True)
    assert decode._decode_pool() is not None


def test_forked_child_makes_its_own_decode_thread(monkeypatch):
    monkeypatch.setattr(decode, "_spare_core", lambda: True)
    monkeypatch.setattr(decode, "DECODE_THREADS", 1)
    parent = decode._decode_pool()
    monkeypatch.setattr(decode, "_POOL", parent)
    decode._forget_pool()  # what the at-fork hook runs in a child
    assert decode._POOL is None and decode._decode_pool() is not parent


def test_read_decoded_reader_error_propagates(monkeypatch):
    monkeypatch.setattr(decode, "DECODE_THREADS", 1)
    monkeypatch.setattr(decode, "_spare_core", lambda: True)
    data = np.zeros((10, 2), np.float16)

    def read(p):
        if p[0] >= 6:
            raise OSError("disk gone")
        return data[p]

    with pytest.raises(OSError, match="disk gone"):
        read_decoded(read, np.arange(10), (2,), block_bytes=8)


def test_view_of_float16_store_reads_in_blocks(tmp_path, monkeypatch):
    path = str(tmp_path / "r.zarr")
    rng = np.random.default_rng(2)
    q = rng.standard_normal((40, 6, 8)).astype(np.float16)
    with Store.create(path, variables={"q": ("query", "hidden")}) as st:
        st.append(np.arange(40), {"q": q}, coords={"skin": np.arange(40) % 3})
    st = Store.open(path)
    monkeypatch.setattr(decode, "READ_BLOCK_BYTES", 4 * 6 * 8 * 2)  # 4 rows a block
    calls = []
    orig = st._backend.read_points
    monkeypatch.setattr(st._backend, "read_points", lambda n, p: calls.append(len(p)) or orig(n, p))
    got = st.q.sel(skin=[0, 2]).values
    want = np.flatnonzero(np.arange(40) % 3 != 1)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, q[want].astype(np.float32))
    assert calls == [4] * (len(want) // 4) + ([len(want) % 4] if len(want) % 4 else [])
    np.testing.assert_array_equal(st.sel(skin=1).q.values, q[np.arange(1, 40, 3)])
