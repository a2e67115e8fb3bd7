"""UberNet's dense task branch: linear skip layers, layer fusion and scale fusion (paper Fig. 2).

For task t and trunk tap i, a *linear* 1×1 map E_i^t turns the (batch-normalised) tap into t's score channels at
the tap's own resolution — cheap, since it runs before any upsampling. Each per-tap score map is bilinearly
interpolated to the task's output resolution and the maps are fused by a learned 1×1 map over their
concatenation (layer fusion F^t; the raw features are never concatenated). The same E and F serve every pyramid
scale (the trunk's weights are tied across scales, so are the skip layers); the per-scale outputs are fused by a
second 1×1 map (scale fusion S^t). Losses are applied to every scale's output and to the fused output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ubernet.models.trunks.base import TapSpec


@dataclass
class DenseOutput:
    """Logits of a dense head.

    Attributes:
        scales: one ``Tensor[B, C, h, w]`` per pyramid scale, at the task's output resolution
            (``h = ceil(H / out_stride)`` for the padded batch size ``H×W``).
        fused: ``Tensor[B, C, h, w]``, the scale-fused logits (the prediction); equals ``scales[0]`` when
            there is one scale.
    """

    scales: list[torch.Tensor]
    fused: torch.Tensor


def output_size(image_hw: tuple[int, int], out_stride: int) -> tuple[int, int]:
    """Output resolution of a task with stride ``out_stride`` for a padded ``image_hw`` batch."""
    h, w = image_hw
    return -(-h // out_stride), -(-w // out_stride)


class DenseHead(nn.Module):
    """Skip layers + layer fusion + scale fusion for one dense task.

    Args:
        taps: the trunk's tap declarations (channels are read from here).
        out_channels: the task's number of output channels.
        out_stride: output resolution relative to the input (1 = full resolution, 4 = quarter).
        num_scales: number of pyramid scales whose outputs are fused.
        use_taps: indices of the taps to read (default all).
    """

    def __init__(
        self,
        *,
        taps: Sequence[TapSpec],
        out_channels: int,
        out_stride: int = 1,
        num_scales: int = 1,
        use_taps: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.tap_index = list(range(len(taps))) if use_taps is None else list(use_taps)
        if not self.tap_index:
            raise ValueError("a dense head needs at least one tap")
        self.out_channels = out_channels
        self.out_stride = out_stride
        self.num_scales = num_scales
        self.skips = nn.ModuleList(nn.Conv2d(taps[i].channels, out_channels, 1) for i in self.tap_index)
        n = len(self.tap_index)
        # Grouped 1×1 conv: output channel c fuses channel c of every tap's score map. Initialised to the mean
        # of the taps (as HED's fusion layer), so training starts from a plain average and learns the weights.
        self.layer_fuse = nn.Conv2d(out_channels * n, out_channels, 1, groups=out_channels)
        nn.init.constant_(self.layer_fuse.weight, 1.0 / n)
        nn.init.zeros_(self.layer_fuse.bias)
        for conv in self.skips:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        if num_scales > 1:
            self.scale_fuse: nn.Module | None = nn.Conv2d(out_channels * num_scales, out_channels, 1,
                                                        groups=out_channels)
            nn.init.constant_(self.scale_fuse.weight, 1.0 / num_scales)
            nn.init.zeros_(self.scale_fuse.bias)
        else:
            self.scale_fuse = None

    @staticmethod
    def _fuse(conv: nn.Conv2d, maps: list[torch.Tensor]) -> torch.Tensor:
        """Apply a channel-wise fusion ``conv`` (grouped 1×1, weight ``[C, n, 1, 1]``) to ``n`` maps of ``C``
        channels. Written as a weighted sum it equals the grouped convolution over the interleaved stack, but
        needs no stacked copy and runs several times faster on CPU (especially under bf16)."""
        w = conv.weight[:, :, 0, 0]  # [C, n]
        out = conv.bias.view(1, -1, 1, 1).to(maps[0].dtype)  # type: ignore[union-attr]
        for i, m in enumerate(maps):
            out = out + m * w[:, i].view(1, -1, 1, 1).to(m.dtype)
        return out

    def forward_scale(self, taps: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Logits ``Tensor[B, C, *size]`` of one pyramid scale from its tap tensors."""
        maps = []
        for conv, i in zip(self.skips, self.tap_index):
            score = conv(taps[i])  # linear map at the tap's own resolution, before upsampling
            if score.shape[-2:] != size:
                score = F.interpolate(score, size=size, mode="bilinear", align_corners=False)
            maps.append(score)
        return self._fuse(self.layer_fuse, maps)

    def forward(
        self,
        feats: Sequence[Sequence[torch.Tensor]],
        *,
        image_hw: tuple[int, int],
        image_sizes: Sequence[tuple[int, int]] | None = None,
        targets: object = None,
    ) -> DenseOutput:
        size = output_size(image_hw, self.out_stride)
        scales = [self.forward_scale(taps, size) for taps in feats]
        if self.scale_fuse is None:
            fused = scales[0]
        else:
            if len(scales) != self.num_scales:
                raise ValueError(f"head built for {self.num_scales} scales got {len(scales)}")
            fused = self._fuse(self.scale_fuse, scales)  # type: ignore[arg-type]
        return DenseOutput(scales=scales, fused=fused)
