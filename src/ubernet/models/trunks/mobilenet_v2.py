"""MobileNetV2 trunk (torchvision layout), the fast CPU backbone.

``features`` is torchvision's ``mobilenet_v2().features``: features.0 = Conv3x3(3 -> 32, stride 2)+BN+ReLU6,
features.1..17 = InvertedResidual blocks (``conv`` Sequential: [1x1 expand ConvBNReLU6 if t != 1],
3x3 depthwise ConvBNReLU6, 1x1 projection conv, BN), features.18 = 1x1 ConvBNReLU6 to 1280. Keys such as
``features.1.conv.0.0.weight`` therefore load from a torchvision checkpoint; its ``classifier.*`` keys are
unused.

Taps (width 1.0): ``block1`` (= features.1, 16 ch, stride 2), ``block3`` (24, 4), ``block6`` (32, 8),
``block13`` (96, 16), ``last`` (features.18, 1280, 32). Tap names carry no dots so they can key a ModuleDict.
With ``output_stride`` 16 or 8, stride-2 blocks beyond that stride get stride 1 and their depthwise convs are
dilated (first such block keeps the previous dilation, as in ResNet's ``replace_stride_with_dilation``); tap
strides are then capped at the output stride. ``width`` scales channels with torchvision's ``_make_divisible``
rounding (multiple of 8, never below 90% of the exact value); the last conv keeps 1280 for width <= 1.
"""

from __future__ import annotations

from torch import Tensor, nn

from ubernet.errors import ConfigError
from ubernet.models.trunks.base import TORCHVISION_IMAGENET, TapSpec, Trunk
from ubernet.models.trunks.registry import register_trunk

# expansion t, channels c, repeats n, stride s of each stage (MobileNetV2 paper, Table 2)
MOBILENET_V2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                        (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip
_TAP_BLOCKS = (1, 3, 6, 13, 18)


def make_divisible(v: float, divisor: int = 8) -> int:
    """Nearest multiple of ``divisor`` to ``v`` (at least ``divisor``), plus one step if it lost > 10%."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNReLU6(nn.Sequential):
    """Conv(k, stride, dilation, groups, no bias) -> BN -> ReLU6; keys ``0.weight``, ``1.*`` as torchvision's
    Conv2dNormActivation. Tensor[B, in, H, W] -> Tensor[B, out, ceil(H / stride), ceil(W / stride)]."""

    def __init__(
        self, cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1, groups: int = 1
    ):
        padding = (kernel - 1) // 2 * dilation
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, padding, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """Expand (1x1, x t) -> depthwise 3x3 -> linear 1x1 projection; residual when the *original* block has
    stride 1 and equal in/out channels (a block whose stride was turned into dilation keeps no residual, like
    the pretrained network)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        stride: int,
        expand_ratio: int,
        *,
        dilation: int = 1,
        residual: bool | None = None,
    ) -> None:
        super().__init__()
        hidden = round(cin * expand_ratio)
        self.use_res_connect = (stride == 1 and cin == cout) if residual is None else residual
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(cin, hidden, kernel=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, dilation=dilation, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2Trunk(Trunk):
    """MobileNetV2 without its classifier; see the module docstring for taps, strides and width."""

    def __init__(
        self, *, output_stride: int = 32, width: float = 1.0, freeze_bn: bool = True, frozen_stages: int = 0
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ConfigError(f"mobilenet_v2 output_stride must be 8, 16 or 32, got {output_stride}")
        if not width > 0:
            raise ConfigError(f"mobilenet_v2 width must be > 0, got {width}")
        self.output_stride = output_stride
        self.width = width
        cin = make_divisible(32 * width)
        last = make_divisible(1280 * max(1.0, width))
        blocks: list[nn.Module] = [ConvBNReLU6(3, cin, stride=2)]
        channels, strides = [cin], [2]
        stride_so_far, dilation = 2, 1
        for t, c, n, s in MOBILENET_V2_SETTING:
            cout = make_divisible(c * width)
            for i in range(n):
                stride = s if i == 0 else 1
                block_dilation = dilation
                if stride == 2 and stride_so_far >= output_stride:
                    dilation *= 2  # later blocks see the new dilation; this one keeps the previous one
                    blocks.append(InvertedResidual(cin, cout, 1, t, dilation=block_dilation, residual=False))
                else:
                    blocks.append(InvertedResidual(cin, cout, stride, t, dilation=block_dilation))
                    stride_so_far *= stride
                cin = cout
                channels.append(cout)
                strides.append(stride_so_far)
        blocks.append(ConvBNReLU6(cin, last, kernel=1))
        channels.append(last)
        strides.append(stride_so_far)
        self.features = nn.Sequential(*blocks)
        self._tap_names = {i: ("last" if i == 18 else f"block{i}") for i in _TAP_BLOCKS}
        self.taps = tuple(TapSpec(self._tap_names[i], channels[i], strides[i]) for i in _TAP_BLOCKS)
        self.input_norm = TORCHVISION_IMAGENET
        self._setup_freezing(freeze_bn=freeze_bn, frozen_stages=frozen_stages)

    def layers(self) -> list[tuple[nn.Module, str | None]]:
        """features.0 .. features.18, one entry each; taps after features.1, 3, 6, 13, 18."""
        return [(block, self._tap_names.get(i)) for i, block in enumerate(self.features)]


@register_trunk("mobilenet_v2")
def mobilenet_v2(
    *, output_stride: int = 32, width: float = 1.0, freeze_bn: bool = True, frozen_stages: int = 0
) -> MobileNetV2Trunk:
    """MobileNetV2. ``output_stride`` 8, 16 or 32 (default); ``width`` channel multiplier (0.5 for fast
    tests); ``freeze_bn`` (default True): BatchNorm in eval mode, affine parameters fixed;
    ``frozen_stages`` k <= 5."""
    return MobileNetV2Trunk(
        output_stride=output_stride, width=width, freeze_bn=freeze_bn, frozen_stages=frozen_stages
    )
