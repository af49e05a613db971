"""The ``embstore`` command line.

Subcommands live in small modules; each exposes ``register(subparsers)``
which adds its parser and sets ``func`` (a callable taking the parsed
namespace and returning an exit code). Modules are imported lazily and
never import torch, faiss or matplotlib at module level.

Examples
--------
.. code-block:: console

    $ embstore info run.zarr
    $ embstore extract detr --checkpoint detr-r50-e632da11.pth --images photos/ --out run.zarr
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import EmbstoreError
from ._runtime import cli_message, command_options, configure_logging, silence_stdout

__all__ = ["build_parser", "main"]

#: Modules contributing subcommands, in the order they appear in ``--help``.
SUBCOMMAND_MODULES = (
    "embstore.cli.store_cmds",
    "embstore.cli.extract",
    "embstore.cli.legacy",
    "embstore.cli.analysis",
    "embstore.cli.fairness",
    "embstore.cli.integrity",
    "embstore.cli.discovery",
    "embstore.cli.layers",
    "embstore.cli.models",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level argument parser with every available subcommand.

    Returns
    -------
    argparse.ArgumentParser
        The parser; ``parse_args`` yields a namespace with ``func``.
    """
    parser = argparse.ArgumentParser(
        prog="embstore",
        description="Extract, store and analyse embeddings of image datasets.",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more logging, Dask's included (-vv for debug)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        The exit code: 0 on success, 2 for a usage or input error (one line
        on stderr naming the bad value and the flag that fixes it), 141 when
        the reader of stdout went away (``embstore select ... | head``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        silence_stdout()
        return 141  # 128 + SIGPIPE, like a command killed by the closed pipe
    except EmbstoreError as exc:
        message = cli_message(str(exc), command_options(parser, args))
        print(f"embstore: error: {type(exc).__name__}: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("embstore: interrupted; committed rows are kept, re-run to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
