"""``embstore extract MODEL ...``: one sub-subcommand per extractor.

Each extractor package contributes ``extractors.<name>.cli.register(subparsers)``;
those modules import torch only inside the command function.
"""

from __future__ import annotations

import argparse
import importlib

__all__ = ["register"]

#: Extractor CLI modules, in ``--help`` order.
EXTRACTOR_CLI_MODULES = (
    "extractors.detr.cli",
    "extractors.face.cli",
    "extractors.siglip.cli",
    "extractors.models.cli",
)


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
    for module_name in EXTRACTOR_CLI_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue
            raise
        module.register(models)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
