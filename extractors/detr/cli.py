"""``embstore extract detr``: DETR embeddings of an image set into a store.

Flag names of the old ``extract_embeddings.py`` are accepted as aliases
(``--resume`` for ``--checkpoint``, ``--coco_path`` for ``--images``,
``--output_dir`` for ``--out``, ``--batch_size``, ``--extract_type``;
``--no_aux_loss`` is accepted and ignored). torch is imported only when the
command runs.

Examples
--------
.. code-block:: console

    $ embstore extract detr --checkpoint detr-r50-e632da11.pth \\
          --images FACET/ --annotations FACET/annotations/annotations.csv \\
          --out facet.zarr --extract-type decoder --skin 1 --device cuda
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``detr`` subcommand to ``embstore extract``.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The sub-subparsers of ``embstore extract``.
    """
    p = subparsers.add_parser(
        "detr",
        help="DETR backbone/encoder/decoder embeddings and predictions",
        description="Extract DETR embeddings into a store. Re-running the same command resumes: "
        "only images the store lacks are extracted.",
    )
    p.add_argument(
        "--checkpoint",
        "--resume",
        dest="checkpoint",
        required=True,
        metavar="PATH_OR_URL",
        help="official-format DETR checkpoint (.pth path or URL), e.g. detr-r50-e632da11.pth",
    )
    p.add_argument(
        "--extract-type",
        "--extract_type",
        dest="extract_type",
        default="decoder",
        type=_extract_type,
        metavar="TYPE[,TYPE]",
        help="what to keep: decoder, all, encoder, backbone, attention, or several joined "
        "by commas (default: decoder = query embeddings, decoder output, predictions; "
        "attention = decoder cross-attention maps, large, never part of all)",
    )
    p.add_argument(
        "--encoder-attention-points",
        dest="encoder_attention_points",
        default=None,
        metavar="Y,X;Y,X",
        help="also store the encoder self-attention of these relative feature-grid "
        "positions (in [0, 1]), e.g. '0.5,0.5;0.25,0.75'",
    )
    p.add_argument(
        "--variables",
        nargs="+",
        metavar="NAME",
        help="explicit variables instead of --extract-type (e.g. query_embeddings pred_boxes)",
    )
    p.add_argument(
        "--skin",
        nargs="+",
        metavar="TONE",
        help="keep images whose majority Monk skin tone is one of these (1 or skin1 ...)",
    )
    p.add_argument(
        "--light",
        nargs="+",
        metavar="LABEL",
        help="keep images whose majority lighting is one of these (well, dimly, under, over, na)",
    )
    p.add_argument(
        "--min-size",
        "--min_size",
        dest="min_size",
        type=int,
        default=800,
        help="shortest side after resizing (official eval: 800)",
    )
    p.add_argument(
        "--max-size",
        "--max_size",
        dest="max_size",
        type=int,
        default=1333,
        help="longest side bound (official eval: 1333)",
    )
    p.add_argument(
        "--nheads", type=int, help="attention heads if the checkpoint has no args (default 8)"
    )
    p.add_argument(
        "--dilation",
        action="store_true",
        default=None,
        help="DC5 checkpoints (dilated last stage) without saved args",
    )
    p.add_argument("--no_aux_loss", "--no-aux-loss", action="store_true", help=argparse.SUPPRESS)
    from ..cli_common import add_extract_arguments, add_model_options

    add_model_options(
        p,
        dtype_choices=["float16", "float32"],
        dtype_help="storage dtype of embeddings (logits and boxes stay float32)",
        limit_help="extract at most this many images (after filters)",
        commit_every=True,
        annotations_help="FACET annotations.csv or COCO JSON (skin, lighting, persons)",
    )
    add_extract_arguments(
        p,
        image_aliases=("--coco_path", "--coco-path"),
        out_aliases=("--output_dir", "--output-dir"),
        images_help="image folder (recursive) or text file with one path per line; a folder with "
        "annotations/annotations.csv (FACET) uses it automatically",
    )
    p.set_defaults(func=run)


def _extract_type(value: str) -> Any:
    """``--extract-type`` value: one type, or several joined by commas (a list)."""
    from .extractor import EXTRACT_TYPES

    parts = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in parts if v not in EXTRACT_TYPES]
    if bad or not parts:
        raise argparse.ArgumentTypeError(
            f"unknown extract type(s) {bad or value!r}; choose from {sorted(EXTRACT_TYPES)}, "
            "several joined by commas (decoder,attention)"
        )
    return parts[0] if len(parts) == 1 else parts


def _command_line(args: argparse.Namespace) -> str:
    from .run import format_command

    argv = ["embstore", "extract", "detr"]
    for key, value in sorted(vars(args).items()):
        if key in ("func", "command", "model", "verbose", "no_aux_loss", "json") or value in (
            None,
            False,
        ):
            continue
        flag = "--" + key.replace("_", "-")
        if key == "extract_type" and isinstance(value, list):
            value = ",".join(value)
        if value is True:
            argv.append(flag)
        elif isinstance(value, list):
            argv += [flag] + [str(v) for v in value]
        else:
            argv += [flag, str(value)]
    return format_command(argv)


def run(args: argparse.Namespace) -> int:
    """Run ``embstore extract detr`` with parsed arguments.

    Parameters
    ----------
    args : argparse.Namespace
        From the parser built by :func:`register`.

    Returns
    -------
    int
        0 on success (skipped bad images do not fail the run).
    """
    import functools

    from ..cli_common import run_command
    from ..datasets import open_dataset
    from .extractor import DetrExtractor

    overrides: dict[str, Any] = {}
    if args.nheads is not None:
        overrides["nheads"] = args.nheads
    if args.dilation:
        overrides["dilation"] = True
    return run_command(
        args,
        lambda: _run_local(args, overrides),
        extractor_factory=functools.partial(
            DetrExtractor.from_checkpoint,
            args.checkpoint,
            extract_type=list(args.variables or []) or args.extract_type,
            min_size=args.min_size,
            max_size=args.max_size,
            autocast=args.autocast,
            storage_dtype=args.dtype,
            encoder_attention_points=args.encoder_attention_points,
            **overrides,
        ),
        dataset=lambda: open_dataset(
            args.images, args.annotations, skin=args.skin, light=args.light, limit=args.limit
        ),
        row_dim="image",
        id_name="image_id",
        attrs={
            "model_name": "detr",
            "storage_dtype": args.dtype,
            "command_line": _command_line(args),
        },
        flush_interval=args.commit_every,
    )


def _run_local(args: argparse.Namespace, overrides: dict[str, Any]) -> Any:
    """The single-process run (``--scheduler local``)."""
    from ..cli_common import num_workers
    from .run import extract_detr

    return extract_detr(
        args.checkpoint,
        args.images,
        args.out,
        annotations=args.annotations,
        extract_type=args.extract_type,
        variables=args.variables,
        batch_size=args.batch_size,
        num_workers=num_workers(args),
        device=args.device,
        dtype=args.dtype,
        skin=args.skin,
        light=args.light,
        limit=args.limit,
        min_size=args.min_size,
        max_size=args.max_size,
        autocast=args.autocast,
        overwrite=args.overwrite,
        retry_skipped=args.retry_skipped,
        progress=args.progress,
        flush_interval=args.commit_every,
        command_line=_command_line(args),
        encoder_attention_points=args.encoder_attention_points,
        **overrides,
    )
