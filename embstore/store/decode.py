"""Fast, exact float16 -> float32 decoding of stored rows (what the views compute on).

Hidden states are stored as float16; the store's xarray views show them as
float32 (see :func:`embstore.store.lazyrows.decoded_dtype`). NumPy casts
float16 to float32 one value at a time (about 2 ns a value on the
development VM), which made ``.values`` of a view 3x slower than the read
itself. :func:`float16_to_float32` does the same conversion with four
vectorised NumPy operations over blocks that stay in the CPU cache, about
3x faster, bit for bit equal to ``astype(numpy.float32)``:

1. sign-extend the 16 bits to int32 (bits 16..31 = the sign bit);
2. shift left by 13: exponent and mantissa land where float32 keeps them
   (bits 13..27), the sign in bit 28..31;
3. keep bit 31 and bits 13..27 (mask ``0x8FFFE000``);
4. read the bits as float32 and multiply by ``2**112`` (float32's exponent
   bias minus float16's): exact for normal and subnormal float16 values.

Blocks holding an infinity or NaN (exponent bits all set), and every block
when the CPU flushes subnormal inputs to zero (a library built with
``-ffast-math`` can switch that on), use NumPy's own cast instead, so the
result is always NumPy's.

When the optional native module ``embstore.store._halfconv`` was built at
install time (``setup.py``; it needs a C compiler), the conversion runs there
instead: eight values per F16C instruction on x86 CPUs that have it (about 0.4
ns a value on the development VM, where the copy of the float32 result alone
takes 0.45 ns: the conversion then costs what writing the result costs), or a
vectorised portable kernel elsewhere; bit for bit the same results. :data:`DECODER`
names the path in use.

:func:`read_decoded` reads rows in blocks (1 MiB of float16 each) and hands
each block to a decode thread while it reads the next one, so reading and
decoding overlap on two cores (when a core is idle); the float16 rows are never held all at once
(the peak memory of a decoded read is the float32 result plus a few blocks).

Examples
--------
>>> import numpy as np
>>> h = np.array([1.5, -2.0, 6e-8, 65504.0, -0.0, np.inf], dtype=np.float16)
>>> float16_to_float32(h).tolist()
[1.5, -2.0, 5.960464477539063e-08, 65504.0, -0.0, inf]
>>> bool(np.array_equal(float16_to_float32(h), h.astype(np.float32)))
True
"""

from __future__ import annotations

import importlib
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from types import ModuleType

import numpy as np


def _native_module() -> ModuleType | None:
    """The optional native decoder (setup.py builds it when a C compiler is present)."""
    try:
        return importlib.import_module(f"{__package__}._halfconv")
    except ImportError:  # pragma: no cover - an install without a C compiler
        return None


_halfconv = _native_module()

__all__ = [
    "BLOCK_VALUES",
    "DECODER",
    "DECODE_THREADS",
    "MAX_PENDING",
    "READ_BLOCK_BYTES",
    "float16_to_float32",
    "read_decoded",
]

#: values decoded per step (256 KiB of float32: about the L2 cache; smaller
#: steps cost more in per-call overhead, larger ones spill the cache)
BLOCK_VALUES = 1 << 16
#: float16 bytes read per call of the row reader in :func:`read_decoded`
READ_BLOCK_BYTES = 1 << 20

#: decode threads beside the reading thread (0: decode in the reading thread)
DECODE_THREADS = 1 if (os.cpu_count() or 1) > 1 else 0
#: read blocks waiting for the decode thread before the reading thread decodes one itself
MAX_PENDING = 4

#: whether :func:`float16_to_float32` may use the native module (when it is built)
USE_NATIVE = _halfconv is not None

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()

# sign (bit 31) and exponent + mantissa (bits 13..27) after the shift, as int32
_MASK = np.uint32(0x8FFFE000).view(np.int32)
# float32 exponent bias (127) minus float16 exponent bias (15)
_SCALE = np.float32(2.0**112)
# exponent bits of a float16: all set means infinity or NaN
_EXP16 = 0x7C00


def _decoder() -> str:
    """Name of the float16 decoder in use (see :data:`DECODER`)."""
    if USE_NATIVE and _halfconv is not None:
        return f"native ({_halfconv.kernel()})"
    return "numpy"


#: the float16 decoder: ``"native (f16c)"``, ``"native (portable)"`` or ``"numpy"``
DECODER = _decoder()


def _subnormals_flushed() -> bool:
    """Whether the CPU flushes subnormal float32 inputs to zero (DAZ set by some library)."""
    tiny = np.ones(1, dtype=np.uint32).view(np.float32)  # the smallest subnormal float32
    return bool(np.multiply(tiny, _SCALE)[0] == 0)


def float16_to_float32(src: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Convert float16 values to float32, exactly (as ``src.astype(numpy.float32)``).

    Parameters
    ----------
    src : numpy.ndarray
        float16 values, any shape.
    out : numpy.ndarray, optional
        C-contiguous float32 array of ``src``'s shape to write into.

    Returns
    -------
    numpy.ndarray
        ``out`` (a new array when not given).

    Raises
    ------
    ValueError
        ``src`` is not float16 or ``out`` does not fit.

    Examples
    --------
    >>> import numpy as np
    >>> float16_to_float32(np.array([[0.5, -3.0]], dtype=np.float16))
    array([[ 0.5, -3. ]], dtype=float32)
    """
    src = np.ascontiguousarray(src)
    if src.dtype != np.float16:
        raise ValueError(f"float16_to_float32 takes float16 values, got {src.dtype}")
    if out is None:
        out = np.empty(src.shape, dtype=np.float32)
    elif out.dtype != np.float32 or out.shape != src.shape or not out.flags.c_contiguous:
        raise ValueError(
            f"out must be a C-contiguous float32 array of shape {src.shape}, "
            f"got {out.dtype} {out.shape}"
        )
    flat = src.reshape(-1)
    dst = out.reshape(-1)
    if flat.size == 0:
        return out
    if USE_NATIVE and _halfconv is not None:
        _halfconv.decode(flat, dst)  # exact, GIL released
        return out
    if _subnormals_flushed():  # the multiply below would lose subnormal values
        np.copyto(dst, flat)
        return out
    h = flat.view(np.int16)
    u = flat.view(np.uint16)
    w = dst.view(np.int32)
    exp = np.empty(min(BLOCK_VALUES, flat.size), dtype=np.uint16)
    for s in range(0, flat.size, BLOCK_VALUES):
        e = s + BLOCK_VALUES
        hs, ws, fs = h[s:e], w[s:e], dst[s:e]
        es = exp[: len(hs)]
        np.bitwise_and(u[s:e], _EXP16, out=es)
        if es.max() == _EXP16:  # an infinity or NaN: NumPy's cast keeps its payload
            np.copyto(fs, flat[s:e])
            continue
        np.copyto(ws, hs, casting="unsafe")  # sign-extend to int32
        np.left_shift(ws, 13, out=ws)
        np.bitwise_and(ws, _MASK, out=ws)
        np.multiply(fs, _SCALE, out=fs)
    return out


def _forget_pool() -> None:
    """In a forked child: the parent's decode thread does not exist here."""
    global _POOL, _POOL_LOCK
    _POOL = None
    _POOL_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _spare_core() -> bool:
    """Whether a core is idle for the decode thread (1-minute load average below cores - 1).

    On a busy machine a second thread only competes with the reading thread
    for the GIL and the CPU (measured: slower than decoding in the reading
    thread), so it is used only when a core is free.
    """
    try:
        return os.getloadavg()[0] <= (os.cpu_count() or 1) - 1
    except OSError:  # pragma: no cover - platforms without a load average
        return True


def _decode_pool() -> ThreadPoolExecutor | None:
    """The shared decode thread (None on a one-core or busy machine)."""
    global _POOL
    if DECODE_THREADS < 1 or not _spare_core():
        return None
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(
                max_workers=DECODE_THREADS, thread_name_prefix="embstore-decode"
            )
        return _POOL


def read_decoded(
    read: Callable[[np.ndarray], np.ndarray],
    positions: np.ndarray,
    rest: tuple[int, ...],
    block_bytes: int | None = None,
) -> np.ndarray:
    """Read float16 rows in blocks and decode each into one float32 result.

    The calling thread reads the blocks (``read`` is only ever called from
    it, in order); the decode thread converts them while the next ones are
    read, so reading and decoding overlap on two cores. The calling thread
    never waits for the decode thread to be scheduled: when more than
    :data:`MAX_PENDING` blocks wait, and after the last read, it decodes
    waiting blocks itself (on a busy machine it then does all the work, as
    without the thread).

    Parameters
    ----------
    read : callable
        ``read(positions) -> numpy.ndarray`` of float16 rows at those
        storage positions (any order), shape ``(len(positions), *rest)``.
    positions : numpy.ndarray
        Storage row positions, in result order.
    rest : tuple of int
        Trailing shape of one row.
    block_bytes : int, optional
        float16 bytes per call of ``read`` (at least one row; default
        :data:`READ_BLOCK_BYTES`).

    Returns
    -------
    numpy.ndarray
        float32, shape ``(len(positions), *rest)``.

    Examples
    --------
    >>> import numpy as np
    >>> data = np.arange(12, dtype=np.float16).reshape(6, 2)
    >>> read_decoded(lambda p: data[p], np.array([5, 0, 3]), (2,), block_bytes=4)[:, 1].tolist()
    [11.0, 1.0, 7.0]
    """
    positions = np.asarray(positions, dtype=np.int64)
    rest = tuple(int(r) for r in rest)
    out = np.empty((len(positions),) + rest, dtype=np.float32)
    row_bytes = 2 * int(np.prod(rest, dtype=np.int64))
    block = READ_BLOCK_BYTES if block_bytes is None else int(block_bytes)
    step = max(1, block // max(1, row_bytes))
    starts = range(0, len(positions), step)
    pool = _decode_pool() if len(starts) > 1 else None
    if pool is None:
        for a in starts:
            float16_to_float32(read(positions[a : a + step]), out[a : a + step])
        return out
    ready: deque[tuple[np.ndarray, np.ndarray]] = deque()  # read blocks not yet decoded

    def drain() -> None:  # decode read blocks until none is left (either thread)
        while True:
            try:
                rows, dst = ready.popleft()  # atomic: each block is decoded once
            except IndexError:
                return
            float16_to_float32(rows, dst)

    helper: Future[None] | None = None
    try:
        for a in starts:
            ready.append((read(positions[a : a + step]), out[a : a + step]))
            if helper is None or helper.done():
                if helper is not None:
                    helper.result()  # re-raise a decode error
                helper = pool.submit(drain)
            while len(ready) > MAX_PENDING:  # the decode thread lags: help it
                try:
                    rows, dst = ready.popleft()
                except IndexError:
                    break
                float16_to_float32(rows, dst)
        drain()  # whatever the decode thread has not taken yet
    except BaseException:
        ready.clear()  # the decode thread stops after its current block
        raise
    finally:
        # a helper that has not started is cancelled (its blocks were decoded
        # here); one that runs is finishing its last block: wait for it
        if helper is not None and not helper.cancel():
            wait([helper])
    if helper is not None and not helper.cancelled():
        helper.result()  # re-raise a decode error
    return out
