"""ResNet-50 trunk (torchvision v1.5 layout: the stride of a stage's first block sits on its 3x3 conv2).

Module names equal torchvision's ``resnet50()`` (``conv1``, ``bn1``, ``layer1.0.conv2``,
``layer2.0.downsample.0``, ...), so a torchvision checkpoint loads key for key; its ``fc.*`` keys are reported
as unused.

Taps: ``stem`` (after conv1/bn1/relu: 64 ch, stride 2), ``layer1`` (256, 4), ``layer2`` (512, 8),
``layer3`` (1024, min(16, OS)), ``layer4`` (2048, OS). Output stride 16 (default: the DeepLab-v3 training
setting, dense enough for pixel tasks at a quarter of the cost of 8) or 8 replaces the stride of layer4 (and
layer3) by dilation, as torchvision's ``replace_stride_with_dilation``: the first block of a dilated stage
keeps the previous dilation, the following blocks use the new one. 32 = the plain classification network.
"""

from __future__ import annotations

from torch import Tensor, nn

from ubernet.errors import ConfigError
from ubernet.models.trunks.base import TORCHVISION_IMAGENET, TapSpec, Trunk
from ubernet.models.trunks.registry import register_trunk

RESNET50_BLOCKS = (3, 4, 6, 3)
RESNET50_PLANES = (64, 128, 256, 512)
EXPANSION = 4


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (stride, dilation) -> 1x1 expand (x4), plus identity or 1x1 projection shortcut.

    Tensor[B, inplanes, H, W] -> Tensor[B, 4 * planes, ceil(H / stride), ceil(W / stride)].
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        out = planes * EXPANSION
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        # in-place on y only: x may be a tap kept by the caller (or a checkpoint segment input)
        y += identity
        return self.relu(y)


class ResNet50Trunk(Trunk):
    """ResNet-50 without its classifier; see the module docstring for taps and output strides."""

    def __init__(self, *, output_stride: int = 16, freeze_bn: bool = True, frozen_stages: int = 0) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ConfigError(f"resnet50 output_stride must be 8, 16 or 32, got {output_stride}")
        self.output_stride = output_stride
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        taps = [TapSpec("stem", 64, 2)]
        inplanes, stride_so_far, dilation = 64, 4, 1
        for i, (n_blocks, planes) in enumerate(zip(RESNET50_BLOCKS, RESNET50_PLANES)):
            stride = 1 if i == 0 else 2
            previous_dilation = dilation
            if stride == 2 and stride_so_far >= output_stride:
                dilation *= stride
                stride = 1
            blocks = [Bottleneck(inplanes, planes, stride, previous_dilation)]
            inplanes = planes * EXPANSION
            blocks += [Bottleneck(inplanes, planes, 1, dilation) for _ in range(1, n_blocks)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            stride_so_far *= stride
            taps.append(TapSpec(f"layer{i + 1}", inplanes, stride_so_far))
        self.taps = tuple(taps)
        self.input_norm = TORCHVISION_IMAGENET
        self._setup_freezing(freeze_bn=freeze_bn, frozen_stages=frozen_stages)

    def layers(self) -> list[tuple[nn.Module, str | None]]:
        """stem (conv1+bn1+relu, tap 'stem'), maxpool, then every Bottleneck; the last block of layerK is tap
        'layerK'."""
        out: list[tuple[nn.Module, str | None]] = [
            (nn.Sequential(self.conv1, self.bn1, self.relu), "stem"),
            (self.maxpool, None),
        ]
        for k in range(1, 5):
            stage: nn.Sequential = getattr(self, f"layer{k}")
            for j, block in enumerate(stage):
                out.append((block, f"layer{k}" if j == len(stage) - 1 else None))
        return out


@register_trunk("resnet50")
def resnet50(*, output_stride: int = 16, freeze_bn: bool = True, frozen_stages: int = 0) -> ResNet50Trunk:
    """ResNet-50. ``output_stride`` 8, 16 (default) or 32; ``freeze_bn`` keeps BatchNorm in eval mode with
    fixed affine parameters (default); ``frozen_stages`` k freezes stem, layer1, ... up to the k-th tap (k <=
    5)."""
    return ResNet50Trunk(output_stride=output_stride, freeze_bn=freeze_bn, frozen_stages=frozen_stages)
