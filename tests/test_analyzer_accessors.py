"""The analyzer by composition: the core, its typed helpers and the flat delegates."""

from __future__ import annotations

import ast
import inspect
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embstore import EmbeddingAnalyzer, Store
from embstore.analysis.accessor import UncachedAccessor, split_spec
from embstore.analysis.core import AnalyzerCore
from embstore.analysis.spec import VectorSpec
from embstore.discovery.accessor import DiscoveryAccessor
from embstore.errors import ValidationError
from embstore.fairness.accessor import FairnessAccessor
from embstore.search.accessor import SearchAccessor
from embstore.search.catalog import IndexCatalog
from embstore.testing.stores import detr_store, face_store

PACKAGE = Path(__file__).resolve().parents[1] / "embstore"

FLAT = {
    "index": ["build_index", "search", "range_search", "find_duplicates", "cluster"],
    "fairness": ["group_stats", "fairness_stats", "detection_fairness", "person_table"],
    "discovery": ["outliers", "leaks", "gallery", "search_text", "explore"],
    "export": ["to_parquet", "to_hf_dataset", "export_training_labels"],
    "plot": ["project"],
    "legacy": ["load_embedding", "get_embedding_statistics", "visualize_embeddings_pca"],
    "layers": ["layer_profile", "cka_matrix"],
    "attention_maps": ["attention", "plot_attention"],
}


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> str:
    return face_store(tmp_path_factory.mktemp("acc") / "faces.zarr")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> str:
    return detr_store(tmp_path_factory.mktemp("acc") / "demo.zarr", n_images=60)


def test_flat_methods_have_the_helper_signature_and_docstring(faces):
    an = EmbeddingAnalyzer(faces)
    for accessor, names in FLAT.items():
        helper = getattr(an, accessor)
        for name in names:
            flat, inner = getattr(an, name), getattr(helper, name)
            assert inspect.signature(flat) == inspect.signature(inner), name
            assert flat.__doc__ == inner.__doc__ and flat.__doc__, name
            # class access (autodoc, help) gives a routine with the same parameters
            cls_attr = getattr(EmbeddingAnalyzer, name)
            assert inspect.isroutine(cls_attr), name
            assert list(inspect.signature(cls_attr).parameters)[1:] == list(
                inspect.signature(inner).parameters
            )


def test_flat_and_helper_calls_give_the_same_results(faces):
    an = EmbeddingAnalyzer(faces)
    pd.testing.assert_frame_equal(an.search(ids=[0, 5], k=3), an.index.search(ids=[0, 5], k=3))
    flat = an.find_duplicates(0.9)
    pd.testing.assert_frame_equal(flat, an.index.find_duplicates(0.9))
    assert len(flat) == 40  # one planted pair per person
    pd.testing.assert_frame_equal(an.outliers(k=3), an.discovery.outliers(k=3))


def test_helpers_hold_typed_references_to_the_core(faces):
    an = EmbeddingAnalyzer(faces)
    assert isinstance(an.index, SearchAccessor) and an.index.core is an
    assert isinstance(an.index.catalog, IndexCatalog)
    assert isinstance(an.discovery, DiscoveryAccessor) and an.discovery.index.core is an
    assert isinstance(an.fairness, FairnessAccessor)
    # helpers are built on access; their state lives once per analyzer
    assert an.index is not an.index and an.index.catalog is an.index.catalog
    assert an.fairness is not an.fairness
    # nothing outside the analyzer keeps it alive
    import gc
    import weakref

    tmp = EmbeddingAnalyzer(faces)
    tmp.search(ids=[0], k=2)
    ref = weakref.ref(tmp)
    del tmp
    gc.collect()
    assert ref() is None
    assert isinstance(EmbeddingAnalyzer.__dict__["plot"], UncachedAccessor)
    # the core alone works without any helper
    core = AnalyzerCore(faces)
    assert not hasattr(core, "search") and core.matrix("embedding")[0].shape == (80, 32)


def test_sel_builds_a_new_analyzer_through_init_with_its_own_catalog(faces):
    an = EmbeddingAnalyzer(faces)
    an.build_index("embedding", kind="flat")
    sub = an.sel(person=[0, 1, 2])
    assert type(sub) is EmbeddingAnalyzer and len(sub) == 6
    assert sub.index.core is sub and sub.index.catalog is not an.index.catalog
    assert sub.index.catalog.names() == []  # another vector set: nothing shared
    res = sub.search(ids=[0], k=2, kind="flat")
    assert res["image_id"].tolist() == [0, 1] and res.attrs["index"].startswith("flat")
    assert sub.index.catalog.names() == ["embedding.mean.None.flat.cosine"]
    # the parent's catalog is untouched and still answers
    assert an.index.catalog.get("embedding.mean.None.flat.cosine").ntotal == 80
    # an analyzer built from an analyzer keeps the rows
    again = EmbeddingAnalyzer(sub)
    assert again.ids.tolist() == sub.ids.tolist() and again.index.catalog is not sub.index.catalog


def test_catalog_saves_reloads_and_detects_staleness(faces, tmp_path, caplog):
    path = tmp_path / "f.zarr"
    shutil.copytree(faces, path)
    st = Store.open(path, mode="a")
    an = EmbeddingAnalyzer(st)
    idx = an.build_index("embedding", kind="flat")
    name = IndexCatalog.name("embedding", "mean", None, "flat", "cosine")
    assert name in an.index.catalog and len(an.index.catalog) == 1
    assert st.read_blob(f"faiss_{name}") is not None
    # a fresh analyzer on the same store finds the saved index
    with caplog.at_level(logging.INFO, logger="embstore.search.catalog"):
        found = EmbeddingAnalyzer(st).index.catalog.find("embedding", "mean", None, "cosine", None)
    assert found is not None and found.ntotal == idx.ntotal and "reloaded" in caplog.text
    # sel() with no labels is the same selection: its new catalog reloads the saved index
    assert an.sel().index.catalog.find("embedding", "mean", None, "cosine", "flat") is not None
    # a commit makes it stale everywhere
    x = np.ones((1, 32), np.float32) / np.sqrt(32)
    st.append([1000], {"embedding": x}, coords={"person": [99]})
    st.flush()
    assert an.index.catalog.get(name) is None
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="embstore.search.catalog"):
        assert an.index.catalog.find("embedding", "mean", None, "cosine", "flat") is None
    assert "stale" in caplog.text
    assert an.build_index("embedding", kind="flat").ntotal == 81
    an.index.catalog.drop(name)
    assert name not in an.index.catalog
    st.close()


def test_spec_is_accepted_next_to_the_flat_keywords(demo):
    an = EmbeddingAnalyzer(demo)
    spec = VectorSpec("query_embeddings", pool="topk", k=3)
    m_spec, lab_spec = an.matrix(spec=spec)
    m_flat, lab_flat = an.matrix("query_embeddings", pool="topk:3")
    np.testing.assert_array_equal(m_spec, m_flat)
    pd.testing.assert_frame_equal(lab_spec, lab_flat)
    # spec.pool wins over the flat default; a flat variable/layer overrides the spec
    unpooled = VectorSpec(pool=None)
    assert an.vectors(spec=unpooled).shape == (60 * 8, 16)
    pd.testing.assert_frame_equal(
        an.search(ids=[3], k=4, spec=spec), an.search(ids=[3], k=4, pool="topk:3")
    )
    t_spec = an.group_stats(spec=spec, by="skin", n_boot=10, min_count=2)
    t_flat = an.group_stats(pool="topk:3", by="skin", n_boot=10, min_count=2)
    pd.testing.assert_frame_equal(t_spec, t_flat)
    with pytest.raises(ValidationError, match="over"):
        an.search(ids=[3], spec=VectorSpec(pool="mean", over="query"))
    with pytest.raises(ValidationError, match="VectorSpec"):
        an.matrix(spec={"pool": "mean"})  # type: ignore[arg-type]


def test_split_spec_rules():
    assert split_spec(None, "v", None, 2) == ("v", None, 2, {})
    spec = VectorSpec("a", pool="max", layer=1, over="y,x")
    assert split_spec(spec, None, "mean", None, allow_over=True) == (
        "a",
        "max",
        1,
        {"over": ("y", "x")},
    )
    assert split_spec(spec, "b", "mean", -1, allow_over=True)[:3] == ("b", "max", -1)
    with pytest.raises(ValidationError, match="topk"):
        split_spec(VectorSpec(pool="mean", k=3), None, None, None)


def test_leaks_against_a_path_or_another_analyzer(faces):
    an = EmbeddingAnalyzer(faces)
    left = an.sel(person=[0, 1])
    by_analyzer = left.leaks(an, threshold=0.95)
    by_path = left.leaks(faces, threshold=0.95)
    pd.testing.assert_frame_equal(by_analyzer, by_path)
    assert by_analyzer["image_id_query"].tolist() == [0, 1, 2, 3]
    assert (by_analyzer["image_id_query"] != by_analyzer["image_id_against"]).all()


def _classes(tree: ast.AST):
    return [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]


def test_no_mixins_and_no_attr_defined_ignores_in_the_analyzer_packages():
    for sub in ("analysis", "search", "fairness", "discovery"):
        for path in (PACKAGE / sub).glob("*.py"):
            text = path.read_text()
            assert "type: ignore[attr-defined]" not in text, path
            for cls in _classes(ast.parse(text)):
                assert not cls.name.endswith("Mixin"), (path, cls.name)
                size = cls.end_lineno - cls.lineno + 1
                assert size <= 700, (path, cls.name, size)
    bases = [
        b.id for b in _classes(ast.parse((PACKAGE / "analysis/analyzer.py").read_text()))[0].bases
    ]
    assert bases == ["AnalyzerCore"]


@pytest.mark.parametrize(
    ("module", "old", "new"),
    [
        ("embstore.search", "SearchMixin", "SearchAccessor"),
        ("embstore.discovery", "DiscoveryMixin", "DiscoveryAccessor"),
        ("embstore.analysis.layers", "LayersMixin", "LayersAccessor"),
        ("embstore.analysis.attention", "AttentionMixin", "AttentionAccessor"),
    ],
)
def test_mixin_era_names_warn_and_give_the_accessor(module, old, new):
    import importlib

    mod = importlib.import_module(module)
    with pytest.warns(FutureWarning, match=f"{old} is deprecated.*use {module}.{new}"):
        got = getattr(mod, old)
    assert got is getattr(mod, new)
    with pytest.raises(AttributeError):
        mod.NoSuchMixin
