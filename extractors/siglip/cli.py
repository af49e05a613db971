"""``embstore extract siglip``: SigLIP embeddings of every COCO-panoptic segment.

torch and open_clip are imported only inside the command function.

Examples
--------
.. code-block:: console

    $ embstore extract siglip --data-path /data/coco --split val \\
          --weights open_clip_pytorch_model.bin --model ViT-B-16-SigLIP --out val_siglip.zarr
"""

from __future__ import annotations

import argparse
import json

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
    p.add_argument("--data-path", required=True,
                   help="COCO root: annotations/panoptic_{split}2017.json, panoptic PNGs, {split}2017/ images")
    p.add_argument("--split", default="val", help="split name (default val)")
    p.add_argument("--weights", default=None,
                   help="local open_clip weights file (nothing is downloaded); omit only for random weights")
    p.add_argument("--model", default="ViT-B-16-SigLIP",
                   help="open_clip model name (default ViT-B-16-SigLIP; 'openclip:timm/...' accepted)")
    p.add_argument("--out", required=True, help="output store (.zarr directory or .h5)")
    p.add_argument("--bg-alpha", type=float, default=0.3, help="weight of the original background (default 0.3)")
    p.add_argument("--pad-ratio", type=float, default=0.1, help="box padding per side (default 0.1)")
    p.add_argument("--fill", type=int, nargs=3, default=(0, 0, 0), metavar=("R", "G", "B"),
                   help="background fill colour (default 0 0 0)")
    p.add_argument("--batch-size", type=int, default=8, help="crops per forward pass (default 8)")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (default 0)")
    p.add_argument("--device", default="auto", help="auto (every GPU, else CPU), cpu, cuda, cuda:N")
    p.add_argument("--dtype", default="float16", help="storage dtype (default float16)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``embstore extract siglip``.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments (see :func:`register`).

    Returns
    -------
    int
        0 on success.
    """
    from .extractor import SiglipExtractor

    ex = SiglipExtractor(args.model, pretrained=args.weights, device=args.device, dtype=args.dtype)
    summary = ex.extract_panoptic(
        args.data_path, split=args.split, out=args.out, bg_alpha=args.bg_alpha, pad_ratio=args.pad_ratio,
        fill=tuple(args.fill), batch_size=args.batch_size, num_workers=args.num_workers, limit=args.limit,
    )
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        print(
            f"embedded {summary['written']} segments ({summary['already_done']} already in the store, "
            f"{summary['skipped']} skipped) in {summary['seconds']:.1f} s "
            f"({summary['instances_per_s']:.1f} instances/s) -> {summary['store']}"
        )
    return 0
