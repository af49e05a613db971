"""``embstore search``, ``embstore dedup`` and ``embstore cluster`` on a store.

Examples
--------
.. code-block:: console

    $ embstore search faces.zarr --variable embedding --ids img_001 img_002 -k 5
    $ embstore dedup faces.zarr --variable embedding --threshold 0.9 --out dedup/
    $ embstore cluster faces.zarr --variable embedding --remove-duplicates \\
          --duplicate-thresh 0.9 --cluster-thresh 0.7 --topK 100 --batch 200000 \\
          --out labels/ --save-groups 50 --image-root /data/faces

faiss is imported only when a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ._common import open_analyzer, write_or_show
from ._common import parse_ids as _ids
from ._common import pool_option as _pool

__all__ = ["register"]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="path or URL of the store")
    p.add_argument(
        "--variable",
        default=None,
        help="variable to search (default: the store's default variable)",
    )
    p.add_argument(
        "--pool",
        default="mean",
        help="pooling over queries: mean, max, confidence, topk:K, or none (default: %(default)s)",
    )
    p.add_argument("--layer", type=int, default=None, help="layer of decoder_output")
    p.add_argument(
        "--over",
        default=None,
        metavar="DIMS",
        help="pool a spatial variable (channel, y, x) over these dims first, e.g. y,x "
        "(mean, or max with --pool max)",
    )
    p.add_argument("--metric", default="cosine", choices=["cosine", "ip", "l2"])
    p.add_argument(
        "--kind",
        default=None,
        help="index kind: flat, ivf, hnsw or a faiss factory string, built if missing "
        "(default: an index saved with the store if there is one, else an exact block-wise scan)",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--sel", nargs="*", default=[], metavar="KEY=VALUE", help="analyse only matching rows"
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``search``, ``dedup`` and ``cluster`` subcommands.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The top-level subparsers of ``embstore``.
    """
    s = subparsers.add_parser(
        "search",
        help="k nearest neighbours of stored rows or of query vectors",
        description="Print (or save as CSV) the k nearest neighbours of the given row ids "
        "or of the vectors in a .npy file.",
    )
    _common(s)
    q = s.add_mutually_exclusive_group(required=True)
    q.add_argument("--ids", nargs="+", help="row ids whose vectors are the queries")
    q.add_argument("--vectors", help=".npy file of query vectors (n, dim)")
    q.add_argument(
        "--text", nargs="+", help="text queries, embedded with the store's recorded model"
    )
    q.add_argument(
        "--image", nargs="+", help="query image files, embedded with the store's recorded model"
    )
    s.add_argument(
        "--weights", default=None, help="model weights for --text/--image if moved since extraction"
    )
    s.add_argument("-k", type=int, default=10, help="neighbours per query (default: %(default)s)")
    s.add_argument(
        "--threshold", type=float, default=None, help="range search: all neighbours within it"
    )
    s.add_argument(
        "--exact",
        action="store_true",
        help="exact scan of every vector, ignoring any saved index (not with --kind)",
    )
    s.add_argument(
        "--save-index",
        action="store_true",
        help="build the --kind index and save it with the store",
    )
    s.add_argument("--out", default=None, help="write the results to this CSV file")
    s.set_defaults(func=_search)

    d = subparsers.add_parser(
        "dedup",
        help="find near-duplicate groups (cosine >= threshold)",
        description="Group near-duplicates (connected components of pairs above the "
        "threshold) and report how many rows removing them would drop; the first row "
        "of each group (store order) is kept.",
    )
    _common(d)
    d.add_argument("--threshold", type=float, default=0.90, help="default: %(default)s")
    d.add_argument(
        "-k",
        "--topK",
        dest="k",
        type=int,
        default=100,
        help="neighbours per row (default: %(default)s)",
    )
    d.add_argument("--batch", type=int, default=None, help="query rows per search batch")
    d.add_argument("--out", default=None, help="folder for duplicate_pairs.csv and removed_ids.txt")
    d.set_defaults(func=_dedup)

    c = subparsers.add_parser(
        "cluster",
        help="threshold clustering (union-find over the k-NN graph), labels and previews",
        description="Cluster rows (union-find over neighbours above the threshold) and print the "
        "cluster sizes. With --out, export <prefix>_*_classes.npy / _data_list.npy label files "
        "(prefix fr_train for face stores, as the face training pipeline expects) and preview grids; "
        "with --write-labels, also store the cluster ids as a coordinate.",
    )
    _common(c)
    c.add_argument(
        "--cluster-thresh",
        "--threshold",
        dest="threshold",
        type=float,
        default=0.70,
        help="default: %(default)s",
    )
    c.add_argument(
        "-k",
        "--topK",
        dest="k",
        type=int,
        default=100,
        help="neighbours per row (default: %(default)s)",
    )
    c.add_argument("--batch", type=int, default=None, help="query rows per search batch")
    c.add_argument(
        "--remove-duplicates", action="store_true", help="drop near-duplicates before clustering"
    )
    c.add_argument("--duplicate-thresh", type=float, default=0.90, help="default: %(default)s")
    c.add_argument(
        "--write-labels",
        action="store_true",
        help="write the cluster ids into the store as coordinate --coord (default: the store "
        "is not changed)",
    )
    c.add_argument(
        "--coord", default="cluster", help="coordinate --write-labels writes (default: %(default)s)"
    )
    c.add_argument(
        "--no-write", action="store_true", help=argparse.SUPPRESS
    )  # the old default's opt-out
    c.add_argument(
        "--out", default=None, help="folder for label files, previews and clustering_result.txt"
    )
    c.add_argument(
        "--min-size", type=int, default=1, help="drop smaller clusters from the label files"
    )
    c.add_argument("--save-groups", type=int, default=0, help="preview the N largest clusters")
    c.add_argument(
        "--path-coord", default=None, help="coordinate holding image paths (for previews)"
    )
    c.add_argument(
        "--image-root",
        default=None,
        metavar="DIR",
        help="folder that relative image paths are relative to (for previews)",
    )
    c.add_argument(
        "--prefix",
        default=None,
        help="file name prefix of the label files (default: fr_train for face stores, "
        "else <model>_clusters)",
    )
    c.set_defaults(func=_cluster)


def _over(store: Any, args: argparse.Namespace) -> Any:
    from ..analysis.sources import PooledSource

    method = "max" if str(args.pool).lower() == "max" else "mean"
    return PooledSource(store, args.variable, args.over, method)


def _open(args: argparse.Namespace, mode: str) -> tuple[Any, Any]:
    wrap = (lambda store: _over(store, args)) if getattr(args, "over", None) else None
    return open_analyzer(args.store, mode, args.sel, wrap=wrap)


def _model_name(store: Any) -> str:
    attrs = store.attrs
    return str(attrs.get("model_name") or attrs.get("model") or "embeddings")


def _label_prefix(args: argparse.Namespace, store: Any) -> str:
    if args.prefix:
        return str(args.prefix)
    model = _model_name(store)
    if model.startswith("iresnet"):
        return "fr_train"  # the names the face training pipeline reads
    import re

    return re.sub(r"[^A-Za-z0-9]+", "_", model.split(":")[-1]).strip("_").lower() + "_clusters"


def _search(args: argparse.Namespace) -> int:
    import numpy as np

    from ..errors import ValidationError

    if args.exact and (args.kind or args.save_index):
        raise ValidationError(
            "--exact scans without an index; drop --kind/--save-index (or --exact)"
        )
    store, an = _open(args, "a" if args.save_index else "r")
    try:
        kw = dict(
            variable=args.variable,
            pool=_pool(args),
            layer=args.layer,
            metric=args.metric,
            device=args.device,
            exact=args.exact,
        )
        if args.save_index and args.kind:
            an.build_index(
                args.variable,
                _pool(args),
                args.kind,
                args.metric,
                args.device,
                layer=args.layer,
                progress=None if not args.no_progress else False,
            )
        queries = np.load(args.vectors) if args.vectors else None
        ids = _ids(args.ids, store) if args.ids else None
        if args.text or args.image:
            from .discovery import query_search

            df = query_search(args, an, store)
        elif args.threshold is not None:
            df = an.range_search(queries, args.threshold, ids=ids, kind=args.kind, **kw)
        else:
            df = an.search(queries, args.k, ids=ids, kind=args.kind, **kw)
    finally:
        store.close()
    print(f"searched {args.variable} with: {df.attrs.get('index', 'exact scan')}", file=sys.stderr)
    write_or_show(df, args.out, "results")
    return 0


def _dedup(args: argparse.Namespace) -> int:
    import numpy as np

    store, an = _open(args, "r")
    try:
        progress = False if args.no_progress else None
        groups = an.duplicate_groups(
            args.threshold,
            args.k,
            variable=args.variable,
            pool=_pool(args),
            layer=args.layer,
            metric=args.metric,
            kind=args.kind,
            batch=args.batch,
            device=args.device,
            progress=progress,
        )
        labels = an.labels(args.variable, pool=_pool(args), layer=args.layer)
    finally:
        store.close()
    st = groups.stats()
    print(
        f"{st['n_vectors']} vectors, {st['n_pairs']} duplicate pairs (score >= {args.threshold}), "
        f"{st['n_multi']} groups of 2+, largest {st['largest']}: "
        f"removing duplicates drops {groups.n_removed} (keeps the first row of each group)"
    )
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        pairs = groups.pairs.to_frame(labels)
        pairs.insert(0, "group", groups.labels[pairs["i"].to_numpy()])
        pairs.to_csv(out / "duplicate_pairs.csv", index=False)
        removed = labels[an.id_name].to_numpy()[~groups.keep]
        np.savetxt(out / "removed_ids.txt", removed.astype(str), fmt="%s")
        (out / "dedup_stats.json").write_text(json.dumps(st, indent=2))
        print(f"wrote {out / 'duplicate_pairs.csv'}, {out / 'removed_ids.txt'}")
    return 0


def _cluster(args: argparse.Namespace) -> int:
    write = bool(args.write_labels) and not args.no_write
    store, an = _open(args, "a" if write else "r")
    lines: list[str] = [f"{args.store}: {_model_name(store)} {args.variable}, {len(an)} rows"]
    try:
        progress = False if args.no_progress else None
        common = dict(
            variable=args.variable,
            pool=_pool(args),
            layer=args.layer,
            metric=args.metric,
            kind=args.kind,
            batch=args.batch,
            device=args.device,
            progress=progress,
        )
        if args.remove_duplicates:
            dd = an.remove_duplicates(args.duplicate_thresh, args.k, **common)
            lines.append(
                f"duplicates (>= {args.duplicate_thresh}): removed {dd.n_removed} "
                f"of {len(an)} rows, {len(dd.kept_ids)} kept"
            )
            an = dd.analyzer
        res = an.cluster(args.threshold, args.k, coord=args.coord if write else None, **common)
        st = res.stats
        lines.append(
            f"clusters (>= {args.threshold}, topK {args.k}): {st['n_groups']} clusters over "
            f"{st['n_vectors']} rows, {st['n_singletons']} singletons, largest {st['largest']}"
        )
        lines.append("size histogram (size: clusters): " + json.dumps(st["size_histogram"]))
        if res.coord:
            lines.append(f"cluster ids written to coordinate {res.coord!r}")
        else:
            lines.append("store unchanged (--write-labels stores the cluster ids as a coordinate)")
        if args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            exp = an.export_training_labels(
                out,
                res,
                path_coord=args.path_coord,
                min_size=args.min_size,
                prefix=_label_prefix(args, store),
            )
            lines.append(
                f"labels: {exp['classes'].name} / {exp['data_list'].name} "
                f"({exp['n_classes']} classes, {exp['n_data']} items)"
            )
            if args.save_groups:
                written = an.save_group_previews(
                    out,
                    res,
                    path_coord=args.path_coord,
                    n_groups=args.save_groups,
                    image_root=args.image_root,
                )
                lines.append(f"previews of {len(written)} groups in {out}")
            (out / "clustering_result.txt").write_text("\n".join(lines) + "\n")
    finally:
        store.close()
    print("\n".join(lines))
    sys.stdout.flush()
    return 0
