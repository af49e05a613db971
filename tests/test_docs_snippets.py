"""Every code snippet of README.md and docs/quickstart.rst runs against a demo-like store.

The Python blocks (```` ```python ```` in the README, ``.. code-block:: python``
in the quickstart) are executed in order, one namespace per file, in a
folder holding the stores they name:

* ``facet_detr.zarr`` is built like the demo's store (``examples/demo.py``):
  :func:`extractors.detr.run.extract_detr` with a tiny random-weight DETR on
  photos bundled with scikit-image and FACET-style annotations;
* ``faces.zarr`` is a face store (one dense variable, ``embedding``, the
  default variable recorded as the face extractor does).

The ``embstore ...`` lines of the console blocks run through the CLI's
``main`` too, except the ones that need what a test cannot have (a model
checkpoint or weights: ``embstore extract``; an old output folder:
``embstore import-legacy``), and the setup commands (``make``, ``pip``).
So README lines cannot drift from the API unnoticed.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("torch")
pytest.importorskip("faiss")
pytestmark = pytest.mark.slow  # builds a store with a tiny DETR (~1 min on 2 shared cores)


def _markdown_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def _rst_blocks(text: str, lang: str) -> list[str]:
    out = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == f".. code-block:: {lang}":
            i += 1
            block = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith("   ")):
                block.append(lines[i][3:])
                i += 1
            out.append("\n".join(block).strip("\n") + "\n")
        else:
            i += 1
    return out


def _commands(block: str) -> list[str]:
    """``embstore ...`` commands of a console block (continuation lines joined)."""
    joined = block.replace("\\\n", " ")
    return [ln.strip() for ln in joined.splitlines() if ln.strip().startswith("embstore ")]


_NEEDS_ASSETS = ("embstore extract", "embstore import-legacy")


@pytest.fixture(scope="module")
def docs_dir(tmp_path_factory):
    """A folder with the stores the snippets open (built like the demo's)."""
    from embstore import Store
    from extractors.detr.run import extract_detr
    from extractors.samples import (
        save_tiny_detr_checkpoint,
        write_facet_annotations,
        write_sample_photos,
    )

    d = tmp_path_factory.mktemp("docs")
    write_sample_photos(d / "facet" / "images")
    write_facet_annotations(d / "facet" / "annotations.csv")
    checkpoint = save_tiny_detr_checkpoint(d / "detr_tiny.pth")
    extract_detr(
        checkpoint,
        d / "facet" / "images",
        d / "facet_detr.zarr",
        annotations=d / "facet" / "annotations.csv",
        extract_type="all",
        min_size=160,
        max_size=240,
        batch_size=2,
        num_workers=0,
        device="cpu",
        overwrite=True,
        progress=False,
    )
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(12, 16)).astype(np.float32)
    emb[6:] = emb[:6] + 0.01 * rng.normal(size=(6, 16)).astype(np.float32)  # near-duplicates
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    with Store.create(
        d / "faces.zarr",
        row_dim="image",
        id_name="index",
        variables={"embedding": ("feature",)},
        dtypes={"embedding": "float32"},
        attrs={"default_variable": "embedding"},
    ) as st:
        st.append(np.arange(12), {"embedding": emb})
    return d


def _run_python(blocks: list[str], where: Path, monkeypatch) -> None:
    monkeypatch.chdir(where)
    namespace: dict = {"__name__": "__docs__"}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"<snippet {i}>", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the point
            raise AssertionError(f"snippet {i} failed: {exc!r}\n{code}") from exc


def test_readme_python_snippets_run(docs_dir, monkeypatch):
    blocks = _markdown_blocks((ROOT / "README.md").read_text(), "python")
    assert blocks, "README.md has no python block"
    _run_python(blocks, docs_dir, monkeypatch)


def test_quickstart_python_snippets_run(tmp_path, monkeypatch):
    blocks = _rst_blocks((ROOT / "docs" / "quickstart.rst").read_text(), "python")
    assert len(blocks) >= 2
    _run_python(blocks, tmp_path, monkeypatch)
    from embstore import Store

    assert Store.open(tmp_path / "run.zarr").missing([1, 2, 3, 4]) == [4]


def test_readme_and_quickstart_commands_run(docs_dir, monkeypatch, capsys):
    from embstore.cli import main

    text = (ROOT / "README.md").read_text()
    blocks = _markdown_blocks(text, "console")
    blocks += _rst_blocks((ROOT / "docs" / "quickstart.rst").read_text(), "console")
    commands = [c for b in blocks for c in _commands(b)]
    runnable = [c for c in commands if not c.startswith(_NEEDS_ASSETS)]
    assert len(runnable) >= 5, commands
    monkeypatch.chdir(docs_dir)
    import shutil

    shutil.copytree(docs_dir / "facet_detr.zarr", docs_dir / "run.zarr", dirs_exist_ok=True)
    for cmd in runnable:
        rc = main(shlex.split(cmd)[1:])
        out = capsys.readouterr()
        assert rc == 0, f"{cmd!r} exited {rc}: {out.err[-2000:]}"


def test_demo_store_records_run_metadata(docs_dir, tmp_path):
    """A DETR store made with extract_type="all" records it (legacy metadata and export too)."""
    import json

    from embstore import EmbeddingAnalyzer, Store
    from embstore.legacy.detr_pt import export_detr_dir

    st = Store.open(docs_dir / "facet_detr.zarr")
    assert st.attrs["extract_type"] == "all"
    assert st.attrs["default_variable"] == "query_embeddings"
    assert EmbeddingAnalyzer(st).metadata["extract_type"] == "all"
    export_detr_dir(st, tmp_path / "old", ids=[int(st.ids[0])], variables=["query_embeddings"])
    assert json.loads((tmp_path / "old" / "metadata.json").read_text())["extract_type"] == "all"
