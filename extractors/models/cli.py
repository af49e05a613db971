"""``embstore extract model``: any layer of a torchvision / timm / open_clip / HF model.

torch and the model libraries are imported only inside the command function.

Examples
--------
.. code-block:: console

    $ embstore extract model --model torchvision:resnet50 --weights r50.pth \\
          --layers layer4,avgpool --images photos/ --out r50.zarr
    $ embstore extract model --model timm:vit_small_patch16_224 --weights vit.safetensors \\
          --layers blocks.11,head --pool cls --images photos/ --out vit.zarr
"""

from __future__ import annotations

import argparse
import shlex
import sys

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``model`` subcommand to ``embstore extract``.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The ``extract`` group's subparsers.
    """
    p = subparsers.add_parser(
        "model",
        help="any layer of a torchvision, timm, open_clip or Hugging Face model",
        description="Extract the outputs of named layers of a model (one variable per layer) with the "
        "model library's own preprocessing. Weights come from a local file only. Re-running the same "
        "command resumes. List layer names with 'embstore models layers SPEC'.",
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="SPEC",
        help="torchvision:NAME, timm:NAME, open_clip:NAME or hf:DIRECTORY",
    )
    p.add_argument(
        "--weights",
        default=None,
        metavar="PATH",
        help="local weights file (.pth/.bin/.safetensors); omit only for random weights "
        "(hf: directories hold their own)",
    )
    p.add_argument(
        "--layers",
        required=True,
        metavar="NAME[,NAME]",
        help="module names, comma-separated (see 'embstore models layers SPEC')",
    )
    p.add_argument(
        "--pool",
        choices=["mean", "max", "cls"],
        default=None,
        help="pool spatial / token outputs to one vector (default: keep them, ragged)",
    )
    p.add_argument(
        "--images",
        required=True,
        metavar="DIR_OR_LIST",
        help="image folder (recursive) or text file with one path per line",
    )
    p.add_argument(
        "--annotations", metavar="CSV_OR_JSON", help="FACET annotations.csv or COCO JSON"
    )
    p.add_argument(
        "--out", required=True, metavar="STORE", help="output store; an existing store is resumed"
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (default 0)")
    p.add_argument(
        "--device", default="auto", help="auto, cpu, cuda, cuda:N; cuda without a GPU is an error"
    )
    p.add_argument(
        "--dtype", default="float16", choices=["float16", "float32"], help="storage dtype"
    )
    p.add_argument("--autocast", choices=["fp16", "bf16"], help="mixed-precision forward")
    p.add_argument("--limit", type=int, help="extract at most this many images")
    p.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="classifier size of torchvision/timm weights trained on other labels",
    )
    p.add_argument(
        "--transform-weights",
        default=None,
        metavar="ENTRY",
        help="torchvision: weights entry whose transforms to use (default DEFAULT)",
    )
    p.add_argument(
        "--commit-every",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="commit written rows at least this often (default 60)",
    )
    p.add_argument("--overwrite", action="store_true", help="start again instead of resuming")
    p.add_argument(
        "--retry-skipped", action="store_true", help="retry images an earlier run skipped"
    )
    prog = p.add_mutually_exclusive_group()
    prog.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="always show the progress bar (default: only on a terminal)",
    )
    prog.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``embstore extract model``.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments (see :func:`register`).

    Returns
    -------
    int
        0 on success (skipped bad images do not fail the run).
    """
    from .run import extract_model

    summary = extract_model(
        args.model,
        args.weights,
        args.layers,
        args.images,
        args.out,
        pool=args.pool,
        annotations=args.annotations,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=args.device,
        dtype=args.dtype,
        limit=args.limit,
        autocast=args.autocast,
        overwrite=args.overwrite,
        retry_skipped=args.retry_skipped,
        progress=args.progress,
        flush_interval=args.commit_every,
        command_line=shlex.join(["embstore", *sys.argv[1:]]),
        num_classes=args.num_classes,
        transform_weights=args.transform_weights,
    )
    print(f"{args.out}: {summary}")
    for image_id, reason in summary.skipped_examples:
        print(f"  skipped {image_id}: {reason}", file=sys.stderr)
    return 0
