"""The dense head's inference path (``forward_fused``: scale fusion folded into the skip convs, equal-resolution
maps of all taps and scales summed before one upsampling each) equals the paper's definition."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ubernet.models.heads import DenseHead, DenseOutput
from ubernet.models.trunks.base import TapSpec

# strides 1, 2, 4, 4 (two taps share a grid) and a 3-level pyramid on an image whose sides are not powers of 2:
# scale 1 at stride 2 and scale 1/2 at stride 1 share a grid, as VGG-16's conv2_2 and conv1_2 do
SPECS = [TapSpec("a", 4, 1), TapSpec("b", 6, 2), TapSpec("c", 5, 4), TapSpec("d", 3, 4)]
H, W = 20, 28
SCALES = (1.0, 0.5, 0.25)


def _taps(dtype: torch.dtype, requires_grad: bool = False) -> list[list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    out = []
    for s in SCALES:
        h, w = round(H * s), round(W * s)
        out.append([torch.randn(2, t.channels, -(-h // t.stride), -(-w // t.stride), generator=gen, dtype=dtype)
                    .requires_grad_(requires_grad) for t in SPECS])
    return out


def _head(dtype: torch.dtype, out_stride: int = 1, hidden: int = 0) -> DenseHead:
    """``hidden`` > 0: the nonlinear block on the stride-4 taps c and d (the folding must not touch it)."""
    torch.manual_seed(0)
    head = DenseHead(taps=SPECS, out_channels=3, out_stride=out_stride, num_scales=len(SCALES), hidden=hidden,
                     hidden_min_stride=4).to(dtype)
    for p in head.parameters():
        torch.nn.init.normal_(p)
    return head


def _reference(head: DenseHead, feats: list[list[torch.Tensor]], size: tuple[int, int]) -> torch.Tensor:
    """Paper Fig. 2, literally: upsample every tap's skip score, grouped 1×1 layer fusion over the interleaved
    stack, then grouped 1×1 scale fusion over the per-scale outputs."""
    per_scale = []
    for taps in feats:
        maps = []
        for block, conv, i in zip(head.blocks, head.skips, head.tap_index):
            m = conv(block(taps[i]))
            if m.shape[-2:] != size:
                m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
            maps.append(m)
        per_scale.append(head.layer_fuse(torch.stack(maps, dim=2).flatten(1, 2)))
    assert head.scale_fuse is not None
    return head.scale_fuse(torch.stack(per_scale, dim=2).flatten(1, 2)), per_scale


@pytest.mark.parametrize(("out_stride", "hidden"), [(1, 0), (2, 0), (1, 5)])
def test_inference_fused_equals_paper_definition(out_stride: int, hidden: int) -> None:
    head = _head(torch.float64, out_stride, hidden)
    feats = _taps(torch.float64)
    size = (-(-H // out_stride), -(-W // out_stride))
    want, want_scales = _reference(head, feats, size)
    with torch.no_grad():
        out = head(feats, image_hw=(H, W))
        assert out._scales is None  # not computed unless asked for
        torch.testing.assert_close(out.fused, want, rtol=1e-12, atol=1e-12)
        assert len(out.scales) == len(SCALES)  # computed on first access, equal to the definition too
        for got, ref in zip(out.scales, want_scales):
            torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("hidden", [0, 5])
def test_inference_path_equals_training_path_fp32(hidden: int) -> None:
    head = _head(torch.float32, hidden=hidden)
    feats = _taps(torch.float32)
    train_out = head(feats, image_hw=(H, W))  # autograd on: every scale, then scale fusion
    assert train_out._scales is not None
    with torch.inference_mode():
        infer_out = head(feats, image_hw=(H, W))
    scale = train_out.fused.detach().abs().max()
    torch.testing.assert_close(infer_out.fused, train_out.fused.detach(), rtol=1e-5, atol=1e-5 * float(scale))
    for a, b in zip(infer_out.scales, train_out.scales):
        torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-5 * float(scale))


def test_inference_path_under_bf16_autocast_is_close() -> None:
    head = _head(torch.float32)
    feats = _taps(torch.float32)
    want, _ = _reference(head, feats, (H, W))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = head(feats, image_hw=(H, W)).fused.float()
    assert ((got - want).abs().max() / want.abs().max()) < 0.05


def test_dense_output_needs_fused_and_scales() -> None:
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(TypeError):
        DenseOutput(fused=x)
    assert DenseOutput(scales=[x], fused=x).scales == [x]
    calls = []
    out = DenseOutput(fused=x, scales_fn=lambda: calls.append(1) or [x, x])
    assert out.scales == [x, x] and out.scales == [x, x] and calls == [1]


def test_hidden_block_only_on_deep_taps() -> None:
    head = DenseHead(taps=SPECS, out_channels=3, hidden=7, hidden_min_stride=4)
    has_block = [isinstance(b, torch.nn.Sequential) for b in head.blocks]
    assert has_block == [False, False, True, True]  # strides 1, 2, 4, 4
    assert [c.in_channels for c in head.skips] == [4, 6, 7, 7]
    linear = DenseHead(taps=SPECS, out_channels=3)
    assert not any(k.startswith("blocks.") for k in linear.state_dict())  # the paper's head: keys unchanged
