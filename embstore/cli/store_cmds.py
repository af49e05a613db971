"""``embstore info`` and ``embstore select``: inspect a store from the shell."""

from __future__ import annotations

import argparse

from ..summary import format_selection, format_summary, parse_selection

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``info`` and ``select`` subcommands.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The top-level subparsers of ``embstore``.
    """
    info = subparsers.add_parser(
        "info", help="print a store's schema, row count, coordinates and provenance"
    )
    info.add_argument("store", help="path or URL of the store")
    info.set_defaults(func=_info)

    select = subparsers.add_parser(
        "select",
        help="select rows by coordinates, e.g. skin=1 lighting=well_lit",
        description="Select rows by coordinate values and print the matching ids "
        "and coordinates. Several KEY=VALUE pairs are ANDed; VALUE may be a "
        "comma-separated list (ORed).",
    )
    select.add_argument("store", help="path or URL of the store")
    select.add_argument("selection", nargs="+", metavar="KEY=VALUE")
    select.add_argument("--variable", default=None, help="variable to summarise")
    select.set_defaults(func=_select)


def _info(args: argparse.Namespace) -> int:
    from ..store import Store

    with Store.open(args.store) as store:
        print(format_summary(store))
    return 0


def _select(args: argparse.Namespace) -> int:
    from ..store import Store

    with Store.open(args.store) as store:
        labels = parse_selection(args.selection, store.coords)
        print(format_selection(store, labels, variable=args.variable))
    return 0
