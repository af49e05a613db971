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
    from ..cli_common import add_extract_arguments, add_model_options

    add_model_options(p, dtype_help="storage dtype (float16 default, float32)")
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

    from ..cli_common import num_workers, run_command
    from .extractor import FaceExtractor, face_dataset
    from .run import extract_face

    model = {
        "arch": args.arch,
        "num_features": args.num_features,
        "l2_norm": args.l2_norm,
        "pre_fc": args.pre_fc,
        "dtype": args.dtype,
        "autocast": args.autocast,
    }
    return run_command(
        args,
        lambda: extract_face(
            args.weights,
            args.images,
            args.out,
            batch_size=args.batch_size,
            num_workers=num_workers(args),
            device=args.device,
            limit=args.limit,
            progress=args.progress,
            overwrite=args.overwrite,
            retry_skipped=args.retry_skipped,
            **model,
        ),
        extractor_factory=functools.partial(FaceExtractor.from_checkpoint, args.weights, **model),
        dataset=lambda: face_dataset(args.images, limit=args.limit),
        row_dim="image",
        id_name="index",
        attrs={"input": str(args.images)},
    )
