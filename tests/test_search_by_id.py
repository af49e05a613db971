"""Search by stored ids reads only the query rows and equals the whole-store path (issue 17, item 2)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("faiss")

from embstore import EmbeddingAnalyzer, Store
from embstore.search.queries import id_positions, row_vectors, unique_ids
from embstore.search.results import search_frame
from embstore.search.source import positions_of_ids

N, Q, D, C = 90, 5, 12, 4


def _detr_store(path, n=N, seed=0):
    rng = np.random.default_rng(seed)
    st = Store.create(
        path,
        variables={
            "query_embeddings": ("query", "hidden"),
            "decoder_output": ("layer", "query", "hidden"),
            "pred_logits": ("query", "class"),
            "embedding": ("hidden",),
        },
        ragged={"encoder_output": ("token", "hidden")},
        chunk_rows=16,
    )
    for s in range(0, n, 25):
        e = min(n, s + 25)
        m = e - s
        st.append(
            np.arange(s, e) * 3 + 1,
            {
                "query_embeddings": rng.normal(size=(m, Q, D)).astype(np.float32),
                "decoder_output": rng.normal(size=(m, 3, Q, D)).astype(np.float32),
                "pred_logits": rng.normal(size=(m, Q, C)).astype(np.float32),
                "embedding": rng.normal(size=(m, D)).astype(np.float32),
                "encoder_output": [
                    rng.normal(size=(int(rng.integers(2, 6)), D)).astype(np.float32)
                    for _ in range(m)
                ],
            },
            coords={
                "skin": np.arange(s, e) % 4,
                "lighting": np.array(["dim", "lit", "backlit"])[np.arange(s, e) % 3],
            },
        )
    st.flush()
    return st


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    st = _detr_store(str(tmp_path_factory.mktemp("byid") / "run.zarr"))
    yield st
    st.close()


def _streamed(an, variable, pool, layer):
    blocks = [b for _, b in an.iter_vectors(variable, pool=pool, layer=layer, block_rows=7)]
    return np.concatenate(blocks)


CASES = [
    ("embedding", "mean", None),
    ("embedding", None, None),
    ("query_embeddings", None, None),
    ("query_embeddings", "mean", None),
    ("query_embeddings", "max", None),
    ("query_embeddings", "confidence", None),
    ("query_embeddings", "topk:2", None),
    ("decoder_output", "mean", 1),
    ("decoder_output", None, -1),
    ("encoder_output", "mean", None),
]


@pytest.mark.parametrize("variable,pool,layer", CASES)
@pytest.mark.parametrize("selected", [False, True])
def test_row_vectors_equal_the_streamed_vectors(store, variable, pool, layer, selected):
    an = EmbeddingAnalyzer(store)
    if selected:
        an = an.sel(skin=[1, 3])
    full = _streamed(an, variable, pool, layer)
    per_row = len(full) // len(an.ids)
    rows = np.array([len(an.ids) - 1, 0, 5, 2])
    got = row_vectors(an, variable, pool, layer, rows)
    want = full.reshape(len(an.ids), per_row, -1)[rows].reshape(-1, full.shape[1])
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)  # bit for bit


def test_id_positions_match_positions_of_ids():
    labels = pd.DataFrame({"image_id": np.repeat([7, 3, 9, 4], 3), "query": np.tile([0, 1, 2], 4)})
    for ids in ([9, 7], [3, 9, 3, 7], 4, np.array([4, 7])):
        want = positions_of_ids(labels, "image_id", ids)
        got = id_positions(pd.Index([7, 3, 9, 4]), ids, per_row=3)
        np.testing.assert_array_equal(got, want)
    assert unique_ids([1, 2, 1]).tolist() == [2, 1]
    with pytest.raises(KeyError, match="99"):
        id_positions(pd.Index([7, 3]), [3, 99])


def _old_positions_of_ids(labels, id_name, ids):
    """The per-id Python implementation this project used before (reference)."""
    want = list(np.atleast_1d(np.asarray(ids, dtype=object)).tolist())
    col = labels[id_name]
    order = {v: r for r, v in enumerate(want)}
    pos = np.flatnonzero(col.isin(want).to_numpy())
    return pos[np.argsort([order[v] for v in col.to_numpy()[pos]], kind="stable")]


@pytest.mark.parametrize("ids", [[5, 1, 5], ["b", 5], [1], [2, 2, 2, 1]])
def test_positions_of_ids_equals_the_old_implementation(ids):
    labels = pd.DataFrame({"image_id": np.array([5, 1, 2, "b", 1, 5], dtype=object)})
    np.testing.assert_array_equal(
        positions_of_ids(labels, "image_id", ids), _old_positions_of_ids(labels, "image_id", ids)
    )


class _Counting:
    """Wraps a backend and records every row position read of each array."""

    def __init__(self, backend):
        self._backend = backend
        self.rows: dict[str, list[int]] = {}

    def read_points(self, name, pos):
        self.rows.setdefault(name, []).extend(np.asarray(pos).tolist())
        return self._backend.read_points(name, pos)

    def __getattr__(self, name):
        return getattr(self._backend, name)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
@pytest.mark.parametrize(
    "variable,pool",
    [("embedding", "mean"), ("query_embeddings", "mean"), ("query_embeddings", None)],
)
def test_search_by_id_reads_only_the_query_rows_and_equals_search_by_vector(
    tmp_path, kind, variable, pool
):
    st = _detr_store(str(tmp_path / "s.zarr"))
    an = EmbeddingAnalyzer(st)
    kw = {"nlist": 4} if kind == "ivf" else {}
    an.build_index(variable, pool=pool, kind=kind, progress=False, **kw)
    full, labels = an.matrix(variable, pool=pool)
    qids = [40, 1, 250]
    counting = _Counting(st._backend)
    st._backend = counting

    def no_stream(*a, **k):
        raise AssertionError("search(ids=) streamed the store")

    an.iter_vectors = no_stream
    try:
        df = an.search(ids=qids, k=4, variable=variable, pool=pool, kind=kind)
    finally:
        st._backend = counting._backend
        del an.iter_vectors
    # only the 3 query rows were read, once each
    assert sorted(counting.rows[variable]) == sorted((np.array(qids) - 1) // 3)
    assert set(counting.rows) <= {variable}
    # same frame as a search by the vectors themselves, plus the query labels
    pos = positions_of_ids(labels, "image_id", qids)
    ref = an.search(full[pos], k=4, variable=variable, pool=pool, kind=kind)
    for c in ("rank", "neighbor", "score", "image_id", "skin", "lighting"):
        pd.testing.assert_series_equal(df[c], ref[c])
    q = ref["query_index"].to_numpy()
    assert df["query_image_id"].tolist() == labels["image_id"].to_numpy()[pos][q].tolist()
    st.close()


def test_repeated_search_reuses_state_until_the_store_changes(tmp_path, monkeypatch):
    st = _detr_store(str(tmp_path / "s.zarr"))
    an = EmbeddingAnalyzer(st)
    an.build_index("embedding", kind="flat")
    first = an.search(ids=[4, 7], k=3, variable="embedding", kind="flat")
    calls = {"labels": 0, "blob": 0}
    real_labels, real_blob = an.labels, st.read_blob

    def labels(*a, **k):
        calls["labels"] += 1
        return real_labels(*a, **k)

    def read_blob(*a, **k):
        calls["blob"] += 1
        return real_blob(*a, **k)

    monkeypatch.setattr(an, "labels", labels)
    monkeypatch.setattr(st, "read_blob", read_blob)
    again = an.search(ids=[4, 7], k=3, variable="embedding", kind="flat")
    pd.testing.assert_frame_equal(first, again)
    assert calls == {"labels": 0, "blob": 0}  # nothing re-read, nothing re-checked
    # a commit changes the token: labels and index are brought up to date
    st.append(
        [1000],
        {
            "query_embeddings": np.zeros((1, Q, D), np.float32),
            "decoder_output": np.zeros((1, 3, Q, D), np.float32),
            "pred_logits": np.zeros((1, Q, C), np.float32),
            "embedding": np.ones((1, D), np.float32),
            "encoder_output": [np.ones((2, D), np.float32)],
        },
        coords={"skin": [0], "lighting": ["dim"]},
    )
    st.flush()
    df = an.search(ids=[1000], k=1, variable="embedding", kind="flat")
    assert calls["labels"] >= 1
    assert df["image_id"].tolist() == [1000] and df["neighbor"].tolist() == [N]
    st.close()


def _old_search_frame(
    scores, ids, db_labels=None, query_labels=None, lims=None, higher_is_better=True
):
    """The concat-based implementation used before (reference)."""
    if lims is None:
        nq, k = ids.shape
        q = np.repeat(np.arange(nq), k)
        rank = np.tile(np.arange(k), nq)
        nb, sc = ids.ravel(), scores.ravel()
    else:
        nq = lims.size - 1
        counts = np.diff(lims)
        q = np.repeat(np.arange(nq), counts)
        order = np.lexsort((ids, -scores if higher_is_better else scores, q))
        nb, sc = ids[order], scores[order]
        rank = np.arange(nb.size) - np.repeat(lims[:-1], counts)
    valid = nb >= 0
    q, rank, nb, sc = q[valid], rank[valid], nb[valid], sc[valid]
    if query_labels is not None:
        qdf = query_labels.iloc[q].reset_index(drop=True).add_prefix("query_")
    else:
        qdf = pd.DataFrame({"query_index": q})
    df = pd.concat([qdf, pd.DataFrame({"rank": rank, "neighbor": nb})], axis=1)
    if db_labels is not None:
        df = pd.concat([df, db_labels.iloc[nb].reset_index(drop=True)], axis=1)
    df["score"] = sc
    return df


@pytest.mark.parametrize("with_q", [False, True])
@pytest.mark.parametrize("extra", [None, "score"])
def test_search_frame_equals_the_concat_reference(with_q, extra):
    rng = np.random.default_rng(3)
    n = 40
    lab = pd.DataFrame(
        {
            "image_id": np.arange(n) * 2,
            "name": np.array([f"r{i}" for i in range(n)], dtype=object),
            "cat": pd.Categorical(np.array(["a", "b", "c"])[np.arange(n) % 3]),
            "opt": pd.array(np.arange(n) % 5, dtype="Int64"),
        }
    )
    if extra:
        lab[extra] = rng.random(n)
    ids = rng.integers(0, n, size=(6, 4))
    ids[2, 3] = -1  # padding is dropped
    scores = rng.random((6, 4)).astype(np.float32)
    ql = lab.iloc[[3, 1, 4, 1, 5, 9]] if with_q else None
    pd.testing.assert_frame_equal(
        search_frame(scores, ids, lab, ql), _old_search_frame(scores, ids, lab, ql)
    )
    lims = np.array([0, 3, 3, 7])
    fi, fs = rng.integers(0, n, 7), rng.random(7).astype(np.float32)
    ql3 = lab.iloc[[0, 2, 4]] if with_q else None
    pd.testing.assert_frame_equal(
        search_frame(fs, fi, lab, ql3, lims=lims), _old_search_frame(fs, fi, lab, ql3, lims=lims)
    )
    pd.testing.assert_frame_equal(search_frame(scores, ids), _old_search_frame(scores, ids))


def test_search_by_id_on_a_plain_dataset_equals_search_by_vector():
    import xarray as xr

    rng = np.random.default_rng(4)
    x = rng.normal(size=(60, Q, D)).astype(np.float32)
    ds = xr.Dataset(
        {"query_embeddings": (("image", "query", "hidden"), x)},
        coords={"image_id": ("image", np.arange(60) + 500), "skin": ("image", np.arange(60) % 2)},
    )
    an = EmbeddingAnalyzer(ds)
    assert an.store is None
    got = row_vectors(an, "query_embeddings", "mean", None, np.array([7, 3]))
    np.testing.assert_array_equal(got, _streamed(an, "query_embeddings", "mean", None)[[7, 3]])
    df = an.search(ids=[507, 503], k=3)
    ref = an.search(got, k=3)
    for c in ("neighbor", "score", "image_id", "skin"):
        pd.testing.assert_series_equal(df[c], ref[c])
    assert df["query_image_id"].tolist() == [507] * 3 + [503] * 3
    np.testing.assert_array_equal(
        ds["query_embeddings"].values, x
    )  # the caller's data is untouched


def test_search_without_index_looks_for_saved_ones_once_per_version(tmp_path, monkeypatch):
    st = _detr_store(str(tmp_path / "s.zarr"))
    an = EmbeddingAnalyzer(st)
    first = an.search(ids=[4], k=3, variable="embedding")  # no index: exact scan
    reads = []
    real = st.read_blob
    monkeypatch.setattr(st, "read_blob", lambda name: reads.append(name) or real(name))
    pd.testing.assert_frame_equal(an.search(ids=[4], k=3, variable="embedding"), first)
    assert reads == []
    # an index built later (same version) is found through the in-memory cache
    an.build_index("embedding", kind="hnsw")
    assert len(an.search(ids=[4], k=3, variable="embedding")) == 3
    # a saved index from another analyzer is found after the next commit
    st.close()
