"""VGG-16 trunk as in UberNet / DeepLab-LargeFOV: conv1_1..conv5_3, fc6/fc7 as convolutions, atrous output
stride.

Layout (module names = torchvision's ``vgg16().features`` indices, so ``features.*`` checkpoint keys load as
is)::

    features.0  conv1_1   features.2  conv1_2   features.4  pool1 (2x2 s2)
    features.5  conv2_1   features.7  conv2_2   features.9  pool2 (2x2 s2)
    features.10 conv3_1   features.12 conv3_2   features.14 conv3_3   features.16 pool3 (2x2 s2)
    features.17 conv4_1   features.19 conv4_2   features.21 conv4_3   features.23 pool4
    features.24 conv5_1   features.26 conv5_2   features.28 conv5_3   features.30 pool5 (3x3 s1 p1)
    (odd indices 1, 3, ... after each conv are its ReLU)
    fc6: Conv2d(512, fc_channels, 3, dilation=fc6_dilation)  relu6 [drop6]
    fc7: Conv2d(fc_channels, fc_channels, 1)                 relu7 [drop7]

Output stride 8 (DeepLab-LargeFOV): pool4 becomes 3x3 stride 1 pad 1 and conv5_x use dilation 2.
Output stride 16: pool4 keeps stride 2, conv5_x are plain. pool5 is always 3x3 stride 1 pad 1.

The stride-2 pools are 2x2 with ``ceil_mode=True`` (torchvision uses floor): identical when the size is even,
and for odd sizes the last row/column is pooled instead of dropped, so every tap of stride s has size ceil(H /
s), the same rule as the ResNet and MobileNetV2 trunks (and as Keras/TF 'same' pooling, e.g. the HED model).

fc6 dilation: in ImageNet VGG-16 the first FC layer is a 7x7 kernel on the stride-32 pool5 map, so its taps
are 32 pixels apart; DeepLab keeps taps 0, 3, 6 of it (96 pixels apart) as a 3x3 kernel. Dilation ``96 /
output_stride`` keeps that geometry: 12 at output stride 8 (DeepLab-LargeFOV's value), 6 at output stride 16
(the default here).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from ubernet.errors import ConfigError
from ubernet.models.trunks.base import TORCHVISION_IMAGENET, TapSpec, Trunk
from ubernet.models.trunks.registry import register_trunk

# (name, features index) of the 13 convolutions, in order; the ReLU after each is at index + 1.
VGG16_CONVS: tuple[tuple[str, int], ...] = (
    ("conv1_1", 0), ("conv1_2", 2),
    ("conv2_1", 5), ("conv2_2", 7),
    ("conv3_1", 10), ("conv3_2", 12), ("conv3_3", 14),
    ("conv4_1", 17), ("conv4_2", 19), ("conv4_3", 21),
    ("conv5_1", 24), ("conv5_2", 26), ("conv5_3", 28),
)  # fmt: skip
_CHANNELS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
_POOLS = (4, 9, 16, 23, 30)  # pool1..pool5 indices in features

FC_IN_CHANNELS, FC_KERNEL, FC_WIDTH = 512, 7, 4096  # ImageNet VGG-16 classifier.0 = 512x7x7 -> 4096
FC6_TAPS = (0, 3, 6)  # DeepLab: rows/columns of the 7x7 fc6 kernel kept as a 3x3 kernel


def decimate_fc(
    fc6_kernel: Tensor, fc6_bias: Tensor, fc7_weight: Tensor, fc7_bias: Tensor, fc_channels: int
) -> dict[str, Tensor] | None:
    """DeepLab-LargeFOV decimation of VGG's fully connected layers into the fc6/fc7 convolutions.

    Args:
        fc6_kernel: Tensor[N, C, 7, 7], the first FC layer as a convolution kernel (ImageNet: N=4096, C=512).
        fc6_bias: Tensor[N].
        fc7_weight: Tensor[N, N], the second FC layer (out, in).
        fc7_bias: Tensor[N].
        fc_channels: the trunk's fc6/fc7 width; must divide N (step = N // fc_channels).

    Returns:
        ``{"fc6.weight": [fc, C, 3, 3], "fc6.bias": [fc], "fc7.weight": [fc, fc, 1, 1], "fc7.bias": [fc]}``
        where
        ``fc6.weight[j, c, a, b] = fc6_kernel[step*j, c, FC6_TAPS[a], FC6_TAPS[b]]`` (every step-th filter,
        spatial
        taps 0/3/6) and ``fc7.weight[j, i] = fc7_weight[step*j, step*i]``; None when ``fc_channels`` does not
        divide N (the caller then leaves fc6/fc7 at their initial values).
    """
    n = fc6_kernel.shape[0]
    if fc_channels <= 0 or n % fc_channels != 0:
        return None
    step = n // fc_channels
    taps = list(FC6_TAPS)
    w6 = fc6_kernel[::step][:, :, taps][:, :, :, taps]
    w7 = fc7_weight[::step, ::step]
    return {
        "fc6.weight": w6.contiguous(),
        "fc6.bias": fc6_bias[::step].contiguous(),
        "fc7.weight": w7.reshape(fc_channels, fc_channels, 1, 1).contiguous(),
        "fc7.bias": fc7_bias[::step].contiguous(),
    }


class VGG16Trunk(Trunk):
    """VGG-16 with taps C1..C6 = conv1_2, conv2_2, conv3_3, conv4_3, conv5_3, fc7 (each after its ReLU).

    Strides 1, 2, 4, 8, OS, OS (OS = output_stride); channels 64, 128, 256, 512, 512, fc_channels.
    Input: :data:`TORCHVISION_IMAGENET` normalisation (set to Caffe BGR by the Keras .h5 loader).
    """

    pretrained_optional = ("fc6.", "fc7.")

    def __init__(
        self,
        *,
        output_stride: int = 8,
        fc_channels: int = 1024,
        fc6_dilation: int | None = None,
        fc_dropout: float = 0.0,
        frozen_stages: int = 0,
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16):
            raise ConfigError(f"vgg16 output_stride must be 8 or 16, got {output_stride}")
        if fc_channels < 1:
            raise ConfigError(f"vgg16 fc_channels must be >= 1, got {fc_channels}")
        if not 0.0 <= fc_dropout < 1.0:
            raise ConfigError(f"vgg16 fc_dropout must be in [0, 1), got {fc_dropout}")
        dilation6 = 96 // output_stride if fc6_dilation is None else fc6_dilation
        if dilation6 < 1:
            raise ConfigError(f"vgg16 fc6_dilation must be >= 1, got {fc6_dilation}")
        self.output_stride = output_stride
        self.fc_channels = fc_channels

        conv_at = {idx: (name, ch) for (name, idx), ch in zip(VGG16_CONVS, _CHANNELS)}
        modules: list[nn.Module] = []
        in_ch, stride, dilation = 3, 1, 1
        for idx in range(31):
            if idx in conv_at:
                out_ch = conv_at[idx][1]
                modules.append(nn.Conv2d(in_ch, out_ch, 3, padding=dilation, dilation=dilation))
                in_ch = out_ch
            elif idx in _POOLS:
                if stride < output_stride:
                    modules.append(nn.MaxPool2d(2, 2, ceil_mode=True))
                    stride *= 2
                else:  # DeepLab: keep resolution, dilate what follows (fc6 has its own dilation)
                    modules.append(nn.MaxPool2d(3, 1, padding=1))
                    dilation *= 2
            else:
                modules.append(nn.ReLU(inplace=True))
        self.features = nn.Sequential(*modules)

        self.fc6 = nn.Conv2d(512, fc_channels, 3, padding=dilation6, dilation=dilation6)
        self.relu6 = nn.ReLU(inplace=True)
        self.fc7 = nn.Conv2d(fc_channels, fc_channels, 1)
        self.relu7 = nn.ReLU(inplace=True)
        self.fc_dropout = fc_dropout
        if fc_dropout > 0:
            self.drop6 = nn.Dropout(fc_dropout)
            self.drop7 = nn.Dropout(fc_dropout)

        self._tap_after = {2: "conv1_2", 7: "conv2_2", 14: "conv3_3", 21: "conv4_3", 28: "conv5_3"}
        self.taps = (
            TapSpec("conv1_2", 64, 1),
            TapSpec("conv2_2", 128, 2),
            TapSpec("conv3_3", 256, 4),
            TapSpec("conv4_3", 512, 8),
            TapSpec("conv5_3", 512, output_stride),
            TapSpec("fc7", fc_channels, output_stride),
        )
        self.input_norm = TORCHVISION_IMAGENET
        self._setup_freezing(freeze_bn=False, frozen_stages=frozen_stages)

    def layers(self) -> list[tuple[nn.Module, str | None]]:
        """Each conv grouped with its (in-place) ReLU, so no segment boundary falls between them; pools alone;
        then fc6+relu6(+drop6) and fc7+relu7(+drop7) (tap 'fc7')."""
        out: list[tuple[nn.Module, str | None]] = []
        f = self.features
        i = 0
        while i < len(f):
            if isinstance(f[i], nn.Conv2d):
                out.append((nn.Sequential(f[i], f[i + 1]), self._tap_after.get(i)))
                i += 2
            else:
                out.append((f[i], None))
                i += 1
        drop = self.fc_dropout > 0
        fc6 = [self.fc6, self.relu6] + ([self.drop6] if drop else [])
        fc7 = [self.fc7, self.relu7] + ([self.drop7] if drop else [])
        out.append((nn.Sequential(*fc6), None))
        out.append((nn.Sequential(*fc7), "fc7"))
        return out

    def convert_torchvision_state_dict(
        self, state_dict: Mapping[str, Tensor]
    ) -> tuple[dict[str, Tensor], list[str]]:
        """``features.*`` pass through; torchvision's ``classifier.0`` (Linear 25088 -> 4096, input flattened
        as
        512x7x7) and ``classifier.3`` (Linear 4096 -> 4096) become fc6/fc7 by :func:`decimate_fc`. Keys not
        used
        (``classifier.6.*``, or classifier.0/3 when fc_channels does not divide 4096) are returned unchanged,
        so
        the loader reports them as unexpected."""
        mapped = dict(state_dict)
        notes: list[str] = []
        fc_keys = ("classifier.0.weight", "classifier.0.bias", "classifier.3.weight", "classifier.3.bias")
        if not all(k in mapped for k in fc_keys):
            notes.append("fc6/fc7 left at init: checkpoint has no classifier.0/classifier.3")
            return mapped, notes
        w0 = mapped["classifier.0.weight"]
        expected = (FC_WIDTH, FC_IN_CHANNELS * FC_KERNEL * FC_KERNEL)
        if tuple(w0.shape) != expected:
            raise ConfigError(
                f"checkpoint key 'classifier.0.weight' has shape {tuple(w0.shape)}, expected {expected} "
                "(ImageNet VGG-16's first FC layer on a 512x7x7 map)"
            )
        kernel = w0.reshape(FC_WIDTH, FC_IN_CHANNELS, FC_KERNEL, FC_KERNEL)
        fc = decimate_fc(
            kernel,
            mapped["classifier.0.bias"],
            mapped["classifier.3.weight"],
            mapped["classifier.3.bias"],
            self.fc_channels,
        )
        if fc is None:
            notes.append(f"fc6/fc7 left at init: fc_channels={self.fc_channels} does not divide {FC_WIDTH}")
            return mapped, notes
        for k in fc_keys:
            del mapped[k]
        mapped.update(fc)
        notes.append(
            f"fc6/fc7 decimated from classifier.0/classifier.3: every {FC_WIDTH // self.fc_channels}-th "
            f"filter, fc6 spatial taps {FC6_TAPS} of 7x7"
        )
        return mapped, notes


@register_trunk("vgg16")
def vgg16(
    *,
    output_stride: int = 8,
    fc_channels: int = 1024,
    fc6_dilation: int | None = None,
    fc_dropout: float = 0.0,
    frozen_stages: int = 0,
) -> VGG16Trunk:
    """VGG-16 (UberNet's trunk). ``output_stride`` 8 (default) or 16; ``fc6_dilation`` None = 96 /
    output_stride;
    ``fc_dropout`` 0 = no dropout after fc6/fc7; ``frozen_stages`` k freezes conv1..conv{k} (k <= 6)."""
    return VGG16Trunk(
        output_stride=output_stride,
        fc_channels=fc_channels,
        fc6_dilation=fc6_dilation,
        fc_dropout=fc_dropout,
        frozen_stages=frozen_stages,
    )
