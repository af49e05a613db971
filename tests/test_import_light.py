"""`import embstore` (and its CLI parser) must not pull in torch, faiss or matplotlib."""

import subprocess
import sys

HEAVY = ("torch", "faiss", "matplotlib", "sklearn", "open_clip")


def _imported_after(statement: str) -> list[str]:
    code = f"import sys; {statement}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    return [name for name in out.split(",") if name]


def test_import_embstore_is_light():
    assert _imported_after("import embstore") == []


def test_store_and_analyzer_imports_are_light():
    assert _imported_after("from embstore import Store, EmbeddingAnalyzer") == []


def test_cli_parser_is_light():
    assert _imported_after("from embstore.cli import build_parser; build_parser()") == []


def test_lazy_attribute_error_names_the_attribute():
    import pytest

    import embstore

    with pytest.raises(AttributeError, match="no_such_name"):
        embstore.no_such_name
