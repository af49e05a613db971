"""The views' float16 -> float32 decoding (embstore.store.decode): exact and block-wise.

* every float16 bit pattern decodes to NumPy's ``astype(float32)``, bit for bit
  (normal, subnormal, signed zeros; blocks with infinities / NaN payloads);
* a CPU that flushes subnormals to zero falls back to NumPy's cast;
* :func:`read_decoded` reads in blocks, in order, from the calling thread,
  overlapping with the decode thread, and keeps any order and repeats;
* a view of a float16 store reads through it (one reader call per block).
"""

from __future__ import annotations

import os
import shutil
import sysconfig
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


NATIVE_MISSING = "the native decoder was not built (no C compiler at install time)"


@pytest.fixture(params=["numpy", "native"], autouse=True)
def decoder(request, monkeypatch):
    """Run every test of this module with both decoders (native: when built)."""
    if request.param == "native" and decode._halfconv is None:
        pytest.skip(NATIVE_MISSING)
    monkeypatch.setattr(decode, "USE_NATIVE", request.param == "native")
    return request.param


@pytest.fixture
def native(decoder):
    """The native module (its tests run once, under the native decoder)."""
    if decoder != "native" or decode._halfconv is None:
        pytest.skip("a test of the native module")
    return decode._halfconv


def test_native_module_is_built_where_a_compiler_exists(decoder):
    """setup.py marks the extension optional: a failed build must not go unnoticed."""
    headers = os.path.join(sysconfig.get_paths()["include"], "Python.h")
    if decoder != "numpy":
        pytest.skip("checked once")
    if not (shutil.which("cc") or shutil.which("gcc")) or not os.path.exists(headers):
        pytest.skip(f"no C compiler, or no Python headers at {headers}")
    assert decode._halfconv is not None, "pip install -e . builds embstore.store._halfconv"
    assert decode._halfconv.kernel() in {"f16c", "portable"}


def test_decoder_name_says_which_path_runs(decoder):
    assert decode._decoder() == (
        "numpy" if decoder == "numpy" else f"native ({decode._halfconv.kernel()})"
    )


@pytest.mark.parametrize("portable", [False, True])
def test_native_kernels_are_exact_at_any_offset(native, portable):
    for offset in range(9):  # the F16C kernel converts groups of 8, then a tail
        src = ALL16[offset:]
        out = np.empty(src.shape, dtype=np.float32)
        native.decode(src, out, portable=portable)
        np.testing.assert_array_equal(_bits(out), _bits(src.astype(np.float32)))


def test_native_module_checks_its_buffers(native):
    x = np.ones(8, dtype=np.float16)
    with pytest.raises(ValueError, match="src must hold float16"):
        native.decode(x.astype(np.float32), np.empty(8, np.float32))
    with pytest.raises(ValueError, match="dst must hold float32"):
        native.decode(x, np.empty(8, np.float64))
    with pytest.raises(ValueError, match="src holds 8 values but dst 7"):
        native.decode(x, np.empty(7, np.float32))
    with pytest.raises(ValueError, match="contiguous"):
        native.decode(np.ones(16, np.float16)[::2], np.empty(8, np.float32))
    frozen = np.empty(8, np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        native.decode(x, frozen)


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
