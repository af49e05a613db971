"""``embstore extract siglip``: SigLIP embeddings of every COCO-panoptic segment.

torch and open_clip are imported only inside the command function.

Examples
--------
.. code-block:: console

    $ embstore extract siglip --images /data/coco --split val \\
          --weights open_clip_pytorch_model.bin --model ViT-B-16-SigLIP --out val_siglip.zarr
    $ embstore extract siglip --images /data/coco --weights w.bin --out val.zarr \\
          --scheduler dask --workers 4        # one Dask task per region of crops
"""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``siglip`` subcommand to ``embstore extract``.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The ``extract`` group's subparsers.
    """
    p = subparsers.add_parser(
        "siglip",
        help="open_clip (SigLIP) embeddings of COCO-panoptic mask instances",
        description="Crop every COCO-panoptic segment (box padded by --pad-ratio, background "
        "blended at --bg-alpha), embed it with an open_clip model, L2-normalise, store one row per "
        "instance. Re-running on an existing store embeds only missing (image_id, segment_id) pairs.",
    )
    p.add_argument("--split", default="val", help="split name (default val)")
    w = p.add_mutually_exclusive_group(required=True)
    w.add_argument(
        "--weights", default=None, help="local open_clip weights file (nothing is downloaded)"
    )
    w.add_argument(
        "--random-weights",
        action="store_true",
        help="run the model with RANDOM weights (tests and timing only; the store records it)",
    )
    p.add_argument(
        "--model",
        default="ViT-B-16-SigLIP",
        help="open_clip model name (default ViT-B-16-SigLIP; 'openclip:timm/...' accepted)",
    )
    p.add_argument(
        "--bg-alpha",
        type=float,
        default=0.3,
        help="weight of the original background (default 0.3)",
    )
    p.add_argument(
        "--pad-ratio", type=float, default=0.1, help="box padding per side (default 0.1)"
    )
    p.add_argument(
        "--fill",
        type=int,
        nargs=3,
        default=(0, 0, 0),
        metavar=("R", "G", "B"),
        help="background fill colour (default 0 0 0)",
    )
    from ..cli_common import add_extract_arguments, add_model_options

    add_model_options(p, autocast=False, limit_help="only the first N images")
    add_extract_arguments(
        p,
        image_aliases=("--data-path", "--data_path"),
        batch_size=8,
        images_help="COCO root: annotations/panoptic_{split}2017.json, panoptic PNGs, {split}2017/ images",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``embstore extract siglip`` (in one process, or on Dask).

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments (see :func:`register`).

    Returns
    -------
    int
        0 on success.
    """
    import functools

    from ..cli_common import num_workers, run_command
    from .crops import crop_records
    from .extractor import SiglipExtractor, extract_panoptic, panoptic_attrs
    from .panoptic import PanopticDataset

    model = {"pretrained": None if args.random_weights else args.weights, "dtype": args.dtype}
    crop = {"bg_alpha": args.bg_alpha, "pad_ratio": args.pad_ratio, "fill": tuple(args.fill)}
    return run_command(
        args,
        lambda: extract_panoptic(
            SiglipExtractor(args.model, device=args.device, **model),
            args.images,
            split=args.split,
            out=args.out,
            batch_size=args.batch_size,
            num_workers=num_workers(args),
            limit=args.limit,
            progress=args.progress,
            retry_skipped=args.retry_skipped,
            overwrite=args.overwrite,
            **crop,
        ),
        extractor_factory=functools.partial(SiglipExtractor, args.model, **model),
        dataset=lambda: crop_records(
            PanopticDataset(args.images, split=args.split), args.limit, **crop
        ),
        row_dim="instance",
        id_name="instance_id",
        attrs=panoptic_attrs(args.images, args.split, **crop),
    )
