"""``DetrExtractor``: DETR embeddings as numpy arrays ready for a Store.

What each output is (``B`` images, ``Q`` queries, ``D`` hidden size, ``L``
decoder layers, ``C`` backbone channels, ``h, w`` each image's feature grid):

==================== ======================= ===================================
name                 shape                   meaning
==================== ======================= ===================================
query_embeddings     ``[B, Q, D]``           last decoder layer (after its norm),
                                             what the heads see
decoder_output       ``[B, L, Q, D]``        every decoder layer after the
                                             decoder's final LayerNorm
pred_logits          ``[B, Q, classes + 1]`` class logits (last = no object)
pred_boxes           ``[B, Q, 4]``           ``(cx, cy, w, h)`` in ``[0, 1]``,
                                             relative to the unpadded image
encoder_output       list of ``[h*w, D]``    encoder memory on the image's
                                             unpadded feature cells, row-major
backbone_features    list of ``[C, h, w]``   last ResNet stage, unpadded cells
decoder_attention    list ``[L, Q, h, w]``   decoder cross-attention weights
                                             averaged over heads (opt-in)
encoder_attention    list ``[E, P, h, w]``   encoder self-attention of ``P``
                                             chosen cells (opt-in)
feature_hw           ``[B, 2]``              ``(h, w)`` of each feature grid
input_hw             ``[B, 2]``              ``(H, W)`` of each resized image
==================== ======================= ===================================

Extract types (the old ``extract_embeddings.py --extract_type`` values; the
sets follow the per-image ``.pt`` files that script wrote, so that stores and
old files hold the same variables):

* ``"decoder"`` (recommended): query_embeddings, decoder_output, pred_logits,
  pred_boxes;
* ``"encoder"``: encoder_output, pred_logits, pred_boxes;
* ``"backbone"``: backbone_features, pred_logits, pred_boxes;
* ``"all"``: all six;
* ``"attention"``: decoder_attention, pred_logits, pred_boxes (never part of
  ``"all"``: ``L * Q`` maps per image are large; combine types in a list,
  ``["decoder", "attention"]``). ``encoder_attention`` is added when the
  extractor is given ``encoder_attention_points``.

Attention maps are what ``nn.MultiheadAttention`` returns as its second
output (``need_weights=True``, weights averaged over heads) in the official
model, ``transformer.decoder.layers[i].multihead_attn`` (cross-attention of
every query over the encoder memory) and ``transformer.encoder.layers[i].
self_attn``, captured with forward hooks (the DETR hands-on notebook's
method), cropped to each image's unpadded feature grid. Padded cells get
weight 0, so each cropped map still sums to 1 over ``(h, w)``.

An explicit list of names is accepted too; the model runs only as far as the
requested names need (``["backbone_features"]`` never runs the transformer,
``["encoder_output"]`` skips the decoder).

Examples
--------
>>> import numpy as np
>>> from extractors.detr import DetrExtractor
>>> ext = DetrExtractor.from_config(
...     {"backbone": "resnet18", "hidden_dim": 32, "nheads": 4, "enc_layers": 1,
...      "dec_layers": 2, "dim_feedforward": 32, "num_queries": 5},
...     min_size=64, max_size=96)
>>> out = ext.extract_images([np.zeros((40, 60, 3), np.uint8)])
>>> out["query_embeddings"].shape, out["encoder_output"][0].shape
((1, 5, 32), (6, 32))
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from embstore.errors import UnknownVariableError, ValidationError

from ..device import data_parallel, resolve_devices
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, DetrTransform, pad_batch

if TYPE_CHECKING:  # torch is imported only when a model is built or loaded
    from .model import DETR, DetrConfig

__all__ = [
    "ATTENTION_NAMES",
    "EXTRACT_TYPES",
    "RAGGED_DIMS",
    "VARIABLE_DIMS",
    "DetrExtractor",
    "resolve_variables",
]

logger = logging.getLogger(__name__)

#: ``extract_type`` -> variables (see the module docstring).
EXTRACT_TYPES: dict[str, list[str]] = {
    "all": [
        "query_embeddings",
        "decoder_output",
        "pred_logits",
        "pred_boxes",
        "encoder_output",
        "backbone_features",
    ],
    "decoder": ["query_embeddings", "decoder_output", "pred_logits", "pred_boxes"],
    "encoder": ["encoder_output", "pred_logits", "pred_boxes"],
    "backbone": ["backbone_features", "pred_logits", "pred_boxes"],
    "attention": ["decoder_attention", "pred_logits", "pred_boxes"],
}

#: Opt-in variables, never part of ``"all"``.
ATTENTION_NAMES = ("decoder_attention", "encoder_attention")

#: Dense variables -> trailing dims (after the row dim) for ``Store.create``.
VARIABLE_DIMS: dict[str, tuple[str, ...]] = {
    "query_embeddings": ("query", "hidden"),
    "decoder_output": ("layer", "query", "hidden"),
    "pred_logits": ("query", "class"),
    "pred_boxes": ("query", "box"),
}

#: Ragged (per-image size) variables -> their per-row dims.
RAGGED_DIMS: dict[str, tuple[str, ...]] = {
    "encoder_output": ("token", "hidden"),
    "backbone_features": ("channel", "y", "x"),
    # stored as h*w tokens of (layer, query) / (encoder_layer, point) values, row-major over (y, x)
    "decoder_attention": ("token", "layer", "query"),
    "encoder_attention": ("token", "encoder_layer", "point"),
}

_ALL_NAMES = tuple(EXTRACT_TYPES["all"])
_KNOWN_NAMES = _ALL_NAMES + ATTENTION_NAMES
_DECODER_NAMES = {"query_embeddings", "decoder_output", "pred_logits", "pred_boxes"}

_AUTOCAST = {
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
}


def extract_type_name(names: Iterable[str]) -> str:
    """The ``extract_type`` whose variables are ``names``, else ``"custom"``.

    Examples
    --------
    >>> extract_type_name(EXTRACT_TYPES["all"]), extract_type_name(["pred_boxes"])
    ('all', 'custom')
    """
    wanted = set(names)
    return next((k for k, v in EXTRACT_TYPES.items() if set(v) == wanted), "custom")


def resolve_variables(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """Turn an extract type or a list of names into a tuple of variable names.

    Parameters
    ----------
    spec : str, iterable of str or None
        ``"all"``, ``"decoder"``, ``"encoder"``, ``"backbone"``, one variable
        name, or a list of variable names; None means ``"all"``.

    Returns
    -------
    tuple of str
        Names in the canonical order of ``EXTRACT_TYPES["all"]``.

    Raises
    ------
    UnknownVariableError
        For a name that is neither an extract type nor a variable.

    Examples
    --------
    >>> resolve_variables("encoder")
    ('pred_logits', 'pred_boxes', 'encoder_output')
    >>> resolve_variables(["backbone_features"])
    ('backbone_features',)
    """
    if spec is None:
        return _ALL_NAMES
    if isinstance(spec, str):
        if spec in EXTRACT_TYPES:
            names = set(EXTRACT_TYPES[spec])
        else:
            names = {spec}
    else:
        names = set()
        for item in spec:
            names.update(EXTRACT_TYPES.get(item, [item]))
    bad = sorted(names - set(_KNOWN_NAMES))
    if bad or not names:
        raise UnknownVariableError(
            f"unknown DETR variable(s) {bad or list(names)}; use an extract type "
            f"{sorted(EXTRACT_TYPES)} or a list of {list(_KNOWN_NAMES)}."
        )
    return tuple(n for n in _KNOWN_NAMES if n in names)


def _autocast_dtype(autocast: str | bool | None) -> Any:
    import torch

    if autocast is None:
        return None
    key = str(autocast).lower()
    if key not in _AUTOCAST:
        raise ValidationError(
            f"autocast={autocast!r} is not supported; use None, 'fp16' or 'bf16'."
        )
    return getattr(torch, _AUTOCAST[key])


class DetrExtractor:
    """Extract DETR embeddings (backbone, encoder, decoder) and predictions.

    Parameters
    ----------
    model : DETR
        A built model (:func:`extractors.detr.model.build_detr`) with its weights.
    device : str or torch.device
        Where the model runs (:func:`extractors.device.resolve_devices`):
        ``"cpu"``, ``"cuda:N"``, ``"cuda"`` (every visible GPU, batches split
        with ``torch.nn.DataParallel``) or ``"auto"``. Asking for CUDA without
        it raises :class:`~embstore.errors.DeviceUnavailableError` (no silent
        fallback).
    extract_type : str or list of str
        Default variables (see :data:`EXTRACT_TYPES`); ``"all"`` by default.
    min_size, max_size : int
        Default preprocessing sizes (official evaluation: 800 and 1333).
    autocast : {None, "fp16", "bf16"}
        Default mixed precision. None (float32) reproduces the official numbers
        to ~1e-5. fp16/bf16 are faster on GPUs but change the numbers: measured
        on CPU with DETR-R50 (deterministic weights, two photos at 480 px),
        query embeddings of mean magnitude 0.78 moved by 0.0013 on average
        (max 0.013) with fp16 and by 0.011 (max 0.087) with bf16; boxes by
        2e-4 (fp16) and 1.6e-3 (bf16). Outputs are always returned as float32.
    storage_dtype : str
        Storage dtype of hidden-state variables in :attr:`store_dtypes`
        (``float16`` halves the bytes; logits and boxes always stay float32).
    info : dict, optional
        Provenance (checkpoint path, SHA-256 ...) merged into :attr:`store_attrs`.
    encoder_attention_points : str or sequence of (float, float), optional
        Relative ``(y, x)`` feature-grid positions in ``[0, 1]`` (``"y,x;y,x"``
        accepted) whose encoder self-attention is extracted as
        ``encoder_attention`` (see :mod:`extractors.detr.attention`).

    Examples
    --------
    >>> ext = DetrExtractor.from_config({"backbone": "resnet18", "hidden_dim": 32,
    ...     "nheads": 4, "enc_layers": 1, "dec_layers": 1, "dim_feedforward": 32,
    ...     "num_queries": 4}, extract_type="decoder")
    >>> ext.store_variables["decoder_output"]
    ('layer', 'query', 'hidden')
    >>> ext.store_ragged
    {}
    """

    def __init__(
        self,
        model: DETR,
        device: Any = "cpu",
        *,
        extract_type: str | Sequence[str] = "all",
        min_size: int = 800,
        max_size: int | None = 1333,
        autocast: str | None = None,
        storage_dtype: str = "float16",
        info: Mapping[str, Any] | None = None,
        encoder_attention_points: Any = None,
    ) -> None:
        import torch

        from .attention import parse_points

        if not isinstance(model, torch.nn.Module):
            raise ValidationError(
                f"model must be a torch.nn.Module (a DETR from build_detr), got {type(model).__name__}."
            )
        self.devices = resolve_devices(device)
        self.device = self.devices[0]
        self.model = model.to(self.device).eval()
        # DataParallel over several GPUs; the model itself otherwise
        self._runner = data_parallel(self.model, self.devices)
        self.config: DetrConfig | None = getattr(model, "config", None)
        self.output_names = resolve_variables(extract_type)
        self.encoder_attention_points = parse_points(encoder_attention_points)
        if self.encoder_attention_points and "encoder_attention" not in self.output_names:
            self.output_names = resolve_variables(list(self.output_names) + ["encoder_attention"])
        if "encoder_attention" in self.output_names and not self.encoder_attention_points:
            raise ValidationError(
                "encoder_attention needs encoder_attention_points, e.g. '0.5,0.5;0.25,0.75' "
                "(relative y,x positions of the feature grid)."
            )
        if set(ATTENTION_NAMES) & set(self.output_names) and len(self.devices) > 1:
            raise ValidationError(
                f"attention maps are captured with hooks on one model; got devices "
                f"{[str(d) for d in self.devices]}: pass one device (e.g. 'cuda:0')."
            )
        self.transform = DetrTransform(min_size, max_size)
        _autocast_dtype(autocast)
        self.autocast = autocast
        if np.dtype(storage_dtype).kind != "f":
            raise ValidationError(
                f"storage_dtype={storage_dtype!r} must be a float dtype ('float16' or 'float32')."
            )
        self.storage_dtype = np.dtype(storage_dtype).name
        self.info = dict(info or {})

    # ------------------------------------------------------------------ build
    @classmethod
    def from_checkpoint(
        cls,
        path_or_url: str | os.PathLike,
        device: Any = "cpu",
        *,
        extract_type: str | Sequence[str] = "all",
        min_size: int = 800,
        max_size: int | None = 1333,
        autocast: str | None = None,
        storage_dtype: str = "float16",
        weights_only: bool = True,
        encoder_attention_points: Any = None,
        **overrides: Any,
    ) -> DetrExtractor:
        """Load an official-format DETR checkpoint (strict).

        Parameters
        ----------
        path_or_url : str or path-like
            ``.pth`` file or URL (fetched into the torch hub cache).
        device : str or torch.device
            See :class:`DetrExtractor`.
        extract_type, min_size, max_size, autocast, storage_dtype
            See :class:`DetrExtractor`.
        weights_only : bool
            Safe unpickling (default); False only for trusted files.
        encoder_attention_points : str or sequence of (float, float), optional
            See :class:`DetrExtractor`.
        **overrides
            :class:`~extractors.detr.model.DetrConfig` fields that the state
            dict cannot tell (``nheads``, ``dilation``), winning over the
            checkpoint's ``args``.

        Returns
        -------
        DetrExtractor

        Raises
        ------
        CheckpointError
            Unreadable file, or keys/shapes not matching the inferred model
            (the message lists missing and unexpected keys with counts).
        DeviceUnavailableError
            ``device="cuda"`` without CUDA.
        """
        from .checkpoint import infer_config, load_state_dict_strict, read_checkpoint
        from .model import build_detr

        resolve_devices(device)  # fail before reading a large file
        state_dict, args, info = read_checkpoint(path_or_url, weights_only=weights_only)
        config = infer_config(state_dict, args, **overrides)
        model = build_detr(config)
        load_state_dict_strict(model, state_dict, source=os.fspath(path_or_url))
        logger.info("loaded DETR %s from %s", config, path_or_url)
        return cls(
            model,
            device,
            extract_type=extract_type,
            min_size=min_size,
            max_size=max_size,
            autocast=autocast,
            storage_dtype=storage_dtype,
            info=info,
            encoder_attention_points=encoder_attention_points,
        )

    @classmethod
    def from_config(
        cls,
        config: DetrConfig | Mapping[str, Any],
        device: Any = "cpu",
        *,
        state_dict: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> DetrExtractor:
        """Build from an architecture, with random weights or a given state dict.

        Parameters
        ----------
        config : DetrConfig or mapping
            Architecture (e.g. an entry of ``tests/data/detr/configs.json``).
        device : str or torch.device
            See :class:`DetrExtractor`.
        state_dict : mapping, optional
            Weights loaded strictly; random initialisation when omitted.
        **kwargs
            Other :class:`DetrExtractor` arguments.

        Returns
        -------
        DetrExtractor
        """
        from .checkpoint import load_state_dict_strict
        from .model import build_detr

        resolve_devices(device)
        model = build_detr(config)
        if state_dict is not None:
            load_state_dict_strict(model, state_dict, source="state_dict")
        return cls(model, device, **kwargs)

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load weights strictly into the model (raises CheckpointError on mismatch)."""
        from .checkpoint import load_state_dict_strict

        load_state_dict_strict(
            self.model, {k: v.to(self.device) for k, v in state_dict.items()}, source="state_dict"
        )

    def __repr__(self) -> str:
        cfg = self.config.backbone if self.config is not None else type(self.model).__name__
        return (
            f"DetrExtractor({cfg}, devices={[str(d) for d in self.devices]}, "
            f"variables={list(self.output_names)}, {self.transform!r})"
        )

    # ---------------------------------------------------------- store schema
    @property
    def store_variables(self) -> dict[str, tuple[str, ...]]:
        """Dense variables of the selected outputs -> dims, for ``Store.create(variables=)``."""
        return {n: VARIABLE_DIMS[n] for n in self.output_names if n in VARIABLE_DIMS}

    @property
    def store_ragged(self) -> dict[str, tuple[str, ...]]:
        """Ragged variables of the selected outputs -> dims, for ``Store.create(ragged=)``."""
        return {n: RAGGED_DIMS[n] for n in self.output_names if n in RAGGED_DIMS}

    @property
    def store_dtypes(self) -> dict[str, str]:
        """Storage dtypes: ``storage_dtype`` for hidden states, float32 for logits/boxes."""
        return {
            n: ("float32" if ("logits" in n or "boxes" in n) else self.storage_dtype)
            for n in self.output_names
        }

    # names of ARCHITECTURE.md's extraction contract
    variables = store_variables
    ragged = store_ragged
    dtypes = store_dtypes

    @property
    def store_attrs(self) -> dict[str, Any]:
        """Provenance for the store's attributes (JSON-serialisable)."""
        attrs: dict[str, Any] = {
            "model": "detr",
            "model_config": self.config.to_dict() if self.config is not None else None,
            "preprocessing": {
                "min_size": self.transform.min_size,
                "max_size": self.transform.max_size,
                "resize": "PIL bilinear, shortest side min_size, longest <= max_size",
                "mean": list(IMAGENET_MEAN),
                "std": list(IMAGENET_STD),
                "padding": "zeros bottom/right to batch max",
            },
            "extract_variables": list(self.output_names),
            "extract_type": extract_type_name(self.output_names),
            "default_variable": "query_embeddings"
            if "query_embeddings" in self.output_names
            else None,
            "autocast": self.autocast,
        }
        if self.encoder_attention_points:
            attrs["encoder_attention_points"] = [list(p) for p in self.encoder_attention_points]
        attrs.update(self.info)
        return attrs

    @staticmethod
    def ragged_hw(outputs: Mapping[str, Any]) -> dict[str, list[tuple[int, int]]]:
        """``{"encoder_output": [(h, w), ...]}`` for ``Store.append(ragged_hw=)``.

        Also for the attention variables (stored as ``h * w`` tokens).
        """
        hw = [(int(h), int(w)) for h, w in np.asarray(outputs.get("feature_hw", np.zeros((0, 2))))]
        return {n: hw for n in ("encoder_output",) + ATTENTION_NAMES if n in outputs}

    # ------------------------------------------------------------ compute
    def preprocess(
        self, images: Sequence[Any], min_size: int | None = None, max_size: int | None = None
    ):
        """Official eval transform + padding: ``(pixel_values, pixel_mask, input_hw)``.

        ``min_size``/``max_size`` of None use the extractor's settings (see
        :class:`DetrExtractor`; build the extractor with ``max_size=None`` for
        no bound on the longest side).
        """
        if isinstance(images, np.ndarray) and images.ndim == 3:
            raise ValidationError(
                f"got one array of shape {images.shape}; pass a list of images, e.g. [image]."
            )
        images = list(images)
        if not images:
            raise ValidationError("no images given; pass a non-empty list of images.")
        transform = DetrTransform(
            self.transform.min_size if min_size is None else min_size,
            self.transform.max_size if max_size is None else max_size,
        )
        return pad_batch([transform(img) for img in images])

    collate = staticmethod(pad_batch)

    def _stage(self, names: Sequence[str]) -> str:
        if _DECODER_NAMES.intersection(names) or "decoder_attention" in names:
            return "decoder"
        return "encoder" if {"encoder_output", "encoder_attention"} & set(names) else "backbone"

    def forward_batch(
        self,
        pixel_values: Any,
        pixel_mask: Any,
        variables: str | Sequence[str] | None = None,
        autocast: str | bool | None = False,
    ) -> dict[str, Any]:
        """Run the model on a padded batch; tensors stay on the device.

        Parameters
        ----------
        pixel_values : torch.Tensor
            ``[B, 3, H, W]`` from :meth:`preprocess` / :func:`pad_batch`.
        pixel_mask : torch.Tensor
            ``[B, H, W]`` bool, True on padding.
        variables : str or list of str, optional
            Names or extract type; defaults to the extractor's.
        autocast : {None, "fp16", "bf16"} or False
            False uses the extractor's default.

        Returns
        -------
        dict
            Padded outputs of :meth:`DETR.forward` restricted to what was
            asked, plus ``feature_mask`` ``[B, h, w]`` and ``feature_hw``
            ``[B, 2]``; ``query_embeddings`` is ``decoder_output[:, -1]``.
        """
        import torch

        names = self.output_names if variables is None else resolve_variables(variables)
        dtype = _autocast_dtype(self.autocast if autocast is False else autocast)
        ctx = (
            torch.autocast(device_type=self.device.type, dtype=dtype)
            if dtype is not None
            else contextlib.nullcontext()
        )
        pixel_values = pixel_values.to(self.device, non_blocking=True)
        pixel_mask = pixel_mask.to(self.device, non_blocking=True)
        attention: Any = contextlib.nullcontext({})
        if set(ATTENTION_NAMES) & set(names):
            from .attention import attention_hooks

            points = self.encoder_attention_points if "encoder_attention" in names else ()
            attention = attention_hooks(self.model, "decoder_attention" in names, points)
        with torch.inference_mode(), ctx, attention as maps:
            raw = self._runner(pixel_values, pixel_mask, stage=self._stage(names))
        raw = dict(raw, **maps)
        fmask = raw["feature_mask"]
        out: dict[str, Any] = {"feature_mask": fmask}
        out["feature_hw"] = torch.stack([(~fmask[:, :, 0]).sum(1), (~fmask[:, 0, :]).sum(1)], dim=1)
        for name in names:
            if name == "query_embeddings":
                out[name] = raw["decoder_output"][:, -1]
            else:
                out[name] = raw[name]
        return out

    def postprocess(self, outputs: Mapping[str, Any], input_hw: Any = None) -> dict[str, Any]:
        """Copy to host as float32 numpy and crop ragged outputs per image.

        Parameters
        ----------
        outputs : dict
            From :meth:`forward_batch`.
        input_hw : array-like, optional
            ``[B, 2]`` resized image sizes (added as ``input_hw``).

        Returns
        -------
        dict
            Dense outputs as arrays with a batch axis, ``encoder_output`` as a
            list of ``[h*w, D]``, ``backbone_features`` as a list of
            ``[C, h, w]`` and the attention maps as lists of ``[L, Q, h, w]``
            / ``[E, P, h, w]`` arrays (unpadded cells only), ``feature_hw`` and
            ``input_hw`` as ``[B, 2]`` int64.
        """
        hw = outputs["feature_hw"].cpu().numpy().astype(np.int64)
        result: dict[str, Any] = {}
        for name, value in outputs.items():
            if name in ("feature_mask", "feature_hw"):
                continue
            arr = value.float().cpu().numpy()
            if name == "encoder_output":
                result[name] = [
                    np.ascontiguousarray(arr[b, :, :h, :w].reshape(arr.shape[1], -1).T)
                    for b, (h, w) in enumerate(hw)
                ]
            elif name == "backbone_features":
                result[name] = [
                    np.ascontiguousarray(arr[b, :, :h, :w]) for b, (h, w) in enumerate(hw)
                ]
            elif name in ATTENTION_NAMES:
                result[name] = [
                    np.ascontiguousarray(arr[b, :, :, :h, :w]) for b, (h, w) in enumerate(hw)
                ]
            else:
                result[name] = arr
        result["feature_hw"] = hw
        if input_hw is not None:
            result["input_hw"] = np.asarray(input_hw, dtype=np.int64)
        return result

    def extract_batch(
        self,
        pixel_values: Any,
        pixel_mask: Any,
        input_hw: Any = None,
        variables: str | Sequence[str] | None = None,
        autocast: str | bool | None = False,
    ) -> dict[str, Any]:
        """:meth:`forward_batch` then :meth:`postprocess` (numpy results)."""
        raw = self.forward_batch(pixel_values, pixel_mask, variables=variables, autocast=autocast)
        return self.postprocess(raw, input_hw)

    def pipeline_extractor(self) -> Any:
        """This extractor in the pipeline protocol (:mod:`extractors.protocol`).

        Returns
        -------
        extractors.detr.adapter.DetrPipelineExtractor
            What :func:`extractors.pipeline.run_extraction` and the Dask
            region tasks drive.
        """
        from .adapter import DetrPipelineExtractor

        return DetrPipelineExtractor(self)

    def extract_images(
        self,
        images: Sequence[Any],
        min_size: int | None = None,
        max_size: int | None = None,
        variables: str | Sequence[str] | None = None,
        autocast: str | bool | None = False,
    ) -> dict[str, Any]:
        """Preprocess images as one padded batch and extract numpy outputs.

        Parameters
        ----------
        images : sequence of PIL.Image.Image or uint8 numpy.ndarray
            RGB (other PIL modes and gray/RGBA arrays are converted).
        min_size, max_size : int, optional
            Resize sizes; None uses the extractor's (800 / 1333 unless set
            when it was built).
        variables : str or list of str, optional
            Extract type or names; defaults to the extractor's.
        autocast : {None, "fp16", "bf16"} or False
            Mixed precision for this call; False (default) uses the extractor's
            setting, None forces float32.

        Returns
        -------
        dict
            See the module docstring; always with ``feature_hw`` and ``input_hw``.

        Examples
        --------
        >>> import numpy as np
        >>> ext = DetrExtractor.from_config({"backbone": "resnet18", "hidden_dim": 32,
        ...     "nheads": 4, "enc_layers": 1, "dec_layers": 1, "dim_feedforward": 32,
        ...     "num_queries": 4})
        >>> out = ext.extract_images([np.zeros((64, 96, 3), np.uint8)], min_size=64,
        ...                          variables=["backbone_features"])
        >>> sorted(out), out["backbone_features"][0].shape
        (['backbone_features', 'feature_hw', 'input_hw'], (512, 2, 3))
        """
        pixels, mask, input_hw = self.preprocess(images, min_size, max_size)
        return self.extract_batch(pixels, mask, input_hw, variables=variables, autocast=autocast)
