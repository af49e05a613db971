"""DETR (DEtection TRansformer) with the official parameter names.

A re-implementation of the inference path of facebookresearch/detr
(``models/detr.py``, ``transformer.py``, ``backbone.py``,
``position_encoding.py``) whose ``state_dict`` has exactly the official names
and shapes, so that the released checkpoints (``detr-r50-e632da11.pth`` ...)
load with ``strict=True`` and give the same numbers:

* backbone: a torchvision ResNet (18/34/50/101/152) with frozen batch norm
  (buffers ``weight``, ``bias``, ``running_mean``, ``running_var``; eps 1e-5),
  the last stage's output only (``backbone.0.body.*``), optional dilation in the
  last stage (the "DC5" models);
* sine position encoding (``normalize=True``, scale ``2*pi``, temperature
  10000) computed from the padding mask, or the learned variant;
* a post-norm transformer (pre-norm when the checkpoint has it) whose position
  embeddings are added to queries and keys in every attention layer; the
  decoder returns every layer's output after the decoder's final LayerNorm;
* heads: ``class_embed`` (linear, ``num_classes + 1`` logits) and
  ``bbox_embed`` (3-layer MLP, sigmoid, boxes ``(cx, cy, w, h)``).

Only inference is implemented (no dropout at eval time, no losses). The
forward pass can stop early: backbone only, or backbone + encoder, so that
extracting only backbone features never runs the transformer.

Examples
--------
>>> from extractors.detr.model import DetrConfig, build_detr
>>> cfg = DetrConfig(backbone="resnet18", hidden_dim=32, nheads=4, enc_layers=1,
...                  dec_layers=2, dim_feedforward=64, num_queries=5)
>>> model = build_detr(cfg).eval()
>>> sorted(model.state_dict())[0]
'backbone.0.body.bn1.bias'
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops.misc import FrozenBatchNorm2d

from embstore.errors import ValidationError

__all__ = [
    "BACKBONE_CHANNELS",
    "DETR",
    "MLP",
    "Backbone",
    "DetrConfig",
    "Joiner",
    "PositionEmbeddingLearned",
    "PositionEmbeddingSine",
    "Transformer",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "build_detr",
    "downsample_mask",
]

#: Output channels of the last stage of each supported ResNet.
BACKBONE_CHANNELS: dict[str, int] = {
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet101": 2048,
    "resnet152": 2048,
}


@dataclasses.dataclass(frozen=True)
class DetrConfig:
    """Architecture of a DETR model (the official training ``args`` that matter).

    Parameters
    ----------
    backbone : str
        ``"resnet18"``, ``"resnet34"``, ``"resnet50"``, ``"resnet101"`` or
        ``"resnet152"``.
    dilation : bool
        Replace the stride of the last ResNet stage by dilation ("DC5").
    hidden_dim : int
        Transformer width ``D``.
    nheads : int
        Attention heads; must divide ``hidden_dim``.
    enc_layers, dec_layers : int
        Number of encoder and decoder layers.
    dim_feedforward : int
        Hidden size of the transformer feed-forward blocks.
    num_queries : int
        Number of object queries ``Q``.
    num_classes : int
        Number of classes; the classifier has ``num_classes + 1`` outputs (the
        last is "no object"). 91 for the COCO checkpoints.
    pre_norm : bool
        Pre-norm transformer layers (the official default is post-norm).
    position_embedding : str
        ``"sine"`` (official default) or ``"learned"``.

    Examples
    --------
    >>> cfg = DetrConfig.from_dict({"backbone": "resnet18", "hidden_dim": 64})
    >>> cfg.hidden_dim, cfg.num_channels
    (64, 512)
    """

    backbone: str = "resnet50"
    dilation: bool = False
    hidden_dim: int = 256
    nheads: int = 8
    enc_layers: int = 6
    dec_layers: int = 6
    dim_feedforward: int = 2048
    num_queries: int = 100
    num_classes: int = 91
    pre_norm: bool = False
    position_embedding: str = "sine"

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONE_CHANNELS:
            raise ValidationError(
                f"backbone={self.backbone!r} is not supported; use one of "
                f"{sorted(BACKBONE_CHANNELS)}."
            )
        for name in (
            "hidden_dim",
            "nheads",
            "enc_layers",
            "dec_layers",
            "dim_feedforward",
            "num_queries",
            "num_classes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValidationError(f"{name}={value!r} must be a non-negative integer.")
        if self.nheads < 1 or self.hidden_dim % self.nheads:
            raise ValidationError(
                f"nheads={self.nheads} must be >= 1 and divide hidden_dim="
                f"{self.hidden_dim}; pass nheads=... matching the checkpoint "
                "(the official models use 8)."
            )
        if self.hidden_dim % 2:
            raise ValidationError(
                f"hidden_dim={self.hidden_dim} must be even (the position "
                "encoding uses hidden_dim // 2 features per axis)."
            )
        if self.dilation and self.num_channels == 512:
            raise ValidationError(
                f"dilation=True (DC5) needs a bottleneck ResNet (resnet50/101/152); "
                f"{self.backbone} has basic blocks, which torchvision cannot dilate. "
                "Pass dilation=False."
            )
        if self.dec_layers < 1:
            raise ValidationError(f"dec_layers={self.dec_layers} must be >= 1.")
        if self.position_embedding not in ("sine", "learned"):
            raise ValidationError(
                f"position_embedding={self.position_embedding!r} is not supported; "
                "use 'sine' or 'learned'."
            )

    @property
    def num_channels(self) -> int:
        """Channels of the backbone output (512 or 2048)."""
        return BACKBONE_CHANNELS[self.backbone]

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as a plain (JSON-serialisable) dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DetrConfig:
        """Build a configuration from a mapping; unknown keys are an error.

        Parameters
        ----------
        values : mapping
            Field name -> value (missing fields keep their defaults).

        Returns
        -------
        DetrConfig
        """
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ValidationError(
                f"unknown DETR configuration keys {unknown}; valid keys are {sorted(fields)}."
            )
        return cls(**dict(values))


# ---------------------------------------------------------------------------
# Backbone
# ---------------------------------------------------------------------------


def downsample_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """Downsample a padding mask to a feature grid as DETR does.

    Parameters
    ----------
    mask : torch.Tensor
        ``[B, H, W]`` bool, True on padding.
    size : tuple of int
        ``(h, w)`` of the feature map.

    Returns
    -------
    torch.Tensor
        ``[B, h, w]`` bool (nearest-neighbour interpolation of the float mask).

    Examples
    --------
    >>> import torch
    >>> m = torch.zeros(1, 64, 64, dtype=torch.bool); m[:, 32:] = True
    >>> downsample_mask(m, (2, 2))[0, :, 0].tolist()
    [False, True]
    """
    return F.interpolate(mask[None].float(), size=size).to(torch.bool)[0]


class Backbone(nn.Module):
    """ResNet body with frozen batch norm returning the last stage's features.

    The child is named ``body`` so parameters are ``body.layer1.0.conv1.weight``
    etc., as in DETR's ``BackboneBase``.

    Parameters
    ----------
    name : str
        torchvision ResNet constructor name.
    dilation : bool
        Dilate (instead of stride) the last stage.
    """

    def __init__(self, name: str, dilation: bool = False) -> None:
        super().__init__()
        import torchvision
        from torchvision.models._utils import IntermediateLayerGetter

        if name not in BACKBONE_CHANNELS:
            raise ValidationError(
                f"backbone={name!r} is not supported; use one of {sorted(BACKBONE_CHANNELS)}."
            )
        resnet = getattr(torchvision.models, name)(
            weights=None,
            replace_stride_with_dilation=[False, False, bool(dilation)],
            norm_layer=FrozenBatchNorm2d,
        )
        self.body = IntermediateLayerGetter(resnet, return_layers={"layer4": "0"})
        self.num_channels = BACKBONE_CHANNELS[name]
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        """Return the ``[B, C, H/32, W/32]`` features (``H/16`` with dilation)."""
        return self.body(x)["0"]


class PositionEmbeddingSine(nn.Module):
    """Sine position encoding of DETR (normalised cumulative coordinates).

    Parameters
    ----------
    num_pos_feats : int
        Features per axis (``hidden_dim // 2``).
    temperature : float
        Frequency base.
    normalize : bool
        Normalise coordinates to ``[0, scale]`` per image (unpadded region).
    scale : float, optional
        Defaults to ``2 * pi``.
    """

    def __init__(
        self,
        num_pos_feats: int = 64,
        temperature: float = 10000,
        normalize: bool = False,
        scale: float | None = None,
    ) -> None:
        super().__init__()
        if scale is not None and not normalize:
            raise ValidationError("scale was given but normalize=False; pass normalize=True.")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Return ``[B, 2 * num_pos_feats, h, w]`` for features ``x`` and mask ``[B, h, w]``."""
        not_mask = ~mask
        y_embed = not_mask.cumsum(1, dtype=torch.float32)
        x_embed = not_mask.cumsum(2, dtype=torch.float32)
        if self.normalize:
            eps = 1e-6
            y_embed = y_embed / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = x_embed / (x_embed[:, :, -1:] + eps) * self.scale
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        dim_t = self.temperature ** (2 * (dim_t // 2) / self.num_pos_feats)
        pos_x = x_embed[:, :, :, None] / dim_t
        pos_y = y_embed[:, :, :, None] / dim_t
        pos_x = torch.stack(
            (pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4
        ).flatten(3)
        pos_y = torch.stack(
            (pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4
        ).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


class PositionEmbeddingLearned(nn.Module):
    """Learned absolute position embedding (DETR's ``position_embedding=learned``).

    Parameters
    ----------
    num_pos_feats : int
        Features per axis (``hidden_dim // 2``).
    """

    def __init__(self, num_pos_feats: int = 256) -> None:
        super().__init__()
        self.row_embed = nn.Embedding(50, num_pos_feats)
        self.col_embed = nn.Embedding(50, num_pos_feats)
        nn.init.uniform_(self.row_embed.weight)
        nn.init.uniform_(self.col_embed.weight)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Return ``[B, 2 * num_pos_feats, h, w]`` (the mask is not used)."""
        h, w = x.shape[-2:]
        i = torch.arange(w, device=x.device)
        j = torch.arange(h, device=x.device)
        x_emb = self.col_embed(i)
        y_emb = self.row_embed(j)
        pos = (
            torch.cat(
                [
                    x_emb.unsqueeze(0).repeat(h, 1, 1),
                    y_emb.unsqueeze(1).repeat(1, w, 1),
                ],
                dim=-1,
            )
            .permute(2, 0, 1)
            .unsqueeze(0)
            .repeat(x.shape[0], 1, 1, 1)
        )
        return pos


class Joiner(nn.Sequential):
    """``backbone.0`` = :class:`Backbone`, ``backbone.1`` = position encoding.

    Returns the features, their padding mask and position embeddings.
    """

    def __init__(self, backbone: Backbone, position_embedding: nn.Module) -> None:
        super().__init__(backbone, position_embedding)
        self.num_channels = backbone.num_channels

    def forward(  # type: ignore[override]  # takes the padding mask too, unlike Sequential
        self,
        x: Tensor,
        mask: Tensor,
        with_pos: bool = True,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Run the backbone on ``x`` ``[B, 3, H, W]`` with padding mask ``[B, H, W]``."""
        features = self[0](x)
        fmask = downsample_mask(mask, tuple(features.shape[-2:]))
        pos = self[1](features, fmask).to(features.dtype) if with_pos else None
        return features, fmask, pos


# ---------------------------------------------------------------------------
# Transformer
# ---------------------------------------------------------------------------


def _with_pos(tensor: Tensor, pos: Tensor | None) -> Tensor:
    return tensor if pos is None else tensor + pos


class TransformerEncoderLayer(nn.Module):
    """DETR encoder layer: self-attention (pos added to q, k) + feed-forward.

    Parameters
    ----------
    d_model, nhead, dim_feedforward : int
        Width, heads and feed-forward size.
    normalize_before : bool
        Pre-norm instead of post-norm.
    """

    def __init__(
        self, d_model: int, nhead: int, dim_feedforward: int = 2048, normalize_before: bool = False
    ) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=0.0)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.normalize_before = normalize_before

    def forward(
        self, src: Tensor, key_padding_mask: Tensor | None = None, pos: Tensor | None = None
    ) -> Tensor:
        """``src`` and ``pos`` are ``[HW, B, D]``; mask ``[B, HW]`` (True = padding)."""
        if self.normalize_before:
            src2 = self.norm1(src)
            q = k = _with_pos(src2, pos)
            src = (
                src
                + self.self_attn(
                    q, k, value=src2, key_padding_mask=key_padding_mask, need_weights=False
                )[0]
            )
            src2 = self.norm2(src)
            return src + self.linear2(F.relu(self.linear1(src2)))
        q = k = _with_pos(src, pos)
        src2 = self.self_attn(
            q, k, value=src, key_padding_mask=key_padding_mask, need_weights=False
        )[0]
        src = self.norm1(src + src2)
        src2 = self.linear2(F.relu(self.linear1(src)))
        return self.norm2(src + src2)


class TransformerDecoderLayer(nn.Module):
    """DETR decoder layer: self-attention, cross-attention, feed-forward.

    Parameters
    ----------
    d_model, nhead, dim_feedforward : int
        Width, heads and feed-forward size.
    normalize_before : bool
        Pre-norm instead of post-norm.
    """

    def __init__(
        self, d_model: int, nhead: int, dim_feedforward: int = 2048, normalize_before: bool = False
    ) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=0.0)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=0.0)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.normalize_before = normalize_before

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        memory_key_padding_mask: Tensor | None = None,
        pos: Tensor | None = None,
        query_pos: Tensor | None = None,
    ) -> Tensor:
        """``tgt``/``query_pos`` ``[Q, B, D]``; ``memory``/``pos`` ``[HW, B, D]``."""
        if self.normalize_before:
            tgt2 = self.norm1(tgt)
            q = k = _with_pos(tgt2, query_pos)
            tgt = tgt + self.self_attn(q, k, value=tgt2, need_weights=False)[0]
            tgt2 = self.norm2(tgt)
            tgt = (
                tgt
                + self.multihead_attn(
                    query=_with_pos(tgt2, query_pos),
                    key=_with_pos(memory, pos),
                    value=memory,
                    key_padding_mask=memory_key_padding_mask,
                    need_weights=False,
                )[0]
            )
            tgt2 = self.norm3(tgt)
            return tgt + self.linear2(F.relu(self.linear1(tgt2)))
        q = k = _with_pos(tgt, query_pos)
        tgt2 = self.self_attn(q, k, value=tgt, need_weights=False)[0]
        tgt = self.norm1(tgt + tgt2)
        tgt2 = self.multihead_attn(
            query=_with_pos(tgt, query_pos),
            key=_with_pos(memory, pos),
            value=memory,
            key_padding_mask=memory_key_padding_mask,
            need_weights=False,
        )[0]
        tgt = self.norm2(tgt + tgt2)
        tgt2 = self.linear2(F.relu(self.linear1(tgt)))
        return self.norm3(tgt + tgt2)


def _clones(module: nn.Module, n: int) -> nn.ModuleList:
    return nn.ModuleList([copy.deepcopy(module) for _ in range(n)])


class TransformerEncoder(nn.Module):
    """A stack of encoder layers (``norm`` only for pre-norm models)."""

    def __init__(
        self, layer: TransformerEncoderLayer, num_layers: int, norm: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.layers = _clones(layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(
        self, src: Tensor, key_padding_mask: Tensor | None = None, pos: Tensor | None = None
    ) -> Tensor:
        """Return the memory ``[HW, B, D]``."""
        out = src
        for layer in self.layers:
            out = layer(out, key_padding_mask=key_padding_mask, pos=pos)
        if self.norm is not None:
            out = self.norm(out)
        return out


class TransformerDecoder(nn.Module):
    """A stack of decoder layers returning every layer's normed output."""

    def __init__(self, layer: TransformerDecoderLayer, num_layers: int, norm: nn.Module) -> None:
        super().__init__()
        self.layers = _clones(layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        memory_key_padding_mask: Tensor | None = None,
        pos: Tensor | None = None,
        query_pos: Tensor | None = None,
    ) -> Tensor:
        """Return ``[L, Q, B, D]``: the final norm applied to every layer's output."""
        out = tgt
        intermediate = []
        for layer in self.layers:
            out = layer(
                out,
                memory,
                memory_key_padding_mask=memory_key_padding_mask,
                pos=pos,
                query_pos=query_pos,
            )
            intermediate.append(self.norm(out))
        return torch.stack(intermediate)


class Transformer(nn.Module):
    """DETR's encoder-decoder transformer.

    Parameters
    ----------
    d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward : int
        Architecture.
    normalize_before : bool
        Pre-norm layers (adds ``encoder.norm``).
    """

    def __init__(
        self,
        d_model: int = 256,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 2048,
        normalize_before: bool = False,
    ) -> None:
        super().__init__()
        enc_layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward, normalize_before)
        self.encoder = TransformerEncoder(
            enc_layer, num_encoder_layers, nn.LayerNorm(d_model) if normalize_before else None
        )
        dec_layer = TransformerDecoderLayer(d_model, nhead, dim_feedforward, normalize_before)
        self.decoder = TransformerDecoder(dec_layer, num_decoder_layers, nn.LayerNorm(d_model))
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.d_model = d_model
        self.nhead = nhead

    def encode(self, src: Tensor, mask: Tensor, pos_embed: Tensor) -> Tensor:
        """Encoder only: ``src``/``pos_embed`` ``[B, D, h, w]``, mask ``[B, h, w]`` -> ``[HW, B, D]``."""
        src = src.flatten(2).permute(2, 0, 1)
        pos = pos_embed.flatten(2).permute(2, 0, 1)
        return self.encoder(src, key_padding_mask=mask.flatten(1), pos=pos)

    def decode(
        self, memory: Tensor, mask: Tensor, query_embed: Tensor, pos_embed: Tensor
    ) -> Tensor:
        """Decoder only: returns ``[L, B, Q, D]``."""
        bs = memory.shape[1]
        pos = pos_embed.flatten(2).permute(2, 0, 1)
        query_pos = query_embed.unsqueeze(1).repeat(1, bs, 1)
        tgt = torch.zeros_like(query_pos)
        hs = self.decoder(
            tgt, memory, memory_key_padding_mask=mask.flatten(1), pos=pos, query_pos=query_pos
        )
        return hs.transpose(1, 2)

    def forward(
        self, src: Tensor, mask: Tensor, query_embed: Tensor, pos_embed: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Return ``(hs [L, B, Q, D], memory [B, D, h, w])`` as the official code."""
        bs, c, h, w = src.shape
        memory = self.encode(src, mask, pos_embed)
        hs = self.decode(memory, mask, query_embed, pos_embed)
        return hs, memory.permute(1, 2, 0).reshape(bs, c, h, w)


class MLP(nn.Module):
    """Simple multi-layer perceptron (the box head), ReLU between layers.

    Parameters
    ----------
    input_dim, hidden_dim, output_dim, num_layers : int
        Sizes.
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        self.num_layers = num_layers
        h = [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(
            nn.Linear(n, k) for n, k in zip([input_dim] + h, h + [output_dim])
        )

    def forward(self, x: Tensor) -> Tensor:
        """Apply the layers."""
        for i, layer in enumerate(self.layers):
            x = F.relu(layer(x)) if i < self.num_layers - 1 else layer(x)
        return x


#: Names of the outputs of :meth:`DETR.forward` by the stage that produces them.
BACKBONE_OUTPUTS = ("backbone_features", "feature_mask")
ENCODER_OUTPUTS = ("encoder_output",)
DECODER_OUTPUTS = ("decoder_output", "pred_logits", "pred_boxes")


class DETR(nn.Module):
    """The DETR detector (inference), official parameter names.

    Parameters
    ----------
    config : DetrConfig
        Architecture.

    Notes
    -----
    :meth:`forward` returns padded tensors only (so that
    ``torch.nn.DataParallel`` can gather them); cropping to each image's
    unpadded region is done by :class:`extractors.detr.DetrExtractor`.
    """

    def __init__(self, config: DetrConfig) -> None:
        super().__init__()
        self.config = config
        d = config.hidden_dim
        if config.position_embedding == "sine":
            pos_embed: nn.Module = PositionEmbeddingSine(d // 2, normalize=True)
        else:
            pos_embed = PositionEmbeddingLearned(d // 2)
        # registration order as in the official code, so state_dict() order matches too
        self.num_queries = config.num_queries
        self.transformer = Transformer(
            d_model=d,
            nhead=config.nheads,
            num_encoder_layers=config.enc_layers,
            num_decoder_layers=config.dec_layers,
            dim_feedforward=config.dim_feedforward,
            normalize_before=config.pre_norm,
        )
        self.class_embed = nn.Linear(d, config.num_classes + 1)
        self.bbox_embed = MLP(d, d, 4, 3)
        self.query_embed = nn.Embedding(config.num_queries, d)
        self.input_proj = nn.Conv2d(config.num_channels, d, kernel_size=1)
        self.backbone = Joiner(Backbone(config.backbone, config.dilation), pos_embed)

    def forward(
        self, pixel_values: Tensor, pixel_mask: Tensor, stage: str = "decoder"
    ) -> dict[str, Tensor]:
        """Run the model up to ``stage``.

        Parameters
        ----------
        pixel_values : torch.Tensor
            ``[B, 3, H, W]`` normalised, zero-padded images.
        pixel_mask : torch.Tensor
            ``[B, H, W]`` bool, True on padding.
        stage : {"backbone", "encoder", "decoder"}
            Last stage to run.

        Returns
        -------
        dict of str to torch.Tensor
            ``backbone_features`` ``[B, C, h, w]`` and ``feature_mask``
            ``[B, h, w]`` always; ``encoder_output`` ``[B, D, h, w]`` from the
            encoder stage on; ``decoder_output`` ``[B, L, Q, D]``,
            ``pred_logits`` ``[B, Q, num_classes + 1]`` and ``pred_boxes``
            ``[B, Q, 4]`` for the decoder stage.
        """
        if stage not in ("backbone", "encoder", "decoder"):
            raise ValidationError(
                f"stage={stage!r} is not valid; use 'backbone', 'encoder' or 'decoder'."
            )
        feats, fmask, pos = self.backbone(pixel_values, pixel_mask, with_pos=stage != "backbone")
        out: dict[str, Tensor] = {"backbone_features": feats, "feature_mask": fmask}
        if stage == "backbone":
            return out
        src = self.input_proj(feats)
        bs, c, h, w = src.shape
        memory = self.transformer.encode(src, fmask, pos)
        out["encoder_output"] = memory.permute(1, 2, 0).reshape(bs, c, h, w)
        if stage == "encoder":
            return out
        hs = self.transformer.decode(memory, fmask, self.query_embed.weight, pos)
        out["decoder_output"] = hs.transpose(0, 1)
        out["pred_logits"] = self.class_embed(hs[-1])
        out["pred_boxes"] = self.bbox_embed(hs[-1]).sigmoid()
        return out


def build_detr(config: DetrConfig | Mapping[str, Any]) -> DETR:
    """Build a randomly initialised :class:`DETR` in eval mode.

    Parameters
    ----------
    config : DetrConfig or mapping
        Architecture (a mapping is passed to :meth:`DetrConfig.from_dict`).

    Returns
    -------
    DETR

    Examples
    --------
    >>> m = build_detr({"backbone": "resnet18", "hidden_dim": 32, "nheads": 4,
    ...                 "enc_layers": 1, "dec_layers": 1, "dim_feedforward": 32,
    ...                 "num_queries": 3})
    >>> m.query_embed.weight.shape
    torch.Size([3, 32])
    """
    if not isinstance(config, DetrConfig):
        config = DetrConfig.from_dict(config)
    return DETR(config).eval()
