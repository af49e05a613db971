"""Compute-device resolution for extractors.

One rule everywhere: a device the user asked for explicitly is used or an
error is raised; there is never a silent fall back to the CPU. Only
``"auto"`` chooses for the user (every visible GPU when there is one, the CPU
otherwise).

Examples
--------
>>> from extractors.device import resolve_device, resolve_devices
>>> str(resolve_device("cpu"))
'cpu'
>>> [str(d) for d in resolve_devices("cpu")]
['cpu']
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from embstore._optional import attempt_import
from embstore.errors import DeviceUnavailableError, ValidationError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["data_parallel", "resolve_device", "resolve_devices"]

logger = logging.getLogger(__name__)

_SPEC = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")


def _parse(spec: Any) -> tuple[str, int | None]:
    torch = attempt_import("torch")
    if isinstance(spec, torch.device):
        return spec.type, spec.index
    if spec is None:
        return "auto", None
    text = str(spec).strip().lower()
    match = _SPEC.match(text)
    if match is None:
        raise ValidationError(
            f"unknown device {spec!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        )
    index = match.group(2)
    return match.group(1), (int(index) if index is not None else None)


def resolve_devices(spec: Any = "auto") -> list[torch.device]:
    """Resolve a device string to the list of devices to compute on.

    Parameters
    ----------
    spec : str or torch.device, default "auto"
        ``"auto"``: every visible CUDA GPU, else the CPU. ``"cpu"``: the CPU.
        ``"cuda"``: every visible GPU (several GPUs are used together).
        ``"cuda:N"``: GPU ``N`` only. ``"mps"``: Apple's Metal device.

    Returns
    -------
    list of torch.device
        At least one device; several only for ``"auto"``/``"cuda"`` on a
        machine with several GPUs.

    Raises
    ------
    DeviceUnavailableError
        CUDA (or GPU ``N``, or MPS) was asked for but is not available.
    ValidationError
        The string is not a device name.

    Examples
    --------
    >>> [str(d) for d in resolve_devices("cpu")]
    ['cpu']
    """
    torch = attempt_import("torch")
    kind, index = _parse(spec)
    if kind == "cpu":
        return [torch.device("cpu")]
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceUnavailableError(
                f"device {spec!r} was requested but MPS is not available; "
                "pass --device cpu (or 'auto') to run on the CPU"
            )
        return [torch.device("mps")]
    n_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if kind == "auto":
        if n_gpu:
            return [torch.device("cuda", i) for i in range(n_gpu)]
        logger.info("no CUDA device found; 'auto' runs on the CPU")
        return [torch.device("cpu")]
    # cuda
    if n_gpu == 0:
        raise DeviceUnavailableError(
            f"device {spec!r} was requested but CUDA is not available "
            f"(torch {torch.__version__}, torch.cuda.is_available() is False); "
            "pass --device cpu (or 'auto') to run on the CPU, or install a CUDA build of torch"
        )
    if index is None:
        return [torch.device("cuda", i) for i in range(n_gpu)]
    if index >= n_gpu:
        raise DeviceUnavailableError(
            f"device {spec!r} was requested but only {n_gpu} CUDA device(s) are visible "
            f"(cuda:0..cuda:{n_gpu - 1}); pick one of those or 'cuda' for all"
        )
    return [torch.device("cuda", index)]


def resolve_device(spec: Any = "auto") -> torch.device:
    """Resolve a device string to the single (primary) device.

    Parameters
    ----------
    spec : str or torch.device, default "auto"
        See :func:`resolve_devices`.

    Returns
    -------
    torch.device
        The first device of :func:`resolve_devices` (``cuda:0`` for
        ``"cuda"`` on a multi-GPU machine).

    Raises
    ------
    DeviceUnavailableError
        The requested device is not available.

    Examples
    --------
    >>> resolve_device("cpu").type
    'cpu'
    """
    return resolve_devices(spec)[0]


def data_parallel(module: torch.nn.Module, devices: list[torch.device]) -> torch.nn.Module:
    """Move ``module`` to ``devices[0]``; wrap it for several GPUs.

    Parameters
    ----------
    module : torch.nn.Module
        The model.
    devices : list of torch.device
        From :func:`resolve_devices`.

    Returns
    -------
    torch.nn.Module
        ``module`` itself on one device, or a :class:`torch.nn.DataParallel`
        splitting each batch across several CUDA devices.

    Examples
    --------
    >>> import torch
    >>> m = data_parallel(torch.nn.Linear(2, 2), [torch.device("cpu")])
    >>> isinstance(m, torch.nn.Linear)
    True
    """
    torch = attempt_import("torch")
    module = module.to(devices[0])
    if len(devices) > 1 and all(d.type == "cuda" for d in devices):
        logger.info("using %d GPUs with DataParallel: %s", len(devices), devices)
        return torch.nn.DataParallel(module, device_ids=[d.index for d in devices])
    return module
