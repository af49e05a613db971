"""``embstore extract face``: ArcFace iresnet embeddings of a folder or image list.

torch is imported only inside the command function.

Examples
--------
.. code-block:: console

    $ embstore extract face --weights backbone.pth --arch r100 \\
          --images 5M_list.txt --out faces.zarr --l2-norm --batch-size 1024 --num-workers 8
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``face`` subcommand to ``embstore extract``.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The ``extract`` group's subparsers.
    """
    p = subparsers.add_parser(
        "face",
        help="ArcFace iresnet face embeddings (insightface arcface_torch checkpoints)",
        description="Embed face images (112x112 ArcFace preprocessing) with an iresnet checkpoint. "
        "Rows: input-order index (id 'index') with the image path as coordinate 'path'. "
        "Re-running on an existing store extracts only missing rows.",
    )
    p.add_argument("--weights", required=True, help="iresnet .pth state dict (arcface_torch names)")
    p.add_argument("--arch", default="r50", help="r18, r34, r50, r100 or r200 (default r50)")
    p.add_argument("--l2-norm", action="store_true", help="store L2-normalised embeddings")
    p.add_argument(
        "--pre-fc",
        action="store_true",
        help="also store the 25088-d flattened bn2 features (pre_fc_features)",
    )
    p.add_argument("--num-features", type=int, default=512, help="embedding size of the checkpoint")
    p.add_argument("--dtype", default="float16", help="storage dtype (float16 default, float32)")
    p.add_argument("--autocast", default=None, choices=["fp16", "bf16"], help="mixed precision")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    from ..cli_common import add_extract_arguments

    add_extract_arguments(
        p,
        image_aliases=("--input",),
        batch_size=1024,
        images_help="face image folder (searched recursively) or text file of paths",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``embstore extract face``.

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

    from extractors.distributed import run_with_scheduler

    from ..cli_common import check_device, num_workers

    check_device(args)
    from .extractor import FaceExtractor, extract_face, face_dataset

    summary: Any = run_with_scheduler(
        args,
        lambda: extract_face(
            args.weights,
            args.images,
            args.out,
            arch=args.arch,
            l2_norm=args.l2_norm,
            pre_fc=args.pre_fc,
            batch_size=args.batch_size,
            num_workers=num_workers(args),
            device=args.device,
            num_features=args.num_features,
            dtype=args.dtype,
            autocast=args.autocast,
            limit=args.limit,
            progress=args.progress,
            overwrite=args.overwrite,
            retry_skipped=args.retry_skipped,
        ),
        extractor_factory=functools.partial(
            FaceExtractor.from_checkpoint,
            args.weights,
            arch=args.arch,
            num_features=args.num_features,
            l2_norm=args.l2_norm,
            pre_fc=args.pre_fc,
            dtype=args.dtype,
            autocast=args.autocast,
        ),
        dataset=lambda: face_dataset(args.images, limit=args.limit),
        out=args.out,
        row_dim="image",
        id_name="index",
        attrs={"input": str(args.images)},
        batch_size=args.batch_size,
        num_workers=args.num_workers or 0,
        device=args.device,
        overwrite=args.overwrite,
        progress=args.progress,
    )
    if args.json:
        print(
            json.dumps(summary.to_dict() if hasattr(summary, "to_dict") else summary, default=str)
        )
    else:
        print(summary)
    return 0
