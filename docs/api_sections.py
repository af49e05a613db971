"""The API reference, grouped by task, generated from the code.

``docs/conf.py`` calls :func:`write_api_tables` before Sphinx reads any page:
it writes ``docs/api_tables.rst`` (included by ``docs/api.rst``) with one
``autosummary`` table per section; autosummary then writes one page per
object into ``docs/generated/``.

A section lists objects (``"embstore.Store"``) and modules whose ``__all__``
is expanded (``"embstore.search:*"``), so that a name added to a module's
``__all__`` appears without touching the docs. Modules that are not
importable here (an optional extra missing, or a module another branch adds)
are skipped. To document a new public module, add one line below.
Internals (commit records, buffers, locks, backends) are left out on purpose.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

#: (title, one-line description, entries). An entry is "module.name" or "module:*".
SECTIONS: list[tuple[str, str, list[str]]] = [
    (
        "Store",
        "Create, open, append to and read a store.",
        [
            "embstore.Store",
            "embstore.store.default_dtype",
            "embstore.store.integrity:*",
            "embstore.store.validation.check_name",
            "embstore.store.xrio:*",
            "embstore.store.decode.float16_to_float32",
            "embstore.store.decode.read_decoded",
        ],
    ),
    (
        "Selection",
        "Labeled row selection, also on plain xarray objects.",
        [
            "embstore.selection:*",
            "embstore.summary:*",
            "embstore.analysis.defaults:*",
        ],
    ),
    (
        "Analyzer",
        "Pooling, labeled matrices, projections, statistics and the old analyzer's calls.",
        [
            "embstore.EmbeddingAnalyzer",
            "embstore.analysis.pooling.pool_queries",
            "embstore.analysis.plots.pca_projection",
            "embstore.analysis.plots.tsne_projection",
            "embstore.analysis.plots.scatter_projection",
            "embstore.plotting:*",
            "embstore.analysis.similarity:*",
            "embstore.analysis.layers:*",
            "embstore.analysis.attention:*",
            "embstore.analysis.spec:*",
            "embstore.analysis.blocks:*",
        ],
    ),
    (
        "Search",
        "k-NN search, indexes, near-duplicates and clustering on any array or store.",
        [
            "embstore.search:*",
        ],
    ),
    (
        "Fairness",
        "Group statistics, detection fairness, plots and the report.",
        [
            "embstore.fairness:*",
            "embstore.fairness.report.write_fairness_report",
            "embstore.fairness.report.FairnessReport",
            "embstore.fairness.plots:*",
        ],
    ),
    (
        "Discovery",
        "Outliers, leaks, galleries, the explorer and exports.",
        [
            "embstore.discovery:*",
        ],
    ),
    (
        "Old layouts",
        "Import and export of per-file ``.pt`` / ``.npy`` outputs.",
        [
            "embstore.legacy:*",
        ],
    ),
    (
        "Scaling out",
        "Dask clusters and distributed analysis.",
        [
            "embstore.distributed:*",
        ],
    ),
    (
        "Extractors",
        "Models that write stores, and the pipeline they share.",
        [
            "extractors.detr:*",
            "extractors.detr.run.extract_detr",
            "extractors.face:*",
            "extractors.siglip:*",
            "extractors.models:*",
            "extractors.detr.attention:*",
            "extractors.protocol:*",
            "extractors.summary:*",
            "extractors.pipeline:*",
            "extractors.runlog:*",
            "extractors.base:*",
            "extractors.datasets:*",
            "extractors.device:*",
            "extractors.distributed:*",
            "extractors.samples:*",
        ],
    ),
    (
        "Command line",
        "The ``embstore`` entry point (see :doc:`cli_reference` for every command).",
        [
            "embstore.cli.main",
            "embstore.cli.build_parser",
            "extractors.cli_common:*",
        ],
    ),
    (
        "Errors",
        "One hierarchy; each class also subclasses the builtin a caller would catch.",
        [
            "embstore.errors:*",
        ],
    ),
]


def _documentable(obj: object) -> bool:
    return inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismethod(obj) or callable(obj)


def expand(entry: str) -> list[str]:
    """Fully qualified names of one section entry (empty if not importable).

    Parameters
    ----------
    entry : str
        ``"module.name"`` or ``"module:*"``.

    Returns
    -------
    list of str
    """
    if entry.endswith(":*"):
        module_name = entry[:-2]
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            return []
        names = [n for n in getattr(module, "__all__", []) if not n.startswith("_")]
        return [f"{module_name}.{n}" for n in names if _documentable(getattr(module, n, None))]
    module_name, _, name = entry.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return []
    return [entry] if hasattr(module, name) else []


def write_api_tables(path: str | Path) -> list[str]:
    """Write the autosummary tables of every section to ``path``.

    Parameters
    ----------
    path : str or pathlib.Path
        The ``.rst`` file to (re)write; unchanged content is not rewritten,
        so Sphinx does not rebuild it needlessly.

    Returns
    -------
    list of str
        Every documented name, in order.
    """
    seen: set[str] = set()
    lines = [".. This file is generated by docs/api_sections.py; edit that file instead.", ""]
    documented: list[str] = []
    for title, description, entries in SECTIONS:
        names: list[str] = []
        for entry in entries:
            for name in expand(entry):
                obj_key = _identity(name)
                if obj_key in seen:
                    continue
                seen.add(obj_key)
                names.append(name)
        if not names:
            continue
        lines += [
            title,
            "-" * len(title),
            "",
            description,
            "",
            ".. autosummary::",
            "   :toctree: generated/",
            "   :nosignatures:",
            "",
        ]
        lines += [f"   {n}" for n in names] + [""]
        documented += names
    text = "\n".join(lines)
    path = Path(path)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return documented


def _identity(name: str) -> str:
    """One key per object, so that re-exports are documented once."""
    module_name, _, attr = name.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        return name
    return f"{getattr(obj, '__module__', module_name)}.{getattr(obj, '__qualname__', attr)}"
