"""``embstore models layers SPEC``: module names of a model with their output shapes.

Shapes are for one ``--size x --size`` input (224 by default); the names are
what ``embstore extract model --layers`` takes.
"""

from __future__ import annotations

import argparse

__all__ = ["register", "run_layers"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` subcommand (with ``layers``).

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The top-level subparsers of ``embstore``.
    """
    p = subparsers.add_parser(
        "models",
        help="inspect models for 'embstore extract model'",
        description="Inspect torchvision, timm, open_clip and Hugging Face models.",
    )
    sub = p.add_subparsers(dest="models_command", metavar="COMMAND")
    lp = sub.add_parser(
        "layers",
        help="module names with output shapes for a 224x224 input",
        description="List every named module of a model with its output shape for one "
        "image (random weights; nothing is downloaded).",
    )
    lp.add_argument("spec", help="torchvision:NAME, timm:NAME, open_clip:NAME or hf:DIRECTORY")
    lp.add_argument("--size", type=int, default=224, help="input side in pixels (default 224)")
    lp.add_argument(
        "--depth", type=int, default=None, help="only names with at most this many parts"
    )
    lp.add_argument(
        "--all", action="store_true", help="also modules the forward pass does not call"
    )
    lp.set_defaults(func=run_layers)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def run_layers(args: argparse.Namespace) -> int:
    """Print the layer table of ``args.spec``.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments of ``models layers``.

    Returns
    -------
    int
        0.
    """
    import logging

    from extractors.models import layer_table, load_model

    logging.getLogger("extractors.models.sources").setLevel(
        logging.ERROR
    )  # random weights are the point
    rows = layer_table(load_model(args.spec), size=args.size, max_depth=args.depth)
    width = max([len(r["name"]) for r in rows] + [4])
    print(f"{'name':<{width}}  {'type':<24}  output shape ({args.size}x{args.size} input)")
    for r in rows:
        if r["shape"] is None and not args.all:
            continue
        shape = "not called" if r["shape"] is None else "x".join(str(s) for s in r["shape"])
        print(f"{r['name']:<{width}}  {r['type']:<24}  {shape}")
    return 0
