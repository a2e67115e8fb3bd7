"""Cached low-precision weights for autocast inference: bit-identical to autocast, refreshed on updates, never
used with autograd or kept in training mode."""

from __future__ import annotations

import torch
from torch import nn

from ubernet.detection.roi_heads import FastRCNNPredictor, TwoFCHead
from ubernet.detection.rpn import RPNHead
from ubernet.ops import lowp


def test_cached_linear_and_conv_equal_autocast_bitwise() -> None:
    torch.manual_seed(0)
    lin, conv = nn.Linear(40, 24), nn.Conv2d(8, 6, 3, padding=2, dilation=2)
    cache = lowp.WeightCache()
    x, img = torch.randn(5, 40), torch.randn(2, 8, 9, 11)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        for _ in range(2):  # second call: from the cache
            assert torch.equal(lowp.linear(lin, x, cache), lin(x))
            assert torch.equal(lowp.conv2d(conv, img, cache), conv(img))
            assert lowp.linear(lin, x, cache).dtype == torch.bfloat16
    assert len(cache) == 4  # two weights, two biases


def test_cache_follows_in_place_updates_and_is_unused_with_autograd_or_without_autocast() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(16, 4)
    cache = lowp.WeightCache()
    x = torch.randn(3, 16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        before = lowp.linear(lin, x, cache)
        lin.weight.mul_(2)  # an optimiser step / load_state_dict: the version changes
        after = lowp.linear(lin, x, cache)
        assert torch.equal(after, lin(x)) and not torch.equal(before, after)
    y = lowp.linear(lin, x, cache)  # no autocast: plain fp32 layer
    assert y.dtype == torch.float32 and torch.equal(y, lin(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autograd on: autocast's own path, differentiable
        z = lowp.linear(lin, x, cache)
        assert z.requires_grad and torch.equal(z, lin(x))


def test_detection_layers_use_the_cache_in_inference_and_drop_it_in_training() -> None:
    from torch.utils._pytree import tree_leaves

    torch.manual_seed(0)
    rpn, fc, pred = RPNHead(8, 3), TwoFCHead(8 * 2 * 2, 16), FastRCNNPredictor(16, 4)
    feats, rois = torch.randn(1, 8, 6, 7), torch.randn(5, 8, 2, 2)
    for m in (rpn, fc, pred):
        m.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = tree_leaves((rpn(feats), pred(fc(rois))))  # autograd on: plain autocast, no cache
        assert len(rpn.lowp) == len(fc.lowp) == len(pred.lowp) == 0
        with torch.inference_mode():
            got = [tree_leaves((rpn(feats), pred(fc(rois)))) for _ in range(2)]
    for run in got:
        for a, b in zip(run, ref):
            assert a.dtype == torch.bfloat16 and torch.equal(a, b.detach())
    assert len(rpn.lowp) == 6 and len(fc.lowp) == 4 and len(pred.lowp) == 4
    fc.train()
    assert len(fc.lowp) == 0
