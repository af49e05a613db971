"""Commands that move old file-per-item outputs into stores and back.

- ``embstore import-legacy DIR STORE``: DETR ``embedding_*.pt`` + ``metadata.json``.
- ``embstore export-legacy STORE DIR``: the reverse (per-image ``.pt`` files).
- ``embstore import-face-npy DIR STORE`` / ``embstore export-face-npy STORE DIR``:
  ``final_embs[_norm].npy`` + ``final_fpaths.npy`` + ``final_indices.npy`` (or split
  ``embs_0.npy`` ...).
- ``embstore import-siglip-cache DIR STORE`` / ``embstore export-siglip-cache STORE DIR``:
  ``<image_id>_<segment_id>.npy`` + ``inst2feat.tsv``.

Examples
--------
.. code-block:: console

    $ embstore import-legacy embeddings_output facet.zarr
    $ embstore export-face-npy faces.zarr 02_input/extract_full --split-threshold 1000000
"""

from __future__ import annotations

import argparse

from ..errors import ValidationError
from ._common import add_switch
from ._common import print_result as _print

__all__ = ["register"]


def _dtypes(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ValidationError(
                f"--dtype {item!r}: use VARIABLE=DTYPE, e.g. encoder_output=float16"
            )
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _import_legacy(args: argparse.Namespace) -> int:
    from ..legacy.detr_pt import import_detr_dir

    report = import_detr_dir(
        args.dir,
        args.store,
        variables=args.variables,
        dtypes=_dtypes(args.dtype),
        overwrite=args.overwrite,
        batch_rows=args.batch_rows,
    )
    _print(report, args.json)
    if not args.json:
        for path, reason in report.unreadable[:20]:
            print(f"  unreadable: {path}: {reason}")
        for iid, path in report.missing[:20]:
            print(f"  missing: {path} (image_id {iid})")
        extra = len(report.unreadable) + len(report.missing) - 40
        if extra > 0:
            print(f"  ... and {extra} more (see the store's skipped table)")
    return 0


def _export_legacy(args: argparse.Namespace) -> int:
    from ..legacy.detr_pt import export_detr_dir

    n = export_detr_dir(
        args.store,
        args.dir,
        variables=args.variables,
        overwrite=args.overwrite,
        dtype=None if args.keep_dtype else "float32",
    )
    _print(
        {"files": n, "dir": args.dir}
        if args.json
        else f"wrote {n} .pt files + metadata.json to {args.dir}",
        args.json,
    )
    return 0


def _export_face(args: argparse.Namespace) -> int:
    from ..legacy.face_npy import export_face_npy

    files = export_face_npy(
        args.store,
        args.dir,
        variable=args.variable,
        normalized=args.normalized,
        split_threshold=args.split_threshold,
        overwrite=args.overwrite,
        dtype=args.out_dtype,
    )
    _print({"files": files} if args.json else "wrote " + ", ".join(files), args.json)
    return 0


def _import_face(args: argparse.Namespace) -> int:
    from ..legacy.face_npy import import_face_npy

    res = import_face_npy(
        args.dir,
        args.store,
        dtype=args.dtype,
        allow_pickle=args.allow_pickle,
        overwrite=args.overwrite,
    )
    _print(
        res
        if args.json
        else (
            f"imported {res['rows']} rows from {res['parts']} file set(s) "
            f"in {res['seconds']:.1f} s -> {args.store}"
        ),
        args.json,
    )
    return 0


def _export_siglip(args: argparse.Namespace) -> int:
    from ..legacy.siglip_cache import export_siglip_cache

    n = export_siglip_cache(args.store, args.dir, variable=args.variable, overwrite=args.overwrite)
    _print(
        {"files": n} if args.json else f"wrote {n} .npy files + inst2feat.tsv to {args.dir}",
        args.json,
    )
    return 0


def _import_siglip(args: argparse.Namespace) -> int:
    from ..legacy.siglip_cache import import_siglip_cache

    res = import_siglip_cache(args.dir, args.store, dtype=args.dtype, overwrite=args.overwrite)
    if args.json:
        _print(res, True)
    else:
        print(
            f"imported {res['rows']} segments ({len(res['missing'])} missing, "
            f"{len(res['unreadable'])} unreadable) in {res['seconds']:.1f} s -> {args.store}"
        )
        for p, r in res["unreadable"][:20]:
            print(f"  unreadable: {p}: {r}")
        for p in res["missing"][:20]:
            print(f"  missing: {p}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the legacy import/export commands.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The top-level subparsers of ``embstore``.
    """
    p = subparsers.add_parser(
        "import-legacy",
        help="import a DETR per-image .pt directory (metadata.json + embedding_*.pt) into a store",
        description="Import a directory written by the old extract_embeddings.py into one store. "
        "Files are read with torch.load(weights_only=True); missing or unreadable files are listed, "
        "not fatal. Re-running on an existing store imports only the missing ids.",
    )
    p.add_argument("dir", help="directory with metadata.json and embedding_{id:012d}.pt files")
    p.add_argument("store", help="output store (.zarr directory or .h5)")
    p.add_argument("--variables", nargs="+", default=None, help="keys to import (default: all)")
    p.add_argument(
        "--dtype",
        action="append",
        metavar="VAR=DTYPE",
        help="storage dtype of a variable (repeatable), e.g. encoder_output=float16",
    )
    p.add_argument("--batch-rows", type=int, default=16, help="files per append (default 16)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_import_legacy)

    p = subparsers.add_parser(
        "export-legacy", help="write a DETR store back as per-image .pt files"
    )
    p.add_argument("store", help="source store")
    p.add_argument("dir", help="output directory")
    p.add_argument("--variables", nargs="+", default=None, help="variables to write (default: all)")
    p.add_argument(
        "--keep-dtype", action="store_true", help="keep the store dtype (default float32)"
    )
    p.add_argument("--overwrite", action="store_true", help="overwrite existing files")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=_export_legacy)

    p = subparsers.add_parser(
        "export-face-npy",
        help="export a face store as final_embs[_norm].npy + final_fpaths.npy + final_indices.npy",
        description="Write the layout 02_cluster.py reads; more rows than --split-threshold are "
        "split into embs_0.npy/fpaths_0.npy/indices_0.npy ...",
    )
    p.add_argument("store", help="face store")
    p.add_argument("dir", help="output directory")
    p.add_argument("--variable", default="embedding", help="variable to export (default embedding)")
    p.add_argument(
        "--split-threshold",
        type=int,
        default=1_000_000,
        help="max rows per file before splitting (default 1000000)",
    )
    add_switch(
        p,
        "--normalized",
        "--not-normalized",
        dest="normalized",
        help_on="name files *_embs_norm* (default: from the store)",
        help_off="name files *_embs*",
    )
    p.add_argument(
        "--out-dtype", default="float32", help="dtype of the embeddings files (default float32)"
    )
    p.add_argument("--overwrite", action="store_true", help="overwrite existing files")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=_export_face)

    p = subparsers.add_parser(
        "import-face-npy", help="import final_embs*.npy (or embs_0.npy ...) into a store"
    )
    p.add_argument("dir", help="folder written by 01_extract.py")
    p.add_argument("store", help="output store")
    p.add_argument("--dtype", default=None, help="storage dtype (default: the files' dtype)")
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="accept object-array path files (only for files you trust)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=_import_face)

    p = subparsers.add_parser(
        "export-siglip-cache",
        help="export an instance store as <image_id>_<segment_id>.npy + inst2feat.tsv",
    )
    p.add_argument("store", help="instance store (from `embstore extract siglip`)")
    p.add_argument("dir", help="cache directory, e.g. cache/vis_embed")
    p.add_argument("--variable", default="embedding", help="variable to export (default embedding)")
    p.add_argument("--overwrite", action="store_true", help="overwrite existing files")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=_export_siglip)

    p = subparsers.add_parser(
        "import-siglip-cache",
        help="import a SigLIP cache (inst2feat.tsv + .npy files) into a store",
    )
    p.add_argument("dir", help="cache directory")
    p.add_argument("store", help="output store")
    p.add_argument("--dtype", default=None, help="storage dtype (default: the files' dtype)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=_import_siglip)
