"""Print the module map of embstore and extractors: dotted name and docstring summary.

Usage::

    python tools/module_map.py            # one line per module
    python tools/module_map.py --cycles   # also the import cycles among them
    python tools/module_map.py --classes  # also classes longer than 700 lines
    python tools/module_map.py --write    # refresh the module map in ARCHITECTURE.md

Everything is read with :mod:`ast`; nothing is imported, so the map works
without the optional dependencies (torch, faiss...). The same functions back
``tests/test_architecture.py``: every module has a docstring, no class is
longer than :data:`MAX_CLASS_LINES`, and there is no import cycle among the
modules' top-level imports (imports inside functions and under
``if TYPE_CHECKING:`` do not run at import time and are ignored).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("embstore", "extractors")
MAX_CLASS_LINES = 700


@dataclass(frozen=True)
class Module:
    """One source module: dotted name, file, parsed tree."""

    name: str
    path: Path
    tree: ast.Module

    @property
    def is_package(self) -> bool:
        """True for a package's ``__init__.py``."""
        return self.path.name == "__init__.py"

    @property
    def summary(self) -> str:
        """First line of the module docstring ('' if it has none)."""
        doc = ast.get_docstring(self.tree)
        return doc.strip().splitlines()[0].strip() if doc and doc.strip() else ""


def iter_modules(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> Iterator[Module]:
    """Yield every module under ``packages`` in dotted-name order.

    Parameters
    ----------
    root : pathlib.Path
        The repository root.
    packages : tuple of str
        Top-level package folders.

    Yields
    ------
    Module
    """
    found = []
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join(parts)
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            found.append(Module(name, path, tree))
    yield from sorted(found, key=lambda m: m.name)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_time_imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module is imported (not in defs, not TYPE_CHECKING)."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _import_time_imports(node.body)
            yield from _import_time_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _import_time_imports(block)
            for handler in node.handlers:
                yield from _import_time_imports(handler.body)
        elif isinstance(node, (ast.With, ast.For, ast.While, ast.ClassDef)):
            yield from _import_time_imports(node.body)  # class bodies run at import time too


def _resolve(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.name.split(".")
    if not module.is_package:
        base = base[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(modules: list[Module]) -> dict[str, set[str]]:
    """Edges ``importer -> imported`` among ``modules`` from their import-time imports.

    ``from pkg import name`` points at the submodule ``pkg.name`` when it is
    one, else at ``pkg`` itself. Parents that Python initialises on the way
    (``import a.b.c`` runs ``a/__init__``) are not edges: they would make every
    package look cyclic with its own submodules.

    Parameters
    ----------
    modules : list of Module

    Returns
    -------
    dict
        Module name to the set of module names it imports.
    """
    known = {m.name for m in modules}
    graph: dict[str, set[str]] = {m.name: set() for m in modules}
    for m in modules:
        for node in _import_time_imports(m.tree.body):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = _resolve(m, node)
                for alias in node.names:
                    sub = f"{base}.{alias.name}" if base else alias.name
                    targets.append(sub if sub in known else base)
            for t in targets:
                if t in known and t != m.name:
                    graph[m.name].add(t)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One concrete cycle per strongly connected component of more than one module.

    Parameters
    ----------
    graph : dict
        From :func:`import_graph`.

    Returns
    -------
    list of list of str
        Each cycle as ``[a, b, ..., a]``, sorted.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    sccs: list[set[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(comp)

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(_cycle_in(comp, graph) for comp in sccs)


def _cycle_in(comp: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest cycle through the smallest name of a strongly connected component."""
    start = min(comp)
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & comp):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [*reversed(path), start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return sorted(comp)  # unreachable for a true component


def large_classes(modules: list[Module], limit: int = MAX_CLASS_LINES) -> list[tuple[str, int]]:
    """Classes longer than ``limit`` lines (decorators excluded).

    Parameters
    ----------
    modules : list of Module
    limit : int, optional
        Most lines a class may have.

    Returns
    -------
    list of (str, int)
        ``("module.Class", lines)``, longest first.
    """
    out = []
    for m in modules:
        for node in ast.walk(m.tree):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    out.append((f"{m.name}.{node.name}", lines))
    return sorted(out, key=lambda t: -t[1])


MAP_START = "<!-- module-map:start (tools/module_map.py --write) -->"
MAP_END = "<!-- module-map:end -->"


def format_map(modules: list[Module]) -> str:
    """The module map as text: one line per module, dotted name and summary."""
    width = max(len(m.name) for m in modules)
    return "\n".join(f"{m.name:<{width}}  {m.summary or '(no docstring)'}" for m in modules)


def architecture_block(modules: list[Module]) -> str:
    """The fenced module map that ``ARCHITECTURE.md`` holds between its markers."""
    return f"{MAP_START}\n```text\n{format_map(modules)}\n```\n{MAP_END}"


def write_architecture(modules: list[Module], path: Path = ROOT / "ARCHITECTURE.md") -> bool:
    """Replace the module map in ``ARCHITECTURE.md``; True when it changed."""
    text = path.read_text(encoding="utf-8")
    start, end = text.index(MAP_START), text.index(MAP_END) + len(MAP_END)
    new = text[:start] + architecture_block(modules) + text[end:]
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str] | None = None) -> int:
    """Print the module map (and optionally cycles and long classes)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", action="store_true", help="also list import cycles")
    parser.add_argument("--classes", action="store_true", help="also list long classes")
    parser.add_argument(
        "--write", action="store_true", help="update the module map in ARCHITECTURE.md"
    )
    args = parser.parse_args(argv)
    modules = list(iter_modules())
    if args.write:
        changed = write_architecture(modules)
        print("ARCHITECTURE.md " + ("updated" if changed else "already up to date"))
        return 0
    print(format_map(modules))
    if args.cycles:
        cycles = find_cycles(import_graph(modules))
        print(f"\nimport cycles: {len(cycles)}")
        for c in cycles:
            print("  " + " -> ".join(c))
    if args.classes:
        big = large_classes(modules)
        print(f"\nclasses over {MAX_CLASS_LINES} lines: {len(big)}")
        for name, n in big:
            print(f"  {name}: {n} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
