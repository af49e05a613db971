"""A generic hook-based extractor: any ``torch.nn.Module`` -> named arrays.

:class:`HookExtractor` takes a model and a mapping from store variable names
to *sources*. A source is either the name of a sub-module (as listed by
``model.named_modules()``), whose forward output is captured with a forward
hook, or a callable ``f(model, inputs, outputs) -> tensor`` evaluated after the
forward pass on the model's inputs and outputs. Hooks exist only while
:meth:`HookExtractor.hooks` is active (it is a context manager used by every
extraction call), so the model is left exactly as it was given.

Model-specific extractors are thin layers on this: they choose the sources
and the preprocessing. The pipeline (:func:`extractors.pipeline.run_extraction`)
talks to any extractor through the small protocol documented there
(``variables``, ``ragged``, ``dtypes``, ``preprocess``, ``collate``,
``extract_batch``).

Examples
--------
>>> import torch
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
>>> ex = HookExtractor(model, {"hidden": "0", "logits": lambda m, x, y: y})
>>> out = ex.extract(torch.zeros(5, 4))
>>> out["hidden"].shape, out["logits"].shape
((5, 3), (5, 2))
>>> len(model[0]._forward_hooks)
0
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from embstore._optional import attempt_import
from embstore.errors import UnknownVariableError, ValidationError

from .protocol import Batch

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["HookExtractor", "Source", "autocast_context", "to_numpy"]

logger = logging.getLogger(__name__)

#: A source: a sub-module name, or ``f(model, inputs, outputs) -> tensor``.
Source = str | Callable[[Any, Any, Any], Any]

_AUTOCAST = {"fp16": "float16", "float16": "float16", "bf16": "bfloat16", "bfloat16": "bfloat16"}


def autocast_context(device: Any, autocast: str | None) -> contextlib.AbstractContextManager:
    """Return a ``torch.autocast`` context for ``autocast`` (or a no-op).

    Parameters
    ----------
    device : torch.device
        The compute device; its type selects the autocast backend.
    autocast : {None, "fp16", "bf16"}
        Mixed precision for the forward pass. ``None`` (default everywhere)
        computes in float32, which is what matches reference implementations
        number for number. ``"fp16"``/``"bf16"`` run matmuls and convolutions
        in half precision: on GPUs with tensor cores about 2x the throughput,
        at a relative deviation of ~1e-3 (fp16) or ~1e-2 (bf16) in the
        embeddings. fp16 autocast on the CPU is slow; use bf16 there.

    Returns
    -------
    context manager

    Raises
    ------
    ValidationError
        Unknown autocast name.

    Examples
    --------
    >>> import torch
    >>> with autocast_context(torch.device("cpu"), None):
    ...     pass
    """
    if autocast is None or autocast in ("none", "fp32", "float32"):
        return contextlib.nullcontext()
    torch = attempt_import("torch")
    if autocast not in _AUTOCAST:
        raise ValidationError(f"unknown autocast {autocast!r}; use None, 'fp16' or 'bf16'")
    dtype = getattr(torch, _AUTOCAST[autocast])
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def to_numpy(value: Any) -> Any:
    """Copy a tensor (any device) to a NumPy array; recurse into lists.

    Parameters
    ----------
    value : torch.Tensor, numpy.ndarray, list or tuple
        Tensors are detached and copied to host memory (bfloat16 becomes
        float32, which NumPy lacks). Lists/tuples are converted element-wise.

    Returns
    -------
    numpy.ndarray or list of numpy.ndarray

    Examples
    --------
    >>> import torch
    >>> to_numpy(torch.ones(2)).tolist()
    [1.0, 1.0]
    """
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (list, tuple)):
        return [to_numpy(v) for v in value]
    if hasattr(value, "detach"):
        torch = attempt_import("torch")
        t = value.detach()
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.cpu().numpy()
    return np.asarray(value)


def _first_tensor(output: Any) -> Any:
    """The tensor of a module output (first element of a tuple/list)."""
    while isinstance(output, (tuple, list)) and output:
        output = output[0]
    return output


class HookExtractor:
    """Extract named intermediate outputs of any ``torch.nn.Module``.

    Parameters
    ----------
    model : torch.nn.Module
        The model; it is put in eval mode and moved to ``device``.
    outputs : mapping of str to (str or callable)
        ``{variable: source}``. A string source names a sub-module from
        ``model.named_modules()``; its forward output (the first element when
        it returns a tuple) is captured. A callable source is called as
        ``source(model, inputs, outputs)`` after the forward pass and returns
        a tensor with a leading batch axis.
    device : str or torch.device, default "cpu"
        See :func:`extractors.device.resolve_devices`; ``"cuda"`` on a
        machine with several GPUs splits each batch over all of them
        (:class:`torch.nn.DataParallel`; captured outputs are gathered in
        batch order).
    dims : mapping of str to tuple of str, optional
        Trailing dimension names per variable (without the batch axis) for
        :meth:`embstore.Store.create`. Missing names are filled in as
        ``<variable>_dim0, ...`` on first use of :attr:`variables` after an
        extraction.
    dtypes : mapping of str to str, optional
        Storage dtypes per variable (the store's defaults otherwise).
    preprocess : callable, optional
        ``f(PIL RGB image) -> sample`` run in DataLoader workers by the
        pipeline; must be picklable for ``spawn`` start methods.
    collate : callable, optional
        ``f(list of samples) -> batch``; default stacks tensors.
    autocast : {None, "fp16", "bf16"}, optional
        Mixed precision for the forward pass (see :func:`autocast_context`).

    Raises
    ------
    ValidationError
        A module name does not exist in the model (the message lists close
        matches), or ``outputs`` is empty.

    Examples
    --------
    >>> import torch
    >>> m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1))
    >>> ex = HookExtractor(m, {"pooled": "1"}, dims={"pooled": ("channel", "y", "x")})
    >>> ex.extract(torch.zeros(2, 3, 8, 8))["pooled"].shape
    (2, 4, 1, 1)
    >>> ex.variables
    {'pooled': ('channel', 'y', 'x')}
    """

    def __init__(
        self,
        model: torch.nn.Module,
        outputs: Mapping[str, Source],
        device: Any = "cpu",
        *,
        dims: Mapping[str, Sequence[str]] | None = None,
        dtypes: Mapping[str, str] | None = None,
        preprocess: Callable[[Any], Any] | None = None,
        collate: Callable[[list[Any]], Any] | None = None,
        autocast: str | None = None,
    ) -> None:
        from .device import data_parallel, resolve_devices

        if not outputs:
            raise ValidationError(
                "outputs is empty; pass {variable: module_name_or_callable}, "
                "e.g. {'features': 'layer4'}"
            )
        self.model = model.eval()
        names = dict(self.model.named_modules())
        for var, source in outputs.items():
            if isinstance(source, str):
                if source not in names:
                    close = difflib.get_close_matches(source, list(names), n=5)
                    raise ValidationError(
                        f"module {source!r} (for variable {var!r}) is not in the model; "
                        f"close matches: {close or 'none'}; see model.named_modules()"
                    )
            elif not callable(source):
                raise ValidationError(
                    f"source for {var!r} is {source!r}; use a module name or a "
                    "callable (model, inputs, outputs) -> tensor"
                )
        self.outputs: dict[str, Source] = dict(outputs)
        self.devices = resolve_devices(device)
        self.device = self.devices[0]
        self._runner = data_parallel(self.model, self.devices)
        self._dims: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in (dims or {}).items()}
        self.dtypes: dict[str, str] = dict(dtypes or {})
        self.ragged: dict[str, tuple[str, ...]] = {}
        self.preprocess = preprocess
        self.collate = collate if collate is not None else (default_collate if preprocess else None)
        self.autocast = autocast
        self._captured: dict[str, list[tuple[int, Any]]] = {}
        self._lock = threading.Lock()

    def to(self, device: Any) -> HookExtractor:
        """Move the model to another device (or devices); returns ``self``.

        Parameters
        ----------
        device : str or torch.device
            See :func:`extractors.device.resolve_devices`.

        Returns
        -------
        HookExtractor

        Raises
        ------
        DeviceUnavailableError
            The device is not available.
        """
        from .device import data_parallel, resolve_devices

        self.devices = resolve_devices(device)
        self.device = self.devices[0]
        self._runner = data_parallel(self.model, self.devices)
        return self

    # ------------------------------------------------------------------ schema
    @property
    def variables(self) -> dict[str, tuple[str, ...]]:
        """Trailing dims per variable, for :meth:`embstore.Store.create`.

        Raises
        ------
        ValidationError
            A variable's dims are unknown: pass ``dims=`` or run one
            extraction first.
        """
        missing = [v for v in self.outputs if v not in self._dims]
        if missing:
            raise ValidationError(
                f"dims of {missing} are unknown; pass dims={{...}} to HookExtractor "
                "or call extract() once so they can be named automatically"
            )
        return {v: self._dims[v] for v in self.outputs}

    def _name_dims(self, result: Mapping[str, Any]) -> None:
        for var, arr in result.items():
            if var not in self._dims:
                ndim = len(getattr(arr, "shape", ())) - 1
                self._dims[var] = tuple(f"{var}_dim{i}" for i in range(ndim))

    # ------------------------------------------------------------------- hooks
    @contextlib.contextmanager
    def hooks(self) -> Iterator[dict[str, list[tuple[int, Any]]]]:
        """Register the forward hooks for the duration of a ``with`` block.

        Yields
        ------
        dict
            ``{variable: [(device_index, tensor), ...]}`` filled by the hooks.

        Examples
        --------
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Linear(2, 2))
        >>> ex = HookExtractor(m, {"a": "0"})
        >>> with ex.hooks():
        ...     len(m[0]._forward_hooks)
        1
        >>> len(m[0]._forward_hooks)
        0
        """
        modules = dict(self.model.named_modules())
        captured: dict[str, list[tuple[int, Any]]] = {
            v: [] for v, s in self.outputs.items() if isinstance(s, str)
        }
        handles = []

        def make_hook(var: str) -> Callable[..., None]:
            def hook(module: Any, args: Any, output: Any) -> None:
                tensor = _first_tensor(output)
                index = getattr(getattr(tensor, "device", None), "index", None) or 0
                with self._lock:  # DataParallel replicas call hooks from threads
                    captured[var].append((index, tensor.detach()))

            return hook

        try:
            for var, source in self.outputs.items():
                if isinstance(source, str):
                    handles.append(modules[source].register_forward_hook(make_hook(var)))
            yield captured
        finally:
            for h in handles:
                h.remove()

    # --------------------------------------------------------------- extraction
    def _to_device(self, inputs: Any) -> Any:
        if hasattr(inputs, "to"):
            return inputs.to(self.device, non_blocking=True)
        if isinstance(inputs, (list, tuple)):
            return type(inputs)(self._to_device(x) for x in inputs)
        if isinstance(inputs, Mapping):
            return {k: self._to_device(v) for k, v in inputs.items()}
        return inputs

    def forward(self, inputs: Any) -> Any:
        """Run the model on ``inputs`` (already on the device).

        Override in subclasses whose model takes something other than one
        positional argument.

        Parameters
        ----------
        inputs : Any
            The collated batch on the device.

        Returns
        -------
        Any
            The model's output.
        """
        return self._runner(inputs)

    def extract_batch(self, batch: Any) -> Batch:
        """Run one batch and return the captured outputs as device tensors.

        The pipeline calls this on the compute thread and leaves the
        device-to-host copy to its writer thread.

        Parameters
        ----------
        batch : Any
            The collated batch (moved to the device here).

        Returns
        -------
        extractors.protocol.Batch
            One tensor per variable, leading axis = batch (reads like a dict).
        """
        torch = attempt_import("torch")
        inputs = self._to_device(batch)
        with (
            torch.inference_mode(),
            autocast_context(self.device, self.autocast),
            self.hooks() as captured,
        ):
            outputs = self.forward(inputs)
            result: dict[str, Any] = {}
            for var, source in self.outputs.items():
                if isinstance(source, str):
                    parts = sorted(captured[var], key=lambda p: p[0])  # stable: batch order
                    if not parts:
                        raise ValidationError(
                            f"module {source!r} (variable {var!r}) did not run in the forward pass; "
                            "choose a module that the model's forward calls"
                        )
                    tensors = [t.to(self.device) for _, t in parts]
                    result[var] = tensors[0] if len(tensors) == 1 else torch.cat(tensors, 0)
                else:
                    result[var] = source(self.model, inputs, outputs)
                    if hasattr(result[var], "detach"):
                        result[var] = result[var].detach()
        self._name_dims(result)
        return Batch(result)

    def extract(self, inputs: Any) -> dict[str, np.ndarray]:
        """Run the model on a batch and return NumPy arrays.

        Parameters
        ----------
        inputs : Any
            A tensor (or whatever the model's forward takes) with a leading
            batch axis.

        Returns
        -------
        dict of str to numpy.ndarray
            One array per variable in ``outputs``.
        """
        return {k: to_numpy(v) for k, v in self.extract_batch(inputs).items()}

    def extract_images(self, images: Sequence[Any]) -> dict[str, np.ndarray]:
        """Preprocess and extract a list of images (PIL or uint8 arrays).

        Parameters
        ----------
        images : sequence of PIL.Image.Image or numpy.ndarray

        Returns
        -------
        dict of str to numpy.ndarray

        Raises
        ------
        ValidationError
            No ``preprocess`` was given.
        """
        from .images import to_rgb

        if self.preprocess is None:
            raise ValidationError(
                "extract_images needs preprocess=...; pass a callable PIL image -> tensor "
                "to HookExtractor, or call extract() on a ready batch"
            )
        samples = [self.preprocess(to_rgb(im)) for im in images]
        batch = self.collate(samples) if self.collate is not None else default_collate(samples)
        return {k: to_numpy(v) for k, v in self.extract_batch(batch).items()}


def default_collate(samples: list[Any]) -> Any:
    """Stack tensors/arrays along a new batch axis; lists stay lists.

    Parameters
    ----------
    samples : list
        Preprocessed samples.

    Returns
    -------
    torch.Tensor or list
    """
    torch = attempt_import("torch")
    if samples and all(hasattr(s, "shape") for s in samples):
        return torch.stack(
            [torch.as_tensor(np.asarray(s)) if isinstance(s, np.ndarray) else s for s in samples]
        )
    return list(samples)


def check_variables(requested: Sequence[str], available: Sequence[str]) -> list[str]:
    """Validate a list of variable names against those an extractor offers.

    Parameters
    ----------
    requested : sequence of str
    available : sequence of str

    Returns
    -------
    list of str
        ``requested`` in order, duplicates dropped.

    Raises
    ------
    UnknownVariableError
        A name is not available; the message lists the valid names.

    Examples
    --------
    >>> check_variables(["a", "a"], ["a", "b"])
    ['a']
    """
    out: list[str] = []
    for name in requested:
        if name not in available:
            raise UnknownVariableError(
                f"unknown variable {name!r}; choose from {sorted(available)}"
            )
        if name not in out:
            out.append(name)
    return out
