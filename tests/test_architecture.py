"""Architecture gates: module docstrings, class sizes, no import cycles at import time.

The checks read the sources with :mod:`ast` through ``tools/module_map.py``
(``python tools/module_map.py --cycles --classes`` prints the same facts).
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load_module_map():
    spec = importlib.util.spec_from_file_location("module_map", ROOT / "tools" / "module_map.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["module_map"] = mod  # dataclasses resolve their module by name
    spec.loader.exec_module(mod)
    return mod


mm = _load_module_map()
MODULES = list(mm.iter_modules(ROOT))


def test_every_module_has_a_docstring():
    missing = [m.name for m in MODULES if not m.summary]
    assert not missing, f"modules without a docstring: {missing}"
    assert {"embstore", "embstore.store", "extractors"} <= {m.name for m in MODULES}


def test_architecture_md_holds_the_current_module_map():
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    assert mm.architecture_block(MODULES) in text, (
        "ARCHITECTURE.md's module map is out of date: run python tools/module_map.py --write"
    )


def test_no_class_is_over_700_lines():
    big = mm.large_classes(MODULES)
    assert not big, f"classes over {mm.MAX_CLASS_LINES} lines: {big}"


def test_no_import_cycles_among_top_level_imports():
    cycles = mm.find_cycles(mm.import_graph(MODULES))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def _toy_package(root: Path, files: dict[str, str]) -> list:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return list(mm.iter_modules(root, ("pkg",)))


def test_cycle_finder_sees_import_time_cycles_only(tmp_path):
    mods = _toy_package(
        tmp_path,
        {
            "pkg/__init__.py": '"""Toy."""\nfrom .a import f\n',
            "pkg/a.py": '"""A."""\nfrom . import b\n\ndef f():\n    from . import c\n',
            "pkg/b.py": '"""B."""\ntry:\n    from .a import f\nexcept ImportError:\n    pass\n',
            "pkg/c.py": '"""C."""\nfrom .a import f\n',
            "pkg/d.py": (
                '"""D."""\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n'
                "    from .e import g\n"
            ),
            "pkg/e.py": '"""E."""\nfrom .d import x\n',
            "pkg/sub/__init__.py": '"""Sub."""\nfrom ..c import f\n',
            "pkg/sub/m.py": "class K:\n    from ..d import x\n" + "    y = 1\n" * 5,
        },
    )
    graph = mm.import_graph(mods)
    assert graph["pkg"] == {"pkg.a"}
    assert graph["pkg.a"] == {"pkg.b"}  # the import inside f() does not run at import time
    assert graph["pkg.d"] == set()  # TYPE_CHECKING imports are ignored
    assert graph["pkg.sub"] == {"pkg.c"} and graph["pkg.sub.m"] == {"pkg.d"}
    assert mm.find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.a"]]
    assert [m.name for m in mods if not m.summary] == ["pkg.sub.m"]
    assert mm.large_classes(mods, limit=5) == [("pkg.sub.m.K", 7)]
    assert mm.large_classes(mods, limit=7) == []


def test_module_map_prints_one_line_per_module(capsys):
    assert mm.main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(MODULES)
    store = next(line for line in lines if line.split()[0] == "embstore.store.core")
    assert "(no docstring)" not in store
