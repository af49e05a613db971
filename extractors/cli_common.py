"""The options every ``embstore extract MODEL`` command shares.

One function, :func:`add_extract_arguments`, adds them, so that every
extractor speaks one vocabulary:

``--images``
    Image folder (searched recursively) or text file with one path per line
    (each command may accept its old name as an alias, e.g. ``--input``).
``--out``
    Output store; an existing store is resumed.
``--batch-size``, ``--num-workers``, ``--device``
    Forward-pass size, DataLoader workers (default: the CPU count, at most
    :data:`MAX_DEFAULT_WORKERS`) and ``auto``/``cpu``/``cuda``/``cuda:N``.
``--overwrite``, ``--retry-skipped``, ``--progress/--no-progress``
    Start again, retry images an earlier run skipped, progress bar.
``--scheduler``, ``--workers``, ``--address``, ...
    The Dask options of :func:`embstore.distributed.cluster.add_dask_arguments`.

A new extractor's ``register(subparsers)`` calls
``add_extract_arguments(parser)`` and reads the parsed values with
:func:`num_workers`. Nothing here imports torch.

Examples
--------
>>> import argparse
>>> p = argparse.ArgumentParser()
>>> add_extract_arguments(p, image_aliases=("--input",), batch_size=32)
>>> a = p.parse_args(["--input", "photos/", "--out", "run.zarr", "--no-progress"])
>>> a.images, a.out, a.batch_size, a.progress, a.overwrite
('photos/', 'run.zarr', 32, False, False)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "MAX_DEFAULT_WORKERS",
    "add_extract_arguments",
    "add_model_options",
    "check_device",
    "command_line",
    "default_num_workers",
    "num_workers",
    "print_summary",
    "run_command",
]

#: Upper bound of the default ``--num-workers`` (more rarely helps decoding).
MAX_DEFAULT_WORKERS = 8


def default_num_workers() -> int:
    """The default number of DataLoader workers: the usable CPUs, at most 8.

    Returns
    -------
    int
        ``min(usable CPU count, MAX_DEFAULT_WORKERS)``, at least 1.

    Examples
    --------
    >>> 1 <= default_num_workers() <= MAX_DEFAULT_WORKERS
    True
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_DEFAULT_WORKERS))


def num_workers(args: argparse.Namespace) -> int:
    """The ``--num-workers`` value with its default filled in.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed by a parser built with :func:`add_extract_arguments`.

    Returns
    -------
    int
        The given count, or :func:`default_num_workers` when it was not given.
    """
    value = getattr(args, "num_workers", None)
    return default_num_workers() if value is None else int(value)


def check_device(args: argparse.Namespace) -> None:
    """Fail fast, before any weights are read, when ``--device`` is unavailable.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed by a parser built with :func:`add_extract_arguments`.

    Raises
    ------
    embstore.errors.DeviceUnavailableError
        ``--device cuda`` (or ``cuda:N``) on a machine without that GPU;
        there is never a silent CPU run.
    embstore.errors.ValidationError
        An unknown device name.
    """
    if getattr(args, "scheduler", "local") == "dask":
        return  # the device is resolved on the workers
    from .device import resolve_devices

    resolve_devices(args.device)


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative; use 0 or more")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("0 is not allowed; use 1 or more")
    return value


def add_extract_arguments(
    parser: argparse.ArgumentParser,
    *,
    image_aliases: Sequence[str] = (),
    images_help: str | None = None,
    batch_size: int = 16,
    out_aliases: Sequence[str] = (),
    dask: bool = True,
) -> None:
    """Add the options every ``embstore extract`` command shares.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The command's parser.
    image_aliases : sequence of str, optional
        Older names of ``--images`` still accepted (``"--input"``,
        ``"--data-path"``, ...). They are hidden from nothing: ``--help``
        lists them beside ``--images``.
    images_help : str, optional
        Model-specific help of ``--images``.
    batch_size : int, default 16
        Default of ``--batch-size``.
    out_aliases : sequence of str, optional
        Older names of ``--out``.
    dask : bool, default True
        Add the Dask options (``--scheduler dask --workers N`` ...).

    Examples
    --------
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_extract_arguments(p)
    >>> sorted(a.dest for a in p._actions if a.dest in ("images", "out", "device", "retry_skipped"))
    ['device', 'images', 'out', 'retry_skipped']
    """
    g = parser.add_argument_group("input and output (shared by every extract command)")
    g.add_argument(
        "--images",
        *image_aliases,
        dest="images",
        required=True,
        metavar="DIR_OR_LIST",
        help=images_help
        or "image folder (searched recursively) or text file with one image path per line",
    )
    g.add_argument(
        "--out",
        *out_aliases,
        dest="out",
        required=True,
        metavar="STORE",
        help="output store (.zarr directory, .h5 file or URL); an existing store is resumed: "
        "only rows it lacks are extracted",
    )
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --out store instead of resuming it",
    )
    g.add_argument(
        "--retry-skipped",
        action="store_true",
        help="retry images an earlier run skipped as unreadable (default: keep them skipped)",
    )
    r = parser.add_argument_group("running (shared by every extract command)")
    r.add_argument(
        "--batch-size",
        "--batch_size",
        dest="batch_size",
        type=_positive_int,
        default=batch_size,
        metavar="N",
        help=f"images per forward pass (default {batch_size})",
    )
    r.add_argument(
        "--num-workers",
        "--num_workers",
        dest="num_workers",
        type=_non_negative_int,
        default=None,
        metavar="N",
        help="DataLoader workers that decode images (default: the CPU count, at most "
        f"{MAX_DEFAULT_WORKERS}; 0 decodes in the main process)",
    )
    r.add_argument(
        "--device",
        default="auto",
        help="auto (default: every GPU if any, else the CPU), cpu, cuda, cuda:N; cuda without "
        "a GPU is an error, never a silent CPU run",
    )
    prog = r.add_mutually_exclusive_group()
    prog.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="always show the progress bar (default: only on a terminal)",
    )
    prog.add_argument("--no-progress", dest="progress", action="store_false", help="never show it")
    if dask:
        from embstore.distributed.cluster import add_dask_arguments

        add_dask_arguments(parser)  # --scheduler dask [--workers N | --address tcp://...]


def add_model_options(
    parser: argparse.ArgumentParser,
    *,
    dtype_choices: Sequence[str] | None = None,
    dtype_help: str = "storage dtype of the embeddings (default float16)",
    limit_help: str = "extract at most this many images",
    autocast: bool = True,
    commit_every: bool = False,
    annotations_help: str | None = None,
) -> None:
    """Add the model options several extract commands share.

    ``--dtype``, ``--limit`` and ``--json`` always; ``--autocast``,
    ``--commit-every`` and ``--annotations`` when asked for.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The command's parser.
    dtype_choices : sequence of str, optional
        Allowed ``--dtype`` values (default: any).
    dtype_help, limit_help : str
        Model-specific help texts.
    autocast : bool, default True
        Add ``--autocast {fp16,bf16}``.
    commit_every : bool, default False
        Add ``--commit-every SECONDS`` (default 60).
    annotations_help : str, optional
        Add ``--annotations`` with this help.

    Examples
    --------
    >>> p = argparse.ArgumentParser()
    >>> add_model_options(p, dtype_choices=["float16", "float32"], commit_every=True)
    >>> a = p.parse_args(["--dtype", "float32", "--json"])
    >>> a.dtype, a.limit, a.autocast, a.commit_every, a.json
    ('float32', None, None, 60.0, True)
    """
    g = parser.add_argument_group("model options")
    g.add_argument(
        "--dtype",
        default="float16",
        choices=list(dtype_choices) if dtype_choices else None,
        help=dtype_help,
    )
    g.add_argument("--limit", type=int, default=None, metavar="N", help=limit_help)
    if autocast:
        g.add_argument(
            "--autocast",
            choices=["fp16", "bf16"],
            default=None,
            help="mixed-precision forward (GPU speed-up; ~1e-3 relative deviation)",
        )
    if annotations_help is not None:
        g.add_argument("--annotations", metavar="CSV_OR_JSON", help=annotations_help)
    if commit_every:
        g.add_argument(
            "--commit-every",
            dest="commit_every",
            type=float,
            default=60.0,
            metavar="SECONDS",
            help="commit written rows at least this often (default 60); a killed run loses "
            "at most this much work",
        )
    g.add_argument("--json", action="store_true", help="print the summary as JSON")


def command_line() -> str:
    """This process's ``embstore ...`` command line, quoted (recorded in the store).

    Returns
    -------
    str
    """
    return shlex.join(["embstore", *sys.argv[1:]])


def print_summary(args: argparse.Namespace, summary: Any) -> None:
    """Print a run's summary (JSON with ``--json``); the first skipped images to stderr.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments (``out``, ``json``).
    summary : extractors.summary.ExtractionSummary
        What the run did.
    """
    if getattr(args, "json", False):
        print(json.dumps(summary.to_dict(), default=str))
    else:
        print(f"{args.out}: {summary}")
    for image_id, reason in summary.skipped_examples:
        print(f"  skipped {image_id}: {reason}", file=sys.stderr)


def run_command(
    args: argparse.Namespace, local: Callable[[], Any], **distributed_kwargs: Any
) -> int:
    """Run an extract command in one process or on Dask, then print its summary.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed by a parser built with :func:`add_extract_arguments`.
    local : callable
        ``local() -> ExtractionSummary``: the single-process run.
    **distributed_kwargs
        Arguments of :func:`extractors.distributed.extract_distributed` beyond
        those the shared options give (``extractor_factory``, ``dataset``,
        ``row_dim``, ``id_name``, ``attrs``, ``flush_interval``).

    Returns
    -------
    int
        0 (skipped bad images do not fail a run).
    """
    from .distributed import run_with_scheduler

    check_device(args)
    kwargs: dict[str, Any] = {
        "out": args.out,
        "batch_size": args.batch_size,
        "num_workers": args.num_workers or 0,
        "device": args.device,
        "overwrite": args.overwrite,
        "progress": args.progress,
    }
    kwargs.update(distributed_kwargs)
    print_summary(args, run_with_scheduler(args, local, **kwargs))
    return 0
