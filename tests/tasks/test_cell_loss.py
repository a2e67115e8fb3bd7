"""``loss_resolution: output`` of the label tasks: cross-entropy of the coarse logits against per-cell label counts.

The defining property is pinned against an independent formulation: the per-pixel mean cross-entropy of the
logits upsampled by nearest neighbour (``repeat_interleave``), in float64, values and gradients; the counts and a
small case are derived by hand.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ubernet.errors import ConfigError
from ubernet.tasks import losses as L
from ubernet.tasks.base import build_task


def test_cell_counts_by_hand() -> None:
    # 3×5 labels, stride 2: cells (2 rows × 3 cols); the last row / column of cells are partial.
    labels = torch.tensor([[0, 0, 1, 2, 2],
                           [0, 255, 1, 1, 2],
                           [1, 1, 0, 255, 255]]).view(1, 1, 3, 5)
    counts = L.cell_label_counts(labels, 2, 3)
    assert counts.shape == (1, 3, 2, 3)
    # cell (0, 0): 0, 0, 0 (+ ignored); (0, 1): 1, 2, 1, 1 -> one 2, three 1s; (0, 2): 2, 2
    # cell (1, 0): 1, 1; (1, 1): 0 (+ ignored); (1, 2): ignored only
    want = torch.tensor([[[3, 0, 0], [0, 1, 0]],
                         [[0, 3, 0], [2, 0, 0]],
                         [[0, 1, 2], [0, 0, 0]]], dtype=torch.float32)
    torch.testing.assert_close(counts[0], want)
    with pytest.raises(ValueError, match=r"labels outside 0\.\.2"):
        L.cell_label_counts(torch.full((1, 1, 2, 2), 3), 2, 3)


def test_cell_loss_by_hand() -> None:
    # One cell of 2×2 pixels, two classes: labels (0, 0, 1, ignored); logits (0, log 3): softmax (1/4, 3/4).
    # Three valid pixels: L = (2 (log 4 - 0) + (log 4 - log 3)) / 3; dL/dx = (3 softmax - (2, 1)) / 3
    # = ((3/4 - 2) / 3, (9/4 - 1) / 3) = (-5/12, 5/12).
    task = build_task("semseg", num_classes=2, out_stride=2, loss_resolution="output")
    labels = torch.tensor([[0, 0], [1, 255]]).view(1, 1, 2, 2)
    x = torch.tensor([0.0, math.log(3)], dtype=torch.float64).view(1, 2, 1, 1).requires_grad_(True)
    value = task.pixel_loss(task.to_target_size(x, labels), labels)
    assert value.item() == pytest.approx((3 * math.log(4) - math.log(3)) / 3, rel=1e-14)
    value.sum().backward()
    torch.testing.assert_close(x.grad.flatten(), torch.tensor([-5 / 12, 5 / 12], dtype=torch.float64))


@pytest.mark.parametrize("stride", [2, 4])
@pytest.mark.parametrize("weights", [None, [0.5, 2.0, 1.0, 3.0]])
def test_cell_loss_is_the_loss_of_nearest_upsampled_logits(stride, weights) -> None:
    g = torch.Generator().manual_seed(0)
    task = build_task("semseg", num_classes=4, out_stride=stride, loss_resolution="output", class_weights=weights)
    labels = torch.randint(0, 4, (3, 1, 18, 13), generator=g)  # not multiples of the stride: partial cells
    labels[0, 0, :5] = 255
    labels[2] = 255  # nothing valid: loss and gradient 0
    h, w = -(-18 // stride), -(-13 // stride)
    full = torch.randn(3, 4, h + 1, w + 2, generator=g, dtype=torch.float64) * 2  # the head's padded output
    x1 = full.clone().requires_grad_(True)
    x2 = full.clone().requires_grad_(True)
    got = task.pixel_loss(task.to_target_size(x1, labels), labels)
    up = x2.repeat_interleave(stride, 2).repeat_interleave(stride, 3)[..., :18, :13]
    wt = None if weights is None else torch.tensor(weights, dtype=torch.float64)
    want = torch.stack([F.cross_entropy(up[i:i + 1], labels[i:i + 1, 0], weight=wt, ignore_index=255)
                        if bool((labels[i] != 255).any()) else up.new_zeros(()) for i in range(3)])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    coef = torch.tensor([0.7, -1.3, 2.0], dtype=torch.float64)
    (got * coef).sum().backward()
    (want * coef).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-10, atol=1e-13)
    assert float(x1.grad[2].abs().sum()) == 0


def test_full_resolution_is_the_default_and_output_at_stride_one_is_the_same() -> None:
    task = build_task("parts", num_classes=3)
    assert task.loss_resolution == "full" and task.lean_pixel_loss() is not None
    s1 = build_task("parts", num_classes=3, out_stride=1, loss_resolution="output")
    assert s1.lean_pixel_loss() is not None  # stride 1: the cells are the pixels
    assert build_task("parts", num_classes=3, loss_resolution="output").lean_pixel_loss() is None
    with pytest.raises(ConfigError, match=r"parts.loss_resolution must be 'full' or 'output'"):
        build_task("parts", num_classes=3, loss_resolution="half")
