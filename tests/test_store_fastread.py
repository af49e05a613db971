"""Eager read fast paths and write-path speed-ups of the Store.

* :class:`embstore.store.lazyrows.RowArray`: ``.values`` and row-only indexing
  skip the dask graph and must give exactly what dask computes;
* :meth:`embstore.Store.read`: NumPy reads by ids / mask / labels;
* :class:`embstore.store.buffer.ChunkBuffer` with its reused gather array;
* local ``zarr.json`` resizes (``ZarrBackend._resize_local``) and
  :meth:`RawZarrArray.read_positions` with ``out=``.

Run for both backends where the behaviour is backend-independent.
"""

from __future__ import annotations

import os

import dask.array
import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st_

from embstore import Store
from embstore.errors import NonFiniteError, SelectionError, UnknownVariableError, ValidationError
from embstore.store.backends.zarr_backend import ZarrBackend
from embstore.store.buffer import ChunkBuffer
from embstore.store.lazyrows import RowArray, row_array
from embstore.store.rawread import RawZarrArray

VARS = {"emb": ("query", "hidden"), "logits": ("query", "class")}


def _fill(path: str, n: int = 23, chunk_rows: int = 4, batch: int = 5, seed: int = 0, **kw):
    rng = np.random.default_rng(seed)
    ids = np.arange(n) * 3 + 100
    emb = rng.normal(size=(n, 2, 6)).astype(np.float32)
    logits = rng.normal(size=(n, 2, 3)).astype(np.float32)
    skin = (np.arange(n) % 5) + 1
    light = np.where(np.arange(n) % 2 == 0, "well", "dim")
    with Store.create(
        path, variables=VARS, dtypes={"emb": "float32"}, chunk_rows=chunk_rows, **kw
    ) as st:
        for s in range(0, n, batch):
            sl = slice(s, s + batch)
            st.append(
                ids[sl],
                {"emb": emb[sl], "logits": logits[sl]},
                coords={"skin": skin[sl], "lighting": light[sl]},
            )
    return ids, emb, logits, skin, light


@pytest.fixture(params=[".zarr", ".h5", "sharded.zarr"])
def filled(request, tmp_path):
    suffix = request.param
    kw = {"inner_chunk_rows": 2} if suffix.startswith("sharded") else {}
    path = str(tmp_path / f"run{suffix}")
    return (path, *_fill(path, **kw))


# ------------------------------------------------------------------ RowArray
def test_values_fast_path_equals_dask_compute(filled):
    path, ids, emb, _logits, skin, light = filled
    with Store.open(path) as st:
        da_ = st.emb
        # views are lazily indexed (an xarray backend array); .chunk() gives plain dask
        assert da_.chunks is None
        fast = da_.values
        slow = da_.chunk({"image": 4}).data
        assert type(slow) is dask.array.Array
        np.testing.assert_array_equal(fast, emb)
        np.testing.assert_array_equal(slow.compute(), emb)
        # selection on the DataArray stays lazy and reads just those rows
        sub = da_.sel(skin=[2, 4], lighting="dim")
        want = (np.isin(skin, [2, 4])) & (light == "dim")
        assert sub.chunks is None
        np.testing.assert_array_equal(sub.values, emb[want])
        np.testing.assert_array_equal(sub.chunk().data.compute(), emb[want])
        np.testing.assert_array_equal(sub.image_id.values, ids[want])
        # Store.sel
        ds = st.sel(skin=3)
        np.testing.assert_array_equal(ds.emb.values, emb[skin == 3])
        np.testing.assert_array_equal(ds["logits"].values.shape, (int((skin == 3).sum()), 2, 3))
        # a second selection on a selection
        np.testing.assert_array_equal(ds.emb.isel(image=[1, 0]).values, emb[skin == 3][[1, 0]])


def test_views_mix_with_other_dask_arrays(filled):
    """A store view combines with a user's own dask arrays in xarray operations."""
    import xarray as xr

    path, _ids, emb, *_ = filled
    with Store.open(path) as st:
        view = st.emb
        other = xr.DataArray(dask.array.ones(view.shape, chunks=5), dims=view.dims)
        both = xr.apply_ufunc(np.add, view.drop_vars(list(view.coords)), other, dask="parallelized")
        np.testing.assert_allclose(both.values, emb + np.float32(1), rtol=1e-6)
        np.testing.assert_array_equal(xr.where(other > 0, view, 0).values, emb)


def test_row_indexing_variants_match_numpy(filled):
    path, _ids, emb, *_ = filled
    with Store.open(path) as st:
        backend = st._backend  # the backend object (st.backend is its name)
        n = len(emb)
        x = row_array(
            lambda p: backend.read_points("emb", p),
            np.arange(n),
            emb.shape[1:],
            emb.dtype,
            block_rows=4,
            token="emb",
        )
        mask = np.arange(n) % 3 == 1
        keys = [
            slice(2, 17, 3),
            slice(None, None, -1),
            np.array([5, 5, 0, n - 1, 2]),
            [4, 1],
            mask,
            (slice(3, 9), slice(None), slice(None)),
            (np.array([7, 2]), Ellipsis),
        ]
        for key in keys:
            y = x[key]
            assert isinstance(y, RowArray), key
            want = emb[key]
            np.testing.assert_array_equal(np.asarray(y), want)
            np.testing.assert_array_equal(y.compute(), want)
        # other keys fall back to dask and stay correct
        for key in [(slice(None), 1), 3, (np.array([1, 2]), slice(None), 0)]:
            y = x[key]
            assert not isinstance(y, RowArray)
            np.testing.assert_array_equal(np.asarray(y), emb[key])
        with pytest.raises(IndexError):
            x[np.array([n])]
        assert np.asarray(x, dtype=np.float64).dtype == np.float64
        # dask arithmetic on it is ordinary dask
        np.testing.assert_allclose(
            float((x * 2).sum().compute()), float((emb * 2).sum()), rtol=1e-5
        )


def test_row_array_empty_and_blocks():
    data = np.arange(30.0).reshape(10, 3)
    x = row_array(lambda p: data[p], np.arange(10), (3,), data.dtype, block_rows=4, token="t")
    assert x.chunks == ((4, 4, 2), (3,))
    e = x[np.array([], dtype=np.int64)]
    assert e.shape == (0, 3) and np.asarray(e).shape == (0, 3) and e.compute().shape == (0, 3)
    # equal views share a dask name (deterministic), different ones do not
    assert x[1:3].name == x[np.array([1, 2])].name != x[2:4].name


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(idx=st_.lists(st_.integers(0, 22), max_size=15), block=st_.integers(1, 9))
def test_row_array_property(idx, block):
    data = np.random.default_rng(1).normal(size=(23, 2))
    x = row_array(lambda p: data[p], np.arange(23)[::-1].copy(), (2,), data.dtype, block, "p")
    key = np.array(idx, dtype=np.int64)
    want = data[::-1][key]
    np.testing.assert_array_equal(np.asarray(x[key]), want)
    np.testing.assert_array_equal(x[key].compute(), want)


# ---------------------------------------------------------------- Store.read
def test_store_read(filled):
    path, ids, emb, logits, skin, light = filled
    with Store.open(path) as st:
        np.testing.assert_array_equal(st.read("emb"), emb)
        np.testing.assert_array_equal(st.read("logits", skin=[1, 5]), logits[np.isin(skin, [1, 5])])
        np.testing.assert_array_equal(
            st.read("emb", skin=2, lighting="well"), emb[(skin == 2) & (light == "well")]
        )
        np.testing.assert_array_equal(st.read("emb", ids=[ids[7], ids[0], ids[7]]), emb[[7, 0, 7]])
        m = np.arange(len(ids)) % 4 == 0
        np.testing.assert_array_equal(st.read("emb", mask=m), emb[m])
        np.testing.assert_array_equal(st.read("emb", ids=ids[[9, 8, 4]], mask=m), emb[[8, 4]])
        assert st.read("emb", ids=[]).shape == (0, 2, 6)
        np.testing.assert_array_equal(st.read("emb", skin=3), st.sel(skin=3).emb.values)
        with pytest.raises(UnknownVariableError, match="nope"):
            st.read("nope")
        with pytest.raises(SelectionError, match="not committed"):
            st.read("emb", ids=[1])
        with pytest.raises(SelectionError):
            st.read("emb", skin=99)
        with pytest.raises(ValidationError, match="mask"):
            st.read("emb", mask=np.ones(3, dtype=bool))


def test_read_sees_rows_of_an_open_writer(tmp_path):
    path = str(tmp_path / "w.zarr")
    st = Store.create(path, variables={"e": ("d",)}, dtypes={"e": "float32"}, chunk_rows=8)
    st.append([1, 2, 3], {"e": np.arange(6.0).reshape(3, 2)})
    np.testing.assert_array_equal(st.read("e", ids=[3]), [[4.0, 5.0]])
    np.testing.assert_array_equal(st["e"].values[:, 0], [0.0, 2.0, 4.0])
    st.close()


# -------------------------------------------------------------- ChunkBuffer
@settings(max_examples=60, deadline=None)
@given(
    chunk=st_.integers(1, 6),
    ops=st_.lists(
        st_.tuples(st_.sampled_from(["append", "write", "flush"]), st_.integers(0, 9)), max_size=40
    ),
    strings=st_.booleans(),
)
def test_chunk_buffer_matches_a_list(chunk, ops, strings):
    buf = ChunkBuffer(0, chunk)
    ref: list = []  # rows from buf.start on
    counter = 0
    for op, k in ops:
        if op == "append":
            if strings:  # widths grow: the gather array must promote its dtype
                rows = np.array([f"s{counter + j}" * (1 + (counter + j) % 3) for j in range(k)])
            else:
                rows = (
                    np.arange(counter, counter + k, dtype=np.int64).reshape(k, 1).repeat(2, axis=1)
                )
            counter += k
            buf.append(rows)
            ref.extend(rows.tolist())
        elif len(buf):
            end = buf.full_end() if op == "write" else buf.end
            if end <= buf.start:
                continue
            assert buf.block(end).tolist() == ref[: end - buf.start]
            keep = end - end % chunk
            drop = keep - buf.start
            buf.advance(end)
            if drop > 0:
                ref = ref[drop:]
                assert buf.start == keep
        assert len(buf) == len(ref)
    if len(buf):
        assert buf.block(buf.end).tolist() == ref


def test_chunk_buffer_single_batch_is_not_copied():
    buf = ChunkBuffer(0, 4)
    a = np.arange(8).reshape(8, 1)
    buf.append(a)
    assert np.shares_memory(buf.block(8), a)
    buf.append(np.arange(2).reshape(2, 1))
    buf.advance(8)  # the 2 leftover rows move into the reused gather array
    assert buf.block(10).ravel().tolist() == [0, 1]
    assert not np.shares_memory(buf.block(10), a)


# ------------------------------------------------------------ local resizes
def test_local_resize_rewrites_metadata_and_drops_chunks(tmp_path):
    path = str(tmp_path / "r.zarr")
    with Store.create(path, variables={"e": ("d",)}, dtypes={"e": "float32"}, chunk_rows=4) as st:
        st.append(list(range(10)), {"e": np.arange(20.0).reshape(10, 2)})
        st.flush()
        assert st._backend.array_info("e")[0][0] > 10  # grown geometrically while writing
    # closed: trimmed to the committed length, readable by plain zarr
    z = zarr.open_array(os.path.join(path, "e"), mode="r")
    assert z.shape == (10, 2)
    np.testing.assert_array_equal(z[:], np.arange(20.0).reshape(10, 2))
    be = ZarrBackend.open(path, "a", None)
    be.resize("e", 5)
    assert be.array_info("e")[0] == (5, 2)
    z = zarr.open_array(os.path.join(path, "e"), mode="r")
    assert z.shape == (5, 2)
    # flat chunk keys (c.<i>.0): chunk 2 (rows 8-11) gone
    assert sorted(f for f in os.listdir(os.path.join(path, "e")) if f.startswith("c")) == [
        "c.0.0",
        "c.1.0",
    ]
    np.testing.assert_array_equal(z[:], np.arange(10.0).reshape(5, 2))


def test_store_arrays_use_flat_chunk_files(tmp_path):
    path = str(tmp_path / "f.zarr")
    with Store.create(path, variables={"q": ("query", "hidden")}, chunk_rows=4) as st:
        st.append(
            list(range(9)), {"q": np.ones((9, 3, 2), np.float32)}, coords={"skin": list(range(9))}
        )
    for name in ("q", "image_id", "skin"):
        entries = os.listdir(os.path.join(path, name))
        assert "c" not in entries  # no directory tree per chunk
        assert any(e.startswith("c.0") for e in entries)
    assert sorted(e for e in os.listdir(os.path.join(path, "q")) if e.startswith("c.")) == [
        "c.0.0.0",
        "c.1.0.0",
        "c.2.0.0",
    ]


@pytest.mark.parametrize("sep", ["/", "."])
@given(n=st_.integers(1, 23), start_chunk=st_.integers(0, 2), seed=st_.integers(0, 2**16))
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_raw_chunk_writes_match_zarr_for_both_key_separators(tmp_path, sep, n, start_chunk, seed):
    d = tmp_path / f"a{sep == '.'}{n}_{start_chunk}_{seed}"
    zarr.create_array(
        str(d),
        shape=(40, 3, 2),
        chunks=(5, 3, 2),
        dtype="float16",
        compressors=None,
        fill_value=0,
        chunk_key_encoding={"name": "default", "separator": sep},
    )
    raw = RawZarrArray.open(str(d))
    assert raw is not None and raw.flat == (sep == ".")
    data = np.random.default_rng(seed).standard_normal((n, 3, 2)).astype(np.float16)
    start = 5 * start_chunk
    raw.write_chunks(start, data)
    got = zarr.open_array(str(d), mode="r")[:]
    np.testing.assert_array_equal(got[start : start + n], data)
    assert not got[:start].any() and not got[start + n :].any()
    np.testing.assert_array_equal(raw.read_range(start, start + n), data)
    pos = np.random.default_rng(seed).integers(0, n, size=min(n, 5)) + start
    np.testing.assert_array_equal(raw.read_positions(pos), data[pos - start])


# ------------------------------------------------------------ rawread out=
def test_read_positions_out_and_order(tmp_path):
    d = str(tmp_path / "a")
    z = zarr.create_array(d, shape=(13, 3), chunks=(4, 3), dtype="float32", compressors=None)
    base = np.arange(39, dtype=np.float32).reshape(13, 3)
    z[:] = base
    raw = RawZarrArray.open(d)
    out = np.empty((4, 3), dtype=np.float32)
    res = raw.read_positions(np.array([0, 1, 5, 12]), out=out)
    assert res is out
    np.testing.assert_array_equal(out, base[[0, 1, 5, 12]])
    np.testing.assert_array_equal(raw.read_positions(np.array([12, 3, 3, 0])), base[[12, 3, 3, 0]])
    with pytest.raises(ValueError, match="out must be"):
        raw.read_positions(np.array([1, 2]), out=np.empty((2, 3), dtype=np.float64))
    with pytest.raises(IndexError):
        raw.read_positions(np.array([13]))


# ------------------------------------------------------------ fast_cast
@settings(max_examples=25, deadline=None)
@given(
    n=st_.integers(4097, 80000),
    scale=st_.sampled_from([1e-7, 1.0, 1e3, 7e4]),
    seed=st_.integers(0, 2**16),
)
def test_fast_cast_with_torch_is_bit_identical_to_numpy(n, scale, seed):
    pytest.importorskip("torch")  # fast_cast uses torch only when it is loaded
    from embstore.store.schema import fast_cast

    rng = np.random.default_rng(seed)
    a = (rng.standard_normal(n) * scale).astype(np.float32)
    specials = np.array([np.inf, -np.inf, np.nan, 65520.0, -0.0, 6.0e-8, 1e6, 65504.0], np.float32)
    a[rng.choice(n, size=len(specials), replace=False)] = specials  # overflow, NaN, subnormal, ties
    with np.errstate(over="ignore", invalid="ignore"):
        want = a.astype(np.float16)
    got = fast_cast(a.reshape(-1, 1), np.dtype("float16")).reshape(-1)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))


# ------------------------------------------------------ direct shard writes
@pytest.mark.parametrize("inner", [1, 2, 4])
def test_direct_shard_writes_match_zarr(tmp_path, inner):
    shape, shard = (10, 3, 2), 4
    data = np.random.default_rng(inner).normal(size=shape).astype(np.float32)
    kw = dict(
        shape=shape,
        chunks=(inner, 3, 2),
        shards=(shard, 3, 2),
        dtype="float32",
        compressors=None,
        fill_value=np.nan,
        config={"write_empty_chunks": True},
    )
    ref = zarr.create_array(str(tmp_path / "ref"), **kw)
    ref[:] = data
    mine = zarr.create_array(str(tmp_path / "mine"), **kw)
    raw = RawZarrArray.open(str(tmp_path / "mine"))
    assert raw is not None and raw.inner_rows == inner and raw.can_write
    raw.write_chunks(0, data)  # 3 shards, the last one padded
    got = zarr.open_array(str(tmp_path / "mine"), mode="r")[:]
    np.testing.assert_array_equal(got, data)
    np.testing.assert_array_equal(RawZarrArray.open(str(tmp_path / "ref")).read_range(0, 10), data)
    # full shards are byte-identical to zarr's; in the partial last one zarr
    # leaves inner chunks beyond the shape out, we write them as fill values
    for c in range(2):
        f = os.path.join("c", str(c), "0", "0")
        with open(tmp_path / "ref" / f, "rb") as a, open(tmp_path / "mine" / f, "rb") as b:
            assert a.read() == b.read()
    mine.resize((12, 3, 2))  # the padded rows read back as fill values, as in zarr
    grown = zarr.open_array(str(tmp_path / "mine"), mode="r")[:]
    assert np.isnan(grown[10:]).all()
    np.testing.assert_array_equal(grown[:10], data)


# ------------------------------------------------------------ cast into the buffer
@given(
    sizes=st_.lists(st_.integers(0, 9), min_size=1, max_size=8),
    chunk=st_.integers(1, 6),
    advance_every=st_.integers(1, 4),
    seed=st_.integers(0, 2**16),
)
@settings(max_examples=40, deadline=None)
def test_append_cast_matches_cast_of_concatenation(sizes, chunk, advance_every, seed):
    rng = np.random.default_rng(seed)
    b = ChunkBuffer(start=0, chunk=chunk)
    parts, written = [], []
    for k, n in enumerate(sizes):
        p = rng.standard_normal((n, 3)).astype(np.float32)
        parts.append(p)
        b.append_cast(p, "float16")
        p[:] = 7.0  # rows were copied at append time: later changes do not show
        if k % advance_every == 0 and b.full_end() > b.start:
            upto = b.full_end()
            written.append(b.block(upto).copy())
            b.advance(upto)
    if len(b):
        written.append(b.block(b.end).copy())
    got = np.concatenate(written) if written else np.zeros((0, 3), np.float16)
    assert got.dtype == np.float16
    ref = np.concatenate(_regen(sizes, seed)).astype(np.float16)
    np.testing.assert_array_equal(got, ref)


def _regen(sizes, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, 3)).astype(np.float32) for n in sizes]


def test_failed_append_buffers_nothing_and_store_matches_float16_cast(tmp_path):
    path = str(tmp_path / "c.zarr")
    a = np.random.default_rng(0).standard_normal((5, 4, 3)).astype(np.float32)
    with Store.create(path, variables={"q": ("query", "hidden"), "z": ("k",)}, chunk_rows=4) as st:
        st.append([1, 2], {"q": a[:2], "z": np.ones((2, 2), np.float32)})
        bad = np.ones((3, 2), np.float32)
        bad[1, 0] = np.nan
        with pytest.raises(NonFiniteError, match="NaN"):
            st.append([3, 4, 5], {"q": a[2:], "z": bad})  # q is valid, z is not: nothing buffered
        st.append([3, 4, 5], {"q": a[2:], "z": np.ones((3, 2), np.float32)})
    st = Store.open(path)
    np.testing.assert_array_equal(st.read("q"), a.astype(np.float16))
    assert st.ids.tolist() == [1, 2, 3, 4, 5]
