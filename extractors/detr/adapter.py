"""DetrPipelineExtractor: :class:`~extractors.detr.DetrExtractor` in the extractor protocol.

:meth:`extractors.detr.DetrExtractor.pipeline_extractor` returns it, so
:func:`extractors.pipeline.run_extraction` (and the Dask region tasks) run
DETR without knowing it.

Examples
--------
>>> from extractors.detr import DetrExtractor
>>> from extractors.protocol import Extractor
>>> detr = DetrExtractor.from_config({"backbone": "resnet18", "hidden_dim": 32, "nheads": 4,
...     "enc_layers": 1, "dec_layers": 1, "dim_feedforward": 32, "num_queries": 4},
...     extract_type="all", min_size=64, max_size=96)
>>> ex = detr.pipeline_extractor()
>>> isinstance(ex, Extractor), sorted(ex.ragged)
(True, ['backbone_features', 'encoder_output'])
>>> import numpy as np
>>> from PIL import Image
>>> batch = ex.collate([ex.preprocess(Image.new("RGB", (96, 64)))])
>>> out = ex.finish_batch(ex.extract_batch(batch))
>>> out.ragged_hw["encoder_output"], out.coords["input_height"].tolist()
([(2, 3)], [64])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..protocol import Batch

__all__ = ["DetrPipelineExtractor"]


class DetrPipelineExtractor:
    """Adapt :class:`extractors.detr.DetrExtractor` to the pipeline protocol.

    DataLoader workers run DETR's eval transform per image (``preprocess``)
    and pad the batch (``collate``); the compute thread runs the model
    (``extract_batch``, tensors stay on the device); the writer thread copies
    to host and crops the feature maps to each image's unpadded region
    (``finish_batch``), so none of that work delays the next forward pass.

    Parameters
    ----------
    detr : DetrExtractor
        The model wrapper.

    Attributes
    ----------
    variables, ragged, dtypes : dict
        ``detr.store_variables``, ``detr.store_ragged``, ``detr.store_dtypes``.
    """

    def __init__(self, detr: Any) -> None:
        from .preprocess import pad_batch

        self.detr = detr
        self.preprocess = detr.transform
        self.collate = pad_batch
        self.variables = dict(detr.store_variables)
        self.ragged = dict(detr.store_ragged)
        self.dtypes = dict(detr.store_dtypes)
        self.device = detr.device

    def provenance(self) -> dict[str, Any]:
        """The DETR model's store attributes (checkpoint, architecture, preprocessing).

        Returns
        -------
        dict
        """
        return dict(self.detr.store_attrs)

    def extract_batch(self, batch: Any) -> Batch:
        """Forward one padded batch ``(pixel_values, pixel_mask, input_hw)``.

        Parameters
        ----------
        batch : tuple
            From :func:`extractors.detr.preprocess.pad_batch`.

        Returns
        -------
        Batch
            Device tensors of :meth:`DetrExtractor.forward_batch`; the
            batch's ``input_hw`` (consumed by :meth:`finish_batch`) as the
            coordinate ``input_hw``.
        """
        pixel_values, pixel_mask, input_hw = batch
        raw = dict(self.detr.forward_batch(pixel_values, pixel_mask))
        return Batch(raw, coords={"input_hw": input_hw})

    def finish_batch(self, raw: Batch) -> Batch:
        """Host copy + per-image crops; ``input_height``/``input_width`` coordinates.

        Parameters
        ----------
        raw : Batch
            From :meth:`extract_batch`.

        Returns
        -------
        Batch
            Store variables (NumPy), coordinates and token grid sizes.
        """
        out = dict(self.detr.postprocess(dict(raw.data), raw.coords["input_hw"]))
        feature_hw = [(int(h), int(w)) for h, w in out.pop("feature_hw")]
        in_hw = out.pop("input_hw")
        ragged_hw: dict[str, list[tuple[int, int]]] = {}
        if "encoder_output" in out:
            ragged_hw["encoder_output"] = feature_hw
        for name in ("decoder_attention", "encoder_attention"):
            if name in out:
                # [L, Q, h, w] per image -> h*w tokens of (L, Q), the store's ragged layout
                out[name] = [
                    np.ascontiguousarray(a.reshape(a.shape[0], a.shape[1], -1).transpose(2, 0, 1))
                    for a in out[name]
                ]
                ragged_hw[name] = feature_hw
        coords = {"input_height": in_hw[:, 0], "input_width": in_hw[:, 1]}
        return Batch(out, coords=coords, ragged_hw=ragged_hw)
