"""``embstore leaks``, ``outliers``, ``gallery``, ``explore`` and ``export`` (discovery).

Examples
--------
.. code-block:: console

    $ embstore leaks run.zarr --query split=test --against split=train --threshold 0.95
    $ embstore outliers run.zarr -k 10 --by skin --out outliers.csv

faiss is imported only when a command runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from ._common import (
    add_vector_arguments,
    analyzer_session,
    parse_ids,
    pool_option,
    select_rows,
    write_or_show,
)

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the discovery subcommands.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The top-level subparsers of ``embstore``.
    """
    lk = subparsers.add_parser(
        "leaks",
        help="pairs across two selections (or stores) above a threshold",
        description="Find rows of one selection (e.g. the test split) that are near copies of rows "
        "of another selection or store (e.g. the training split). Exhaustive and exact unless -k is given.",
    )
    add_vector_arguments(lk)
    lk.add_argument(
        "--query",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="the query side (e.g. split=test)",
    )
    lk.add_argument(
        "--against",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="the searched side (e.g. split=train)",
    )
    lk.add_argument(
        "--against-store", default=None, help="search this other store instead of STORE"
    )
    lk.add_argument("--threshold", type=float, default=0.95, help="default: %(default)s")
    lk.add_argument(
        "-k", type=int, default=None, help="at most K matches per query row (default: all)"
    )
    lk.add_argument(
        "--kind", default=None, help="with -k: index kind on the searched side (e.g. ivf)"
    )
    lk.add_argument("--out", default=None, help="write the pairs to this CSV file")
    lk.set_defaults(func=_leaks)

    ol = subparsers.add_parser(
        "outliers",
        help="outlier score per row (mean cosine distance to the k nearest neighbours)",
        description="Score every row by its mean cosine distance to its k nearest neighbours; "
        "print the most unusual ones (or save all as CSV / as a coordinate).",
    )
    add_vector_arguments(ol)
    ol.add_argument("-k", type=int, default=10, help="neighbours (default: %(default)s)")
    ol.add_argument(
        "--by", nargs="*", default=None, help="score within each group of these coordinates"
    )
    ol.add_argument(
        "--sel", nargs="*", default=[], metavar="KEY=VALUE", help="analyse only matching rows"
    )
    ol.add_argument(
        "--kind", default="auto", help="auto (exact < 1M rows, else IVF), exact, ivf, hnsw"
    )
    ol.add_argument(
        "--coord", default=None, help="write the scores to the store as this coordinate"
    )
    ol.add_argument("--top", type=int, default=20, help="rows printed (default: %(default)s)")
    ol.add_argument("--out", default=None, help="write every score to this CSV file")
    ol.set_defaults(func=_outliers)

    ga = subparsers.add_parser(
        "gallery",
        help="captioned HTML gallery of duplicates, clusters, outliers, neighbours or leaks",
        description="Write a self-contained, paginated HTML gallery (thumbnails embedded) with captions "
        "(id, file name, group, score, skin, lighting).",
    )
    add_vector_arguments(ga)
    ga.add_argument(
        "--kind",
        required=True,
        choices=["duplicates", "clusters", "outliers", "neighbors", "leaks"],
    )
    ga.add_argument(
        "--image-root", default=None, help="folder relative image paths are resolved against"
    )
    ga.add_argument("--path-coord", default=None, help="coordinate holding image paths")
    ga.add_argument("--out", required=True, help="output folder (index.html is the first page)")
    ga.add_argument(
        "--threshold", type=float, default=None, help="duplicates 0.9, clusters 0.7, leaks 0.95"
    )
    ga.add_argument("-k", type=int, default=None, help="neighbours searched")
    ga.add_argument("--ids", nargs="*", default=None, help="query ids for --kind neighbors")
    ga.add_argument(
        "--sel",
        "--query",
        dest="sel",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="show only matching rows (the query side of leaks)",
    )
    ga.add_argument(
        "--against", nargs="*", default=[], metavar="KEY=VALUE", help="searched side of leaks"
    )
    ga.add_argument("--n-groups", type=int, default=50)
    ga.add_argument("--per-group", type=int, default=12)
    ga.add_argument("--per-page", type=int, default=300)
    ga.add_argument("--thumb", type=int, default=160, help="thumbnail box in pixels")
    ga.set_defaults(func=_gallery)

    xp = subparsers.add_parser(
        "explore",
        help="standalone interactive HTML explorer of a 2-D projection",
        description="Write one HTML file (plotly.js inlined, opens from disk) with a PCA (or UMAP) "
        "projection coloured by a coordinate; hover shows the image and coordinates, lasso/box "
        "selection lists the ids. Stores above --max-points rows are subsampled.",
    )
    add_vector_arguments(xp)
    xp.add_argument(
        "--color", default="skin", help="coordinate that colours the points (default: %(default)s)"
    )
    xp.add_argument("--method", default="pca", choices=["pca", "umap"])
    xp.add_argument(
        "--image-root", default=None, help="folder relative image paths are resolved against"
    )
    xp.add_argument("--path-coord", default=None, help="coordinate holding image paths")
    xp.add_argument(
        "--sel", nargs="*", default=[], metavar="KEY=VALUE", help="show only matching rows"
    )
    xp.add_argument(
        "--max-points",
        type=int,
        default=100_000,
        help="subsample above this (default: %(default)s)",
    )
    xp.add_argument("--out", required=True, help="output .html file")
    xp.set_defaults(func=_explore)

    ex = subparsers.add_parser(
        "export",
        help="export ids, coordinates and vectors to Parquet or a Hugging Face dataset",
        description="Write one row per store row (ids, every coordinate, one list column per "
        "variable) to a Parquet file or a Hugging Face dataset folder (datasets.load_from_disk).",
    )
    ex.add_argument("store", help="path or URL of the store")
    ex.add_argument("--format", required=True, choices=["parquet", "hf"])
    ex.add_argument("--out", required=True, help="output .parquet file or dataset folder")
    ex.add_argument(
        "--variables", nargs="*", default=None, help="variables (default: per-row vectors)"
    )
    ex.add_argument("--pool", default="mean", help="pooling of multi-vector variables, or none")
    ex.add_argument("--normalize", action="store_true", help="L2-normalise the vectors")
    ex.add_argument(
        "--sel", nargs="*", default=[], metavar="KEY=VALUE", help="export only matching rows"
    )
    ex.set_defaults(func=_export)


def _leaks(args: argparse.Namespace) -> int:
    from ..analysis import EmbeddingAnalyzer
    from ..store import Store

    store = Store.open(args.store)
    other_store = Store.open(args.against_store) if args.against_store else store
    try:
        query = select_rows(EmbeddingAnalyzer(store), args.query, store)
        against = select_rows(EmbeddingAnalyzer(other_store), args.against, other_store)
        df = query.leaks(
            against,
            args.threshold,
            args.k,
            variable=args.variable,
            pool=pool_option(args),
            layer=args.layer,
            metric=args.metric,
            kind=args.kind,
            device=args.device,
        )
        n_query = len(query)
    finally:
        store.close()
        if other_store is not store:
            other_store.close()
    n_rows = df["i"].nunique()
    print(
        f"{len(df)} leaking pairs (score >= {args.threshold}) involving {n_rows} of {n_query} query rows"
    )
    write_or_show(df, args.out, "pairs", head=50)
    return 0


def _outliers(args: argparse.Namespace) -> int:
    with analyzer_session(args.store, "a" if args.coord else "r", args.sel) as (_, an):
        df = an.outliers(
            args.k,
            variable=args.variable,
            by=args.by or None,
            pool=pool_option(args),
            layer=args.layer,
            metric=args.metric,
            kind=args.kind,
            coord=args.coord,
            device=args.device,
        )
    print(df.head(args.top).to_string(index=False))
    if args.coord:
        print(f"scores written to coordinate {args.coord!r}")
    if args.out:
        write_or_show(df, args.out, "scores")
    return 0


def _export(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    with analyzer_session(args.store, "r", args.sel) as (_, an):
        n = len(an)
        if args.format == "parquet":
            out = an.to_parquet(
                args.out, args.variables, pool_option(args), normalize=args.normalize
            )
        else:
            with tempfile.TemporaryDirectory(prefix="embstore-hf-") as tmp:
                ds = an.to_hf_dataset(
                    args.variables,
                    pool_option(args),
                    normalize=args.normalize,
                    path=Path(tmp) / "data.arrow",
                )
                ds.save_to_disk(args.out)
                del ds
            out = Path(args.out)
    print(f"wrote {n} rows to {out} ({args.format})")
    return 0


def _gallery(args: argparse.Namespace) -> int:
    with analyzer_session(args.store) as (store, base):
        an = select_rows(base, args.sel, store)
        against = select_rows(base, args.against, store) if args.kind == "leaks" else None
        ids = parse_ids(args.ids, store) if args.ids else None
        page = an.gallery(
            args.kind,
            args.out,
            image_root=args.image_root,
            path_coord=args.path_coord,
            variable=args.variable,
            pool=pool_option(args),
            threshold=args.threshold,
            k=args.k,
            ids=ids,
            against=against,
            n_groups=args.n_groups,
            per_group=args.per_group,
            per_page=args.per_page,
            thumb=args.thumb,
            device=args.device,
        )
    print(f"wrote {page}")
    return 0


def query_search(args: argparse.Namespace, an: Any, store: Any) -> Any:
    """``embstore search --text/--image``: search with the store's recorded extractor."""
    variable = args.variable
    if variable == "query_embeddings" and variable not in store.variables:
        variable = None  # the search command's default: use the store's embedding variable
    kw = dict(variable=variable, weights=args.weights, kind=args.kind, device=args.device)
    if args.text:
        return an.search_text(args.text, args.k, **kw)
    return an.search_images(args.image, args.k, **kw)


def _explore(args: argparse.Namespace) -> int:
    with analyzer_session(args.store, "r", args.sel) as (store, an):
        color = args.color if args.color and args.color.lower() != "none" else None
        if color == "skin" and "skin" not in store.coords.columns:
            color = None  # the default colour coordinate is optional
        info = an.explore(
            args.out,
            color=color,
            variable=args.variable,
            pool=pool_option(args),
            method=args.method,
            image_root=args.image_root,
            path_coord=args.path_coord,
            max_points=args.max_points,
        )
    print(info["note"])
    print(f"wrote {info['path']}")
    return 0
