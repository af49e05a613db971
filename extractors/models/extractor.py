"""``ModelExtractor``: any layer of any named model -> store variables.

Built on :class:`extractors.base.HookExtractor`: each requested layer (a
name from ``model.named_modules()``) is captured with a forward hook and
becomes one store variable *named after the layer*. What a layer's output
becomes depends on its shape and on ``pool``:

=================  ==============================  ==============================
output             ``pool=None``                   ``pool="mean"|"max"|"cls"``
=================  ==============================  ==============================
``[B, F]``         dense ``(<layer>_feature,)``    the same (nothing to pool)
``[B, C, H, W]``   ragged ``(<layer>_channel,      mean/max over ``(H, W)``
                   y, x)``                         (``cls``: an error)
``[B, T, D]``      ragged ``(token,                mean/max over tokens; ``cls``
                   <layer>_feature)``              = token 0
=================  ==============================  ==============================

Feature dims carry the layer name because layers differ in width. The store
records the provenance of :func:`extractors.models.sources.load_model`
(model spec, weights SHA-256, layers, pooling, preprocessing, library
versions).

Examples
--------
With weights: ``ModelExtractor("torchvision:resnet18", [...], weights="r18.pth")``.
Here random weights (nothing is downloaded) on a real photo:

>>> from skimage import data
>>> from extractors.models import ModelExtractor
>>> ex = ModelExtractor("torchvision:resnet18", ["layer4", "avgpool"], weights=None)
>>> out = ex.extract_images([data.astronaut()])
>>> out["layer4"][0].shape, sorted(ex.ragged)
((512, 7, 7), ['avgpool', 'layer4'])
>>> pooled = ModelExtractor("torchvision:resnet18", ["layer4"], weights=None, pool="mean")
>>> pooled.extract_images([data.astronaut()])["layer4"].shape
(1, 512)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from embstore.errors import ValidationError

from ..base import HookExtractor, to_numpy
from ..protocol import Batch
from .sources import LoadedModel, load_model

__all__ = ["POOLS", "ModelExtractor", "layer_table", "reduce_output"]

logger = logging.getLogger(__name__)

#: Accepted ``pool`` values.
POOLS = (None, "mean", "max", "cls")


def reduce_output(tensor: Any, pool: str | None, layer: str = "") -> Any:
    """Pool one layer output (see the module table); 2-D outputs pass through.

    Parameters
    ----------
    tensor : torch.Tensor
        ``[B, F]``, ``[B, C, H, W]`` or ``[B, T, D]``.
    pool : {None, "mean", "max", "cls"}
        Pooling.
    layer : str, optional
        Layer name for messages.

    Returns
    -------
    torch.Tensor

    Raises
    ------
    ValidationError
        For ``cls`` on a feature map or an output of another rank.
    """
    if tensor.ndim == 2 or pool is None:
        if tensor.ndim not in (2, 3, 4):
            raise ValidationError(
                f"layer {layer!r} outputs shape {tuple(tensor.shape)}; only [B, F], [B, C, H, W] and "
                "[B, T, D] outputs can be stored: choose another layer."
            )
        return tensor
    if tensor.ndim == 4:
        if pool == "cls":
            raise ValidationError(
                f"--pool cls takes token 0 of a [B, T, D] output; layer {layer!r} is a feature map "
                f"{tuple(tensor.shape)}: use --pool mean or max."
            )
        return tensor.mean(dim=(2, 3)) if pool == "mean" else tensor.amax(dim=(2, 3))
    if tensor.ndim == 3:
        if pool == "cls":
            return tensor[:, 0]
        return tensor.mean(dim=1) if pool == "mean" else tensor.amax(dim=1)
    raise ValidationError(
        f"layer {layer!r} outputs shape {tuple(tensor.shape)}; only [B, F], [B, C, H, W] and [B, T, D] "
        "outputs can be stored: choose another layer."
    )


def _dims_for(layer: str, shape: Sequence[int], pool: str | None) -> tuple[str, tuple[str, ...]]:
    """``("dense" | "ragged", dims)`` of a layer output of ``shape`` (batch axis included)."""
    if len(shape) == 2 or pool is not None:
        return "dense", (f"{layer}_feature",)
    if len(shape) == 4:
        return "ragged", (f"{layer}_channel", "y", "x")
    return "ragged", ("token", f"{layer}_feature")


def _variable_name(layer: str) -> str:
    if not layer or layer.startswith("_"):
        raise ValidationError(
            f"layer {layer!r} cannot name a store variable; pick a named sub-module (see "
            "'embstore models layers SPEC')."
        )
    return layer


class ModelExtractor(HookExtractor):
    """Hooked outputs of chosen layers of a torchvision / timm / open_clip / HF model.

    Parameters
    ----------
    spec : str or LoadedModel
        Model spec (``"torchvision:resnet50"``, ...; see
        :mod:`extractors.models.sources`) or an already loaded model.
    layers : sequence of str
        Module names (``model.named_modules()``); one variable each.
    weights : str or os.PathLike, optional
        Local weights file (random weights when omitted).
    pool : {None, "mean", "max", "cls"}, optional
        Pooling of spatial / token outputs (None keeps them, ragged).
    device : str, optional
        See :class:`~extractors.base.HookExtractor`.
    dtype : str, optional
        Storage dtype of every variable.
    autocast : {None, "fp16", "bf16"}, optional
        Mixed precision.
    **load_options
        ``num_classes``, ``transform_weights`` of
        :func:`~extractors.models.sources.load_model`.

    Raises
    ------
    ValidationError
        Unknown layer (with close matches), bad pool, or a layer output that
        cannot be stored.
    """

    def __init__(
        self,
        spec: str | LoadedModel,
        layers: Sequence[str] | str,
        weights: str | os.PathLike | None = None,
        *,
        pool: str | None = None,
        device: Any = "cpu",
        dtype: str = "float32",
        autocast: str | None = None,
        **load_options: Any,
    ) -> None:
        if pool not in POOLS:
            raise ValidationError(f"pool={pool!r} is not one of {list(POOLS)}; e.g. pool='mean'.")
        if isinstance(layers, str):
            layers = [s.strip() for s in layers.split(",") if s.strip()]
        layers = list(dict.fromkeys(layers))
        if not layers:
            raise ValidationError("no layers given; pass e.g. layers=['layer4', 'avgpool'].")
        loaded = (
            spec if isinstance(spec, LoadedModel) else load_model(spec, weights, **load_options)
        )
        self.loaded = loaded
        self.layers = layers
        self.pool = pool
        outputs = {_variable_name(layer): layer for layer in layers}
        super().__init__(
            loaded.model, outputs, device, preprocess=loaded.preprocess, autocast=autocast
        )
        if loaded.forward is not None and len(self.devices) > 1:
            raise ValidationError(
                f"{loaded.info.get('source')} models run through their own forward "
                f"({loaded.forward.__name__}); pass one device (e.g. 'cuda:0')."
            )
        self.storage_dtype = str(np.dtype(dtype))
        self._kinds: dict[str, str] = {}
        self._probe()

    def _batch_of(self, images: Sequence[Any]) -> Any:
        """Preprocess RGB PIL images with the source's transform and collate them."""
        preprocess, collate = self.preprocess, self.collate
        if preprocess is None or collate is None:  # pragma: no cover - set in __init__
            raise ValidationError(
                "this ModelExtractor has no preprocessing; build it with a model spec"
            )
        return collate([preprocess(im) for im in images])

    # ------------------------------------------------------------- schema
    def _probe(self) -> None:
        """One forward pass on a blank image: the output shape of every layer."""
        from PIL import Image

        blank = Image.new("RGB", (224, 224), (128, 128, 128))
        raw = super().extract_batch(self._batch_of([blank]))
        self.ragged = {}
        dense: dict[str, tuple[str, ...]] = {}
        self.shapes = {}
        for var, tensor in raw.items():
            reduce_output(tensor, self.pool, var)  # validates
            kind, dims = _dims_for(var, tuple(tensor.shape), self.pool)
            self._kinds[var] = kind
            self.shapes[var] = tuple(int(s) for s in tensor.shape[1:])
            (dense if kind == "dense" else self.ragged)[var] = dims
        self._dims = dense
        self.dtypes = dict.fromkeys(raw, self.storage_dtype)

    @property
    def variables(self) -> dict[str, tuple[str, ...]]:
        """Dense variables -> dims, for ``Store.create(variables=)``."""
        return dict(self._dims)

    def _name_dims(self, result: Any) -> None:
        """Dims come from :meth:`_probe` (dense and ragged apart), never from a batch."""

    @property
    def store_attrs(self) -> dict[str, Any]:
        """Provenance for the store's attributes (JSON-serialisable)."""
        return {
            **self.loaded.info,
            "model": self.loaded.info.get("model_spec"),
            "layers": list(self.layers),
            "pool": self.pool,
            "layer_output_shapes_224": {k: list(v) for k, v in self.shapes.items()},
            "storage_dtype": self.storage_dtype,
        }

    # --------------------------------------------------------- extraction
    def forward(self, inputs: Any) -> Any:
        """Run the model (through its source's own forward, e.g. ``encode_image``)."""
        if self.loaded.forward is None:
            return self._runner(inputs)
        return self.loaded.forward(self.model, inputs)

    def extract_batch(self, batch: Any) -> Batch:
        """Forward one batch; pooled layers as tensors, spatial ones kept for :meth:`finish_batch`.

        Parameters
        ----------
        batch : torch.Tensor
            ``[B, 3, H, W]`` preprocessed images.

        Returns
        -------
        extractors.protocol.Batch
        """
        raw = super().extract_batch(batch)
        return Batch({var: reduce_output(t, self.pool, var) for var, t in raw.items()})

    def finish_batch(self, out: Batch) -> Batch:
        """Split ragged (spatial / token) outputs into per-image host arrays.

        Parameters
        ----------
        out : Batch
            From :meth:`extract_batch`.

        Returns
        -------
        Batch
            Dense variables unchanged; ragged ones as lists of ``[C, H, W]``
            or ``[T, D]`` arrays.
        """
        result = dict(out.data)
        for var, kind in self._kinds.items():
            if kind == "ragged" and var in result:
                arr = to_numpy(result[var])
                result[var] = [np.ascontiguousarray(a) for a in arr]
        return Batch(result, coords=out.coords, ragged_hw=out.ragged_hw)

    def extract_images(self, images: Sequence[Any]) -> dict[str, Any]:
        """Preprocess with the source's own transform and extract NumPy outputs.

        Parameters
        ----------
        images : sequence of PIL.Image.Image or numpy.ndarray

        Returns
        -------
        dict
            Dense variables as ``[B, F]`` arrays, ragged ones as lists.
        """
        from ..images import to_rgb

        out = self.finish_batch(self.extract_batch(self._batch_of([to_rgb(im) for im in images])))
        return {k: (v if isinstance(v, list) else to_numpy(v)) for k, v in out.items()}


def layer_table(
    loaded: LoadedModel, size: int = 224, max_depth: int | None = None
) -> list[dict[str, Any]]:
    """Every named module with its output shape for one ``size x size`` image.

    Parameters
    ----------
    loaded : LoadedModel
        From :func:`~extractors.models.sources.load_model`.
    size : int, optional
        Input image side in pixels (fed as a ``[1, 3, size, size]`` tensor,
        bypassing resizing).
    max_depth : int, optional
        Only names with at most this many dots + 1 parts.

    Returns
    -------
    list of dict
        ``{"name", "type", "shape"}`` in module order; ``shape`` is None
        for modules the forward pass does not call.
    """
    import torch

    model = loaded.model
    shapes: dict[str, Any] = {}
    handles = []

    def make(name: str) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            t = output
            while isinstance(t, (tuple, list)) and t:
                t = t[0]
            if hasattr(t, "last_hidden_state"):
                t = t.last_hidden_state
            if hasattr(t, "shape") and name not in shapes:
                shapes[name] = tuple(int(s) for s in t.shape)

        return hook

    modules = [(n, m) for n, m in model.named_modules() if n]
    if max_depth is not None:
        modules = [(n, m) for n, m in modules if n.count(".") < max_depth]
    try:
        for name, module in modules:
            handles.append(module.register_forward_hook(make(name)))
        x = torch.zeros(1, 3, size, size)
        with torch.inference_mode():
            if loaded.forward is None:
                model(x)
            else:
                loaded.forward(model, x)
    finally:
        for h in handles:
            h.remove()
    return [{"name": n, "type": type(m).__name__, "shape": shapes.get(n)} for n, m in modules]
