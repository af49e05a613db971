"""ArcFace ``iresnet`` backbones with insightface ``arcface_torch`` names.

The module tree (and therefore every state-dict key and shape) matches
``insightface/recognition/arcface_torch/backbones/iresnet.py``, so a user's
trained checkpoint loads with ``strict=True``. Block counts:

======  ================
arch    blocks per stage
======  ================
r18     2, 2, 2, 2
r34     3, 4, 6, 3
r50     3, 4, 14, 3
r100    3, 13, 30, 3
r200    6, 26, 60, 6
======  ================

The input is a float tensor ``[B, 3, 112, 112]`` holding ``(x/255 - 0.5)/0.5``
of an RGB image; the output is ``[B, num_features]`` (after the final
``BatchNorm1d`` called ``features``). :meth:`IResNet.forward_features` also
returns the flattened ``bn2`` output (``512 * 7 * 7 = 25088`` values), the
input of ``fc``.

Examples
--------
>>> from extractors.face.iresnet import iresnet
>>> model = iresnet("r18").eval()
>>> sum(1 for _ in model.state_dict())
187
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from embstore._optional import attempt_import
from embstore.errors import ValidationError

if TYPE_CHECKING:
    import torch
    from torch import nn
else:
    torch = attempt_import("torch")
    nn = torch.nn

__all__ = ["ARCH_LAYERS", "IBasicBlock", "IResNet", "iresnet", "normalize_arch"]

#: Blocks per stage of each supported architecture.
ARCH_LAYERS: dict[str, tuple[int, int, int, int]] = {
    "r18": (2, 2, 2, 2),
    "r34": (3, 4, 6, 3),
    "r50": (3, 4, 14, 3),
    "r100": (3, 13, 30, 3),
    "r200": (6, 26, 60, 6),
}


def normalize_arch(arch: str) -> str:
    """Return the canonical short name (``"r50"``) of an architecture.

    Parameters
    ----------
    arch : str
        ``"r50"``, ``"iresnet50"``, ``"R50"``, ``"50"`` ...

    Returns
    -------
    str
        A key of :data:`ARCH_LAYERS`.

    Raises
    ------
    ValidationError
        If the name is not one of the supported architectures.

    Examples
    --------
    >>> normalize_arch("iresnet100")
    'r100'
    """
    key = str(arch).strip().lower()
    for prefix in ("iresnet", "resnet", "r"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
            break
    key = "r" + key
    if key not in ARCH_LAYERS:
        raise ValidationError(
            f"unknown iresnet architecture {arch!r}; use one of "
            f"{sorted(ARCH_LAYERS, key=lambda k: int(k[1:]))} (e.g. arch='r50')"
        )
    return key


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class IBasicBlock(nn.Module):
    """Pre-activation residual block ``bn1-conv1-bn2-prelu-conv2-bn3 (+ shortcut)``.

    Parameters
    ----------
    inplanes : int
        Input channels.
    planes : int
        Output channels.
    stride : int, default 1
        Stride of ``conv2``.
    downsample : torch.nn.Module, optional
        Shortcut projection (``conv1x1`` + ``BatchNorm2d``) when shapes change.
    """

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = _conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Parameters
        ----------
        x : torch.Tensor
            ``[B, inplanes, H, W]``.

        Returns
        -------
        torch.Tensor
            ``[B, planes, H/stride, W/stride]``.
        """
        identity = x
        out = self.bn1(x)
        out = self.conv1(out)
        out = self.bn2(out)
        out = self.prelu(out)
        out = self.conv2(out)
        out = self.bn3(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        return out + identity


class IResNet(nn.Module):
    """The ArcFace ``iresnet`` backbone (112x112 input, ``num_features`` output).

    Parameters
    ----------
    layers : sequence of 4 int
        Blocks per stage (see :data:`ARCH_LAYERS`).
    num_features : int, default 512
        Embedding size (``fc`` output and ``features`` BatchNorm1d size).
    dropout : float, default 0.0
        Dropout before ``fc`` (inactive in eval mode).

    Examples
    --------
    >>> import torch
    >>> model = IResNet((2, 2, 2, 2)).eval()
    >>> model(torch.zeros(1, 3, 112, 112)).shape
    torch.Size([1, 512])
    """

    fc_scale = 7 * 7

    def __init__(self, layers, num_features: int = 512, dropout: float = 0.0) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValidationError(f"layers must have 4 stage sizes, got {list(layers)!r}")
        self.num_features = int(num_features)
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes, eps=1e-05)
        self.prelu = nn.PReLU(self.inplanes)
        self.layer1 = self._make_layer(64, layers[0], stride=2)
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.bn2 = nn.BatchNorm2d(512 * IBasicBlock.expansion, eps=1e-05)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        self.fc = nn.Linear(512 * IBasicBlock.expansion * self.fc_scale, self.num_features)
        self.features = nn.BatchNorm1d(self.num_features, eps=1e-05)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * IBasicBlock.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * IBasicBlock.expansion, stride),
                nn.BatchNorm2d(planes * IBasicBlock.expansion, eps=1e-05),
            )
        layers = [IBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * IBasicBlock.expansion
        layers.extend(IBasicBlock(self.inplanes, planes) for _ in range(1, blocks))
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the embedding and the flattened ``bn2`` output.

        Parameters
        ----------
        x : torch.Tensor
            ``[B, 3, 112, 112]`` normalised input.

        Returns
        -------
        embedding : torch.Tensor
            ``[B, num_features]``.
        pre_fc : torch.Tensor
            ``[B, 25088]``, the input of ``fc``.
        """
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.prelu(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.bn2(x)
        pre_fc = torch.flatten(x, 1)
        x = self.dropout(pre_fc)
        x = self.fc(x.float())
        x = self.features(x)
        return x, pre_fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the ``[B, num_features]`` embedding of a normalised batch.

        Parameters
        ----------
        x : torch.Tensor
            ``[B, 3, 112, 112]``.

        Returns
        -------
        torch.Tensor
            ``[B, num_features]``.
        """
        return self.forward_features(x)[0]


def iresnet(arch: str = "r50", num_features: int = 512, dropout: float = 0.0) -> IResNet:
    """Build an iresnet by name (random weights).

    Parameters
    ----------
    arch : {"r18", "r34", "r50", "r100", "r200"}
        Architecture; ``"iresnet50"`` style names are accepted too.
    num_features : int, default 512
        Embedding size.
    dropout : float, default 0.0
        Dropout before ``fc``.

    Returns
    -------
    IResNet
        The model (training mode, as torch creates it).

    Examples
    --------
    >>> iresnet("iresnet34").num_features
    512
    """
    return IResNet(ARCH_LAYERS[normalize_arch(arch)], num_features=num_features, dropout=dropout)
