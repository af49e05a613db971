"""``embstore extract MODEL ...``: one sub-subcommand per extractor.

The extractors are discovered through the ``embstore.extractors`` entry-point
group (``[project.entry-points."embstore.extractors"]`` in ``pyproject.toml``),
as xarray discovers its backends: each entry point names a
``register(subparsers)`` function, e.g. ``extractors.detr.cli:register``. A
third-party package adds an extract command by declaring one. The command
modules import torch only inside the command function.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
from collections.abc import Callable
from typing import Any

__all__ = ["ENTRY_POINT_GROUP", "extractor_commands", "register"]

#: The entry-point group extract commands are registered in.
ENTRY_POINT_GROUP = "embstore.extractors"

#: The built-in commands, in ``--help`` order (also used when the package's
#: metadata is not installed, e.g. a source checkout on ``PYTHONPATH``).
EXTRACTOR_CLI_MODULES = (
    "extractors.detr.cli",
    "extractors.face.cli",
    "extractors.siglip.cli",
    "extractors.models.cli",
)


def _builtin(module_name: str) -> Callable[[Any], None] | None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None  # the extractors package is not installed
        raise
    register_fn: Callable[[Any], None] = module.register
    return register_fn


def extractor_commands() -> list[Callable[[Any], None]]:
    """The ``register(subparsers)`` functions of every extract command.

    Entry points of the group :data:`ENTRY_POINT_GROUP`, the built-in ones
    first in their usual order, then the others by name. Without any entry
    point (package metadata not installed) the built-in modules are used.

    Returns
    -------
    list of callable

    Examples
    --------
    >>> [f.__module__ for f in extractor_commands()][:2]
    ['extractors.detr.cli', 'extractors.face.cli']
    """
    eps = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    order = {m: i for i, m in enumerate(EXTRACTOR_CLI_MODULES)}
    eps.sort(key=lambda ep: (order.get(ep.module, len(order)), ep.name))
    found: list[Callable[[Any], None]] = []
    seen: set[str] = set()
    for ep in eps:
        if ep.value in seen:
            continue  # the same distribution seen twice (editable + site-packages)
        seen.add(ep.value)
        try:
            found.append(ep.load())
        except ModuleNotFoundError as exc:
            if exc.name and ep.module.startswith(exc.name):
                continue
            raise
    if not found:
        for module_name in EXTRACTOR_CLI_MODULES:
            fn = _builtin(module_name)
            if fn is not None:
                found.append(fn)
    return found


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``extract`` and its per-model subcommands.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The top-level subparsers of ``embstore``.
    """
    parser = subparsers.add_parser(
        "extract",
        help="extract embeddings with a model into a store (re-running resumes)",
        description="Extract embeddings with a model into a store. "
        "Re-running the same command on an existing store extracts only missing rows.",
    )
    models = parser.add_subparsers(dest="model", metavar="MODEL")
    for register_command in extractor_commands():
        register_command(models)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
