"""A compact VGG-style trunk for small images trained from scratch (the synthetic-world demo).

ImageNet trunks are the right choice whenever pretrained weights exist; trained from scratch on 128-px images in a
few minutes of CPU they learn slowly (MobileNetV2's depthwise convolutions are also memory-bound on CPU and gain
nothing from bf16). This trunk is VGG's plan at a fraction of the width, with BatchNorm after every convolution so
it trains from scratch at high learning rates, and a tap at every stride from 1 (full resolution, which thin
boundaries need) to 16 (context for recognition):

    stage 1 (stride 1):  conv3x3(w1) ×2            -> tap "s1"
    stage 2 (stride 2):  maxpool, conv3x3(w2) ×2   -> tap "s2"
    stage 3 (stride 4):  maxpool, conv3x3(w3) ×2   -> tap "s4"
    stage 4 (stride 8):  maxpool, conv3x3(w4) ×2   -> tap "s8"
    stage 5 (stride 16): maxpool, conv3x3(w5) ×2   -> tap "s16"
    stage 6 (stride 32): maxpool, conv3x3(w6) ×2   -> tap "s32"   (only with six widths)

The optional sixth stage widens the context of the deepest features (theoretical receptive field 140 px at
stride 16, 284 px at 32): at stride 32 a 128-px image is a 4×4 map. Few FLOPs, yet on CPU it made the demo's step
10-15 % slower (oneDNN's backward of 3×3 convolutions on 4×4 maps is slow), which cost more than the stage gave
at equal wall time (docs/benchmarks.md, ninth round).

Every convolution is a dense 3×3 (no depthwise), which bf16 autocast + channels_last runs on the CPU's matrix
units. Pooling uses ``ceil_mode`` so a tap of an ``H×W`` input is ``ceil(H/s)×ceil(W/s)`` like every trunk here.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ubernet.errors import ConfigError
from ubernet.models.trunks.base import TORCHVISION_IMAGENET, TapSpec, Trunk
from ubernet.models.trunks.registry import register_trunk

DEFAULT_WIDTHS = (32, 64, 128, 256, 256)


def _conv_bn_relu(cin: int, cout: int, dilation: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


class CompactTrunk(Trunk):
    """Five (or six) VGG-style stages of two 3×3 conv-BN-ReLU layers; taps after each stage (strides 1, 2, 4, 8,
    16, and 32 with six widths).

    Input: normalised ``Tensor[B, 3, H, W]`` (torchvision's ImageNet normalisation, so images look alike to every
    trunk). Output of :meth:`forward`: one tap per stage ``Tensor[B, widths[i], ceil(H / 2**i), ceil(W / 2**i)]``.
    """

    def __init__(self, *, widths: Sequence[int] = DEFAULT_WIDTHS, dilations: Sequence[int] | None = None,
                 freeze_bn: bool = False, frozen_stages: int = 0) -> None:
        super().__init__()
        given = widths
        try:
            widths = tuple(int(w) for w in widths)
        except (TypeError, ValueError):
            widths = ()
        if len(widths) not in (5, 6) or min(widths) < 1:
            raise ConfigError(f"compact trunk widths must be 5 or 6 positive channel counts (a sixth adds a "
                              f"stride-32 stage), got {given!r}")
        dil = [1] * len(widths) if dilations is None else dilations
        if not isinstance(dil, (list, tuple)) or len(dil) != len(widths) \
                or not all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 8 for d in dil):
            raise ConfigError(f"compact trunk dilations must be one integer in 1..8 per stage ({len(widths)}), "
                              f"got {dilations!r}")
        stages: list[nn.Module] = []
        cin = 3
        for i, w in enumerate(widths):
            mods: list[nn.Module] = [] if i == 0 else [nn.MaxPool2d(2, 2, ceil_mode=True)]
            mods += _conv_bn_relu(cin, w) + _conv_bn_relu(w, w, dil[i])
            stages.append(nn.Sequential(*mods))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.taps = tuple(TapSpec(f"s{2 ** i}", w, 2**i) for i, w in enumerate(widths))
        self.input_norm = TORCHVISION_IMAGENET
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self._setup_freezing(freeze_bn=freeze_bn, frozen_stages=frozen_stages)

    def layers(self) -> list[tuple[nn.Module, str | None]]:
        """One entry per stage; each stage's output is a tap."""
        return [(stage, spec.name) for stage, spec in zip(self.stages, self.taps)]


@register_trunk("compact")
def compact(*, widths: Sequence[int] = DEFAULT_WIDTHS, dilations: Sequence[int] | None = None, freeze_bn: bool = False,
            frozen_stages: int = 0) -> CompactTrunk:
    """Compact VGG-style trunk for small images trained from scratch. ``widths``: channels of the five stages
    (default 32, 64, 128, 256, 256), or six for a stride-32 stage; ``dilations``: one per stage, the dilation of
    its second convolution (default all 1; e.g. ``[1, 1, 1, 1, 2]`` widens the deepest stage's receptive field
    at the same cost); ``freeze_bn`` default False (there are no pretrained statistics to keep)."""
    return CompactTrunk(widths=widths, dilations=dilations, freeze_bn=freeze_bn, frozen_stages=frozen_stages)
