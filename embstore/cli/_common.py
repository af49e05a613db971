"""The glue the subcommands share: common options, opening a store, writing results.

- :func:`add_vector_arguments`, :func:`add_group_stat_arguments`,
  :func:`add_switch`: option groups several commands take, registered once.
- :func:`pool_option`, :func:`group_stat_options`, :func:`parse_ids`: parsed
  options turned into library arguments.
- :func:`open_analyzer`, :func:`analyzer_session`, :func:`select_rows`: a store
  and an analyzer over the selected rows.
- :func:`write_or_show`, :func:`print_result`: output, to a file or stdout.

Heavy modules (the store, the analyzer, numpy, pandas) are imported inside the
functions, so registering the commands stays cheap.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = [
    "add_group_stat_arguments",
    "add_switch",
    "add_vector_arguments",
    "analyzer_session",
    "group_stat_options",
    "open_analyzer",
    "parse_ids",
    "pool_option",
    "print_result",
    "select_rows",
    "write_or_show",
]


def add_vector_arguments(
    p: argparse.ArgumentParser,
    *,
    variable_help: str = "variable (default: the store's embedding variable)",
    pool_help: str = "pooling over queries (default: %(default)s)",
) -> None:
    """Add ``STORE --variable --pool --layer --metric --device`` (which vectors, how compared).

    Parameters
    ----------
    p : argparse.ArgumentParser
        The subcommand's parser.
    variable_help, pool_help : str, optional
        Help of ``--variable`` and ``--pool``.

    Examples
    --------
    >>> p = argparse.ArgumentParser()
    >>> add_vector_arguments(p)
    >>> p.parse_args(["run.zarr", "--pool", "none"]).pool
    'none'
    """
    p.add_argument("store", help="path or URL of the store")
    p.add_argument("--variable", default=None, help=variable_help)
    p.add_argument("--pool", default="mean", help=pool_help)
    p.add_argument("--layer", type=int, default=None, help="layer of decoder_output")
    p.add_argument("--metric", default="cosine", choices=["cosine", "ip", "l2"])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


def add_group_stat_arguments(p: argparse.ArgumentParser, *, by_help: str) -> None:
    """Add ``STORE --by --out --pool --n-boot --n-perm --seed --alpha --min-count``.

    The options of the commands that compare groups with bootstrap intervals
    and permutation tests (``fairness``, ``layers``); read them back with
    :func:`pool_option` and :func:`group_stat_options`.

    Parameters
    ----------
    p : argparse.ArgumentParser
        The subcommand's parser.
    by_help : str
        Help of ``--by``.

    Examples
    --------
    >>> p = argparse.ArgumentParser()
    >>> add_group_stat_arguments(p, by_help="grouping coordinate")
    >>> args = p.parse_args(["s.zarr", "--by", "skin", "--out", "o", "--n-boot", "10"])
    >>> group_stat_options(args)
    {'n_boot': 10, 'n_perm': 199, 'seed': 0, 'alpha': 0.05, 'min_count': 20}
    """
    p.add_argument("store", help="path of the store (e.g. run.zarr)")
    p.add_argument("--by", action="append", required=True, metavar="COORD", help=by_help)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--pool", default="mean", help="pooling over queries, or 'none' (default: %(default)s)"
    )
    p.add_argument(
        "--n-boot", type=int, default=1000, help="bootstrap replicates (default: %(default)s)"
    )
    p.add_argument(
        "--n-perm", type=int, default=199, help="permutations per test (default: %(default)s)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument(
        "--alpha", type=float, default=0.05, help="interval error level (default: %(default)s)"
    )
    p.add_argument(
        "--min-count",
        type=int,
        default=20,
        help="groups smaller than this get NaN figures (default: %(default)s)",
    )


def group_stat_options(args: argparse.Namespace) -> dict[str, Any]:
    """The statistics keywords of :func:`add_group_stat_arguments`'s options.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments.

    Returns
    -------
    dict
        ``n_boot``, ``n_perm``, ``seed``, ``alpha`` and ``min_count``.
    """
    return {
        "n_boot": args.n_boot,
        "n_perm": args.n_perm,
        "seed": args.seed,
        "alpha": args.alpha,
        "min_count": args.min_count,
    }


def add_switch(
    p: argparse.ArgumentParser,
    on: str,
    off: str,
    *,
    dest: str,
    help_on: str,
    help_off: str,
) -> None:
    """Add a ``--x`` / ``--no-x`` pair whose default (None) means "decide from the data".

    Parameters
    ----------
    p : argparse.ArgumentParser
        The subcommand's parser.
    on, off : str
        The two flags, e.g. ``"--detection"`` and ``"--no-detection"``.
    dest : str
        Attribute name: True, False or None (neither flag given).
    help_on, help_off : str
        Their help.

    Examples
    --------
    >>> p = argparse.ArgumentParser()
    >>> add_switch(p, "--norm", "--raw", dest="norm", help_on="a", help_off="b")
    >>> [p.parse_args(a).norm for a in ([], ["--norm"], ["--raw"])]
    [None, True, False]
    """
    group = p.add_mutually_exclusive_group()
    group.add_argument(on, dest=dest, action="store_true", default=None, help=help_on)
    group.add_argument(off, dest=dest, action="store_false", help=help_off)


def pool_option(args: argparse.Namespace) -> Any:
    """``--pool`` as the library takes it: ``none``/``null``/empty become None.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments with a ``pool`` attribute.

    Returns
    -------
    str or None

    Examples
    --------
    >>> pool_option(argparse.Namespace(pool="None")), pool_option(argparse.Namespace(pool="max"))
    (None, 'max')
    """
    return None if str(args.pool).lower() in ("none", "null", "") else args.pool


def parse_ids(values: Sequence[str], store: Any) -> list[Any]:
    """Row ids typed on the command line, as the store's id type.

    Parameters
    ----------
    values : sequence of str
        The ``--ids`` words.
    store : embstore.Store
        The store (its ids decide: integers are parsed, strings kept).

    Returns
    -------
    list

    Raises
    ------
    ValidationError
        A word is not an integer while the store's ids are.

    Examples
    --------
    >>> from embstore import Store
    >>> with Store.open(demo_path) as st:
    ...     parse_ids(["3", "+4"], st)
    [3, 4]
    """
    import numpy as np

    from ..errors import ValidationError

    kind = np.asarray(store.ids).dtype.kind
    if kind in "iu":
        bad = [v for v in values if not v.lstrip("+-").isdigit()]
        if bad:
            raise ValidationError(
                f"--ids {' '.join(bad)}: this store's ids ({store.id_name}) are integers, "
                f"e.g. --ids {' '.join(str(i) for i in np.asarray(store.ids)[:2])}"
            )
        return [int(v) for v in values]
    return list(values)


def select_rows(an: Any, tokens: Sequence[str], store: Any) -> Any:
    """``an`` restricted to the rows that ``KEY=VALUE`` tokens select (all without tokens).

    Parameters
    ----------
    an : EmbeddingAnalyzer
        The analyzer.
    tokens : sequence of str
        ``KEY=VALUE`` words (:func:`embstore.summary.parse_selection`).
    store : embstore.Store
        The store whose coordinates the values are parsed against.

    Returns
    -------
    EmbeddingAnalyzer
    """
    if not tokens:
        return an
    from ..summary import parse_selection

    return an.sel(**parse_selection(list(tokens), store.coords))


def open_analyzer(
    path: str,
    mode: str = "r",
    sel: Sequence[str] = (),
    *,
    wrap: Callable[[Any], Any] | None = None,
) -> tuple[Any, Any]:
    """Open a store and an analyzer over the rows ``sel`` selects.

    The caller closes the store (or use :func:`analyzer_session`).

    Parameters
    ----------
    path : str
        The store.
    mode : {"r", "a"}, optional
        ``"a"`` when the command writes coordinates or indexes.
    sel : sequence of str, optional
        ``KEY=VALUE`` selection words.
    wrap : callable, optional
        Turns the open store into the analyzer's source (``--over`` pools a
        spatial variable through :class:`~embstore.analysis.sources.PooledSource`).

    Returns
    -------
    store : embstore.Store
    analyzer : EmbeddingAnalyzer
    """
    from ..analysis import EmbeddingAnalyzer
    from ..store import Store

    store = Store.open(path, mode=mode)
    try:
        source = wrap(store) if wrap is not None else store
        return store, select_rows(EmbeddingAnalyzer(source), sel, store)
    except BaseException:
        store.close()
        raise


@contextmanager
def analyzer_session(
    path: str, mode: str = "r", sel: Sequence[str] = ()
) -> Iterator[tuple[Any, Any]]:
    """:func:`open_analyzer` as a context manager that closes the store.

    Parameters
    ----------
    path, mode, sel
        As :func:`open_analyzer`.

    Yields
    ------
    (store, analyzer)

    Examples
    --------
    >>> with analyzer_session(demo_path, sel=["skin=1"]) as (store, an):
    ...     len(an) < len(store)
    True
    """
    store, an = open_analyzer(path, mode, sel)
    try:
        yield store, an
    finally:
        store.close()


def write_or_show(df: Any, out: str | None, what: str, head: int | None = None) -> None:
    """Write a result table to ``out`` (CSV), or print it (its first ``head`` rows).

    Parameters
    ----------
    df : pandas.DataFrame
        The result.
    out : str or None
        CSV path (``--out``); None prints the table.
    what : str
        What the rows are, for the ``wrote N <what> to <out>`` line.
    head : int, optional
        Print only this many rows (and nothing for an empty table).

    Examples
    --------
    >>> import pandas as pd
    >>> write_or_show(pd.DataFrame({"id": [1, 2]}), None, "rows")
     id
      1
      2
    """
    if out:
        df.to_csv(out, index=False)
        print(f"wrote {len(df)} {what} to {out}")
    elif head is None:
        print(df.to_string(index=False))
    elif len(df):
        print(df.head(head).to_string(index=False))


def print_result(result: Any, as_json: bool) -> None:
    """Print a command's result: JSON (``--json``, via ``to_dict()`` when it has one) or text.

    Parameters
    ----------
    result : object
        A report object, a dict or a message.
    as_json : bool
        Print JSON.

    Examples
    --------
    >>> print_result({"files": 3}, True)
    {"files": 3}
    """
    if as_json:
        payload = result.to_dict() if hasattr(result, "to_dict") else result
        print(json.dumps(payload, default=str))
    else:
        print(result)
