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
    from ..cli_common import add_extract_arguments, add_model_options

    add_model_options(
        p,
        dtype_choices=["float16", "float32"],
        dtype_help="storage dtype",
        commit_every=True,
        annotations_help="FACET annotations.csv or COCO JSON",
    )
    add_extract_arguments(p, batch_size=32)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``embstore extract model`` (in one process, or on Dask).

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments (see :func:`register`).

    Returns
    -------
    int
        0 on success (skipped bad images do not fail the run).
    """
    import functools

    from ..cli_common import command_line, num_workers, run_command
    from ..datasets import open_dataset
    from .extractor import ModelExtractor
    from .run import extract_model

    model = {"pool": args.pool, "dtype": args.dtype, "autocast": args.autocast}
    load = {"num_classes": args.num_classes, "transform_weights": args.transform_weights}
    return run_command(
        args,
        lambda: extract_model(
            args.model,
            args.weights,
            args.layers,
            args.images,
            args.out,
            annotations=args.annotations,
            batch_size=args.batch_size,
            num_workers=num_workers(args),
            device=args.device,
            limit=args.limit,
            overwrite=args.overwrite,
            retry_skipped=args.retry_skipped,
            progress=args.progress,
            flush_interval=args.commit_every,
            command_line=command_line(),
            **model,
            **load,
        ),
        extractor_factory=functools.partial(
            ModelExtractor,
            args.model,
            args.layers,
            args.weights,
            **model,
            **{k: v for k, v in load.items() if v is not None},
        ),
        dataset=lambda: open_dataset(args.images, args.annotations, limit=args.limit),
        row_dim="image",
        id_name="image_id",
        attrs={"command_line": command_line()},
        flush_interval=args.commit_every,
    )
