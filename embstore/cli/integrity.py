"""``embstore check`` and ``embstore repair``: verify a store, roll it back to its last valid commit."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def _check(args: argparse.Namespace) -> int:
    from ..store.integrity import check

    rep = check(args.store)
    for line in rep.lines():
        print(line)
    return 0 if rep.ok else 1


def _repair(args: argparse.Namespace) -> int:
    from ..store.integrity import repair

    rep = repair(args.store)
    for line in rep.lines():
        print(line)
    return 0 if rep.ok else 1


def register(subparsers: Any) -> None:
    """Add the ``check`` and ``repair`` subcommands.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        From :meth:`argparse.ArgumentParser.add_subparsers`.
    """
    p = subparsers.add_parser(
        "check",
        help="verify a store: records, every committed chunk, tables, blobs (exit 1 if damaged)",
        description="Read everything a store promises and list damage and uncommitted leftovers. Changes nothing.",
    )
    p.add_argument("store", help="store path (.zarr or .h5)")
    p.set_defaults(func=_check)
    p = subparsers.add_parser(
        "repair",
        help="roll a store back to its last valid commit and remove uncommitted leftovers",
        description="Quarantine unreadable records, rebuild lost commit records, finish an interrupted "
        "set_coords and remove orphans. Never deletes a committed row. Refuses while a writer is open.",
    )
    p.add_argument("store", help="store path (.zarr or .h5)")
    p.set_defaults(func=_repair)
