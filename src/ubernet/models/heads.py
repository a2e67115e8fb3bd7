"""UberNet's dense task branch: linear skip layers, layer fusion and scale fusion (paper Fig. 2).

For task t and trunk tap i, a *linear* 1×1 map E_i^t turns the (batch-normalised) tap into t's score channels at
the tap's own resolution (optionally, beyond the paper, after a small 3×3 conv + ReLU on the deep taps:
``hidden``) — cheap, since it runs before any upsampling. Each per-tap score map is bilinearly
interpolated to the task's output resolution and the maps are fused by a learned 1×1 map over their
concatenation (layer fusion F^t; the raw features are never concatenated). The same E and F serve every pyramid
scale (the trunk's weights are tied across scales, so are the skip layers); the per-scale outputs are fused by a
second 1×1 map (scale fusion S^t). Losses are applied to every scale's output and to the fused output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ubernet.models.trunks.base import TapSpec
from ubernet.ops.resample import matmul_pays, resample_sum


class DenseOutput:
    """Logits of a dense head.

    Attributes:
        scales: one ``Tensor[B, C, h, w]`` per pyramid scale, at the task's output resolution
            (``h = ceil(H / out_stride)`` for the padded batch size ``H×W``).
        fused: ``Tensor[B, C, h, w]``, the scale-fused logits (the prediction); equals ``scales[0]`` when
            there is one scale.

    ``scales`` may be given as a function instead (``scales_fn``): it is then computed on first access. Inference
    uses this: the prediction needs only ``fused``, which :meth:`DenseHead.forward` then computes directly.
    """

    def __init__(self, scales: list[torch.Tensor] | None = None, fused: torch.Tensor | None = None, *,
                 scales_fn: Callable[[], list[torch.Tensor]] | None = None) -> None:
        if fused is None or (scales is None and scales_fn is None):
            raise TypeError("DenseOutput needs fused logits and the per-scale logits (or a function making them)")
        self.fused = fused
        self._scales = scales
        self._scales_fn = scales_fn

    @property
    def scales(self) -> list[torch.Tensor]:
        if self._scales is None:
            assert self._scales_fn is not None
            self._scales, self._scales_fn = self._scales_fn(), None
        return self._scales

    def __repr__(self) -> str:
        scales = "lazy" if self._scales is None else len(self._scales)
        return f"DenseOutput(fused={tuple(self.fused.shape)}, scales={scales})"


def output_size(image_hw: tuple[int, int], out_stride: int) -> tuple[int, int]:
    """Output resolution of a task with stride ``out_stride`` for a padded ``image_hw`` batch."""
    h, w = image_hw
    return -(-h // out_stride), -(-w // out_stride)


class ContextBlock(nn.Module):
    """Atrous spatial pyramid pooling (DeepLab v3, Chen et al. 2017) at one tap: parallel 3×3 convolutions with
    dilations ``rates`` and an image-level branch (global average, 1×1 conv, broadcast back), each ``width``
    channels + ReLU, concatenated.

    Input ``Tensor[B, C_in, h, w]``; output ``Tensor[B, width · (len(rates) + 1), h, w]`` (:attr:`out_channels`).
    Beyond the paper's linear skips: a pixel's score then reads features up to ``max(rates)`` cells away (at
    stride 16, ±64 px for rate 4) and the whole image, at the cost of convolutions on the deep, small taps only.
    Padding ``= rate`` keeps the size; zero padding of a batch's padded border is seen like an image border.
    """

    def __init__(self, in_channels: int, width: int, rates: Sequence[int]) -> None:
        super().__init__()
        self.rates = tuple(int(r) for r in rates)
        self.branches = nn.ModuleList(nn.Conv2d(in_channels, width, 3, padding=r, dilation=r) for r in self.rates)
        self.image_pool = nn.Conv2d(in_channels, width, 1)
        self.out_channels = width * (len(self.rates) + 1)
        for conv in [*self.branches, self.image_pool]:
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.relu(self.image_pool(x.mean((2, 3), keepdim=True)))
        maps = [F.relu(conv(x)) for conv in self.branches]
        return torch.cat([*maps, pooled.expand(-1, -1, x.shape[-2], x.shape[-1])], 1)


class DenseHead(nn.Module):
    """Skip layers + layer fusion + scale fusion for one dense task.

    Args:
        taps: the trunk's tap declarations (channels are read from here).
        out_channels: the task's number of output channels.
        out_stride: output resolution relative to the input (1 = full resolution, 4 = quarter).
        num_scales: number of pyramid scales whose outputs are fused.
        use_taps: indices of the taps to read (default all).
        hidden: channels of an optional nonlinear block (3×3 conv + ReLU, at the tap's resolution) in front of
            the 1×1 skip of every tap with stride >= ``hidden_min_stride``; 0 (default) keeps the paper's linear
            skips. Beyond the paper: capacity of the task's own, cheap because the deep taps are small (on the
            synthetic demo it helped at 8k samples but not at 21.6k: docs/benchmarks.md, fifth round).
        hidden_min_stride: the shallowest tap stride that gets the block.
        context: dilation rates of a :class:`ContextBlock` (``hidden`` channels per branch) used as the block
            instead of the single 3×3 conv; empty (default): the single conv, when ``hidden`` is set.
    """

    def __init__(
        self,
        *,
        taps: Sequence[TapSpec],
        out_channels: int,
        out_stride: int = 1,
        num_scales: int = 1,
        use_taps: Sequence[int] | None = None,
        hidden: int = 0,
        hidden_min_stride: int = 8,
        context: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self.tap_index = list(range(len(taps))) if use_taps is None else list(use_taps)
        if not self.tap_index:
            raise ValueError("a dense head needs at least one tap")
        if hidden < 0:
            raise ValueError(f"hidden must be >= 0, got {hidden}")
        self.out_channels = out_channels
        self.out_stride = out_stride
        self.num_scales = num_scales
        if context and not hidden:
            raise ValueError("a context block needs hidden > 0 channels per branch")

        def block(i: int) -> nn.Module:
            # Identity where a tap has no block, so state-dict keys stay `blocks.<k>.0.weight` for the others.
            if not hidden or taps[i].stride < hidden_min_stride:
                return nn.Identity()
            if context:
                return ContextBlock(taps[i].channels, hidden, context)
            return nn.Sequential(nn.Conv2d(taps[i].channels, hidden, 3, padding=1), nn.ReLU())

        self.blocks = nn.ModuleList(block(i) for i in self.tap_index)
        self.skips = nn.ModuleList(
            nn.Conv2d(getattr(b, "out_channels", hidden) if not isinstance(b, nn.Identity) else taps[i].channels,
                      out_channels, 1)
            for b, i in zip(self.blocks, self.tap_index))
        n = len(self.tap_index)
        # Grouped 1×1 conv: output channel c fuses channel c of every tap's score map. Initialised to the mean
        # of the taps (as HED's fusion layer), so training starts from a plain average and learns the weights.
        self.layer_fuse = nn.Conv2d(out_channels * n, out_channels, 1, groups=out_channels)
        nn.init.constant_(self.layer_fuse.weight, 1.0 / n)
        nn.init.zeros_(self.layer_fuse.bias)
        for conv in self.skips:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        for block in self.blocks:
            if isinstance(block, nn.Sequential):
                nn.init.kaiming_normal_(block[0].weight, nonlinearity="relu")
                nn.init.zeros_(block[0].bias)
        if num_scales > 1:
            self.scale_fuse: nn.Module | None = nn.Conv2d(out_channels * num_scales, out_channels, 1,
                                                        groups=out_channels)
            nn.init.constant_(self.scale_fuse.weight, 1.0 / num_scales)
            nn.init.zeros_(self.scale_fuse.bias)
        else:
            self.scale_fuse = None

    def tap_reads(self, num_scales: int) -> list[tuple[int, int]]:
        """The ``(scale, tap)`` features :meth:`forward` reads: its taps, at every scale."""
        return [(s, i) for s in range(num_scales) for i in self.tap_index]

    @staticmethod
    def _fuse(conv: nn.Conv2d, maps: Iterable[torch.Tensor]) -> torch.Tensor:
        """Apply a channel-wise fusion ``conv`` (grouped 1×1, weight ``[C, n, 1, 1]``) to ``n`` maps of ``C``
        channels, as an in-place weighted sum (no stacked copy, one output buffer). ``maps`` may be a generator:
        each map is dropped before the next is asked for (the per-scale backward folds scale outputs one by one)."""
        w = conv.weight[:, :, 0, 0]  # [C, n]
        out: torch.Tensor | None = None
        for i, m in enumerate(maps):
            wi = w[:, i].view(1, -1, 1, 1).to(m.dtype)
            if out is None:
                out = torch.addcmul(conv.bias.view(1, -1, 1, 1).to(m.dtype), m, wi)  # type: ignore[union-attr]
            else:
                out.addcmul_(m, wi)
            del m
        if out is None:
            raise ValueError("nothing to fuse")
        return out

    def forward_scale(self, taps: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Logits ``Tensor[B, C, *size]`` of one pyramid scale from its tap tensors.

        Equals ``layer_fuse`` over the upsampled skip scores, computed without one full-resolution map per tap:
        the fusion is a per-channel weighted sum and bilinear interpolation is linear, so each tap's fusion
        weight (and the fusion bias: a constant map stays constant) is folded into its 1×1 skip conv, taps of
        equal resolution are summed *before* upsampling (VGG's conv4_3, conv5_3 and fc7 share stride 8: one
        interpolation instead of three), and the upsampled maps are accumulated in place. Nothing at full
        resolution is saved for backward (interpolation and addition need no inputs), so a branch's memory is
        its outputs and its losses. Same parameters; equal up to float summation order.
        """
        by_res: dict[tuple[int, int], torch.Tensor] = {}
        self._add_folded_scores(by_res, taps, None, self.layer_fuse.bias)  # type: ignore[arg-type]
        return self._accumulate_upsampled(by_res, size)

    def _add_folded_scores(self, by_res: dict[tuple[int, int], torch.Tensor], taps: Sequence[torch.Tensor],
                           scale_weight: torch.Tensor | None, extra_bias: torch.Tensor) -> None:
        """Add each tap's skip score, with the layer-fusion weight (times ``scale_weight`` ``[C]``, when given)
        folded into the 1×1 conv, into ``by_res`` under its resolution (in place); ``extra_bias`` ``[C]`` goes
        into the first tap's bias."""
        wl = self.layer_fuse.weight[:, :, 0, 0]  # [C, n taps]
        for k, (block, conv, i) in enumerate(zip(self.blocks, self.skips, self.tap_index)):
            wk = wl[:, k] if scale_weight is None else wl[:, k] * scale_weight
            bias = conv.bias * wk  # type: ignore[operator]
            if k == 0:
                bias = bias + extra_bias
            # Folding stays exact with a block: the fusion weights scale the *last* (linear) layer only.
            score = F.conv2d(block(taps[i]), conv.weight * wk.view(-1, 1, 1, 1), bias)
            key = (int(score.shape[-2]), int(score.shape[-1]))
            if key in by_res:
                by_res[key].add_(score)
            else:
                by_res[key] = score

    @staticmethod
    def _accumulate_upsampled(by_res: dict[tuple[int, int], torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Sum of score maps given per resolution, each bilinearly resampled to ``size`` unless already there.

        Where :func:`~ubernet.ops.resample.matmul_pays`, the resampled maps are summed by two matrix products
        (:func:`~ubernet.ops.resample.resample_sum`: 2-4x faster forward + backward than one ``F.interpolate``
        and one addition per map on CPU) and the maps already at ``size`` are added to that; otherwise each map
        is interpolated and accumulated in place into the first one, in insertion order."""
        size = (int(size[0]), int(size[1]))
        others = [score for key, score in by_res.items() if key != size]
        if matmul_pays(others, size[0]):
            summed = resample_sum(others, size)
            for key, score in by_res.items():
                if key == size:
                    summed.add_(score)
            return summed
        out: torch.Tensor | None = None
        for key, score in by_res.items():
            if key != size:
                score = F.interpolate(score, size=size, mode="bilinear", align_corners=False)
            out = score if out is None else out.add_(score)
        assert out is not None
        return out

    def forward_fused(self, feats: Sequence[Sequence[torch.Tensor]], size: tuple[int, int]) -> torch.Tensor:
        """The scale-fused logits ``Tensor[B, C, *size]`` straight from every scale's taps, without the
        per-scale maps: equals ``scale_fuse`` over :meth:`forward_scale` of each scale (up to float summation
        order).

        Scale fusion, like layer fusion, is a per-channel weighted sum, and bilinear interpolation is linear, so
        the scale weight is folded into the skip convs too (weight ``E_k · F_k · S_s`` for tap ``k`` of scale
        ``s``; the fusion biases go into one bias), and score maps of *equal resolution* are summed before
        upsampling, across taps and across scales: with the paper's pyramid (1, 1/2, 1/4) and VGG-16, conv3_3
        of scale 1, conv2_2 of scale 1/2 and conv1_2 of scale 1/4 share one grid (and so on down), so a stride-1
        task upsamples 5 maps instead of 11 and writes no per-scale full-resolution map.
        """
        assert self.scale_fuse is not None
        ws = self.scale_fuse.weight[:, :, 0, 0]  # [C, n scales]
        by_res: dict[tuple[int, int], torch.Tensor] = {}
        for s, taps in enumerate(feats):
            extra = self.layer_fuse.bias * ws[:, s]  # type: ignore[operator]
            if s == 0:
                extra = extra + self.scale_fuse.bias  # type: ignore[operator]
            self._add_folded_scores(by_res, taps, ws[:, s], extra)
        return self._accumulate_upsampled(by_res, size)

    def forward(
        self,
        feats: Sequence[Sequence[torch.Tensor]],
        *,
        image_hw: tuple[int, int],
        image_sizes: Sequence[tuple[int, int]] | None = None,
        targets: object = None,
    ) -> DenseOutput:
        """Per-scale and fused logits. Without autograd (inference) the fused logits are computed directly by
        :meth:`forward_fused` and the per-scale ones only if ``output.scales`` is read (same values either
        way); with autograd both are computed as the paper defines them (the losses need every scale)."""
        size = output_size(image_hw, self.out_stride)
        if self.scale_fuse is not None and len(feats) != self.num_scales:
            raise ValueError(f"head built for {self.num_scales} scales got {len(feats)}")
        if self.scale_fuse is not None and not torch.is_grad_enabled():
            taps = [list(t) for t in feats]
            return DenseOutput(fused=self.forward_fused(taps, size),
                               scales_fn=lambda: [self.forward_scale(t, size) for t in taps])
        scales = [self.forward_scale(taps, size) for taps in feats]
        if self.scale_fuse is None:
            fused = scales[0]
        else:
            fused = self._fuse(self.scale_fuse, scales)  # type: ignore[arg-type]
        return DenseOutput(scales=scales, fused=fused)
