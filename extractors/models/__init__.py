"""Any model, any layer: torchvision, timm, open_clip and Hugging Face models.

Modules
-------
sources
    Model specs (``torchvision:resnet50``, ``timm:...``, ``open_clip:...``,
    ``hf:DIR``), local weights, each library's own preprocessing, provenance.
extractor
    :class:`ModelExtractor` (hooked layers -> store variables) and
    :func:`layer_table` (module names with output shapes).
run
    :func:`extract_model`, the Python entry of ``embstore extract model``.
"""

from .extractor import ModelExtractor, layer_table
from .sources import LoadedModel, load_model, parse_spec

__all__ = ["LoadedModel", "ModelExtractor", "layer_table", "load_model", "parse_spec"]
