"""RPN and RoI losses on seeded fixtures with hand-derived values."""

from __future__ import annotations

import math

import pytest
import torch

from ubernet.detection import DetectionHead, smooth_l1


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_smooth_l1_by_hand() -> None:
    d = torch.tensor([0.05, -0.2, 2.5, 0.0])
    # beta 1/9: 0.5·d²/beta = 4.5·d² below 1/9, else |d| - 1/18; beta 1: 0.5·d² below 1, else |d| - 0.5
    torch.testing.assert_close(
        smooth_l1(d, torch.zeros(4), 1 / 9), torch.tensor([0.01125, 0.2 - 1 / 18, 2.5 - 1 / 18, 0.0])
    )
    torch.testing.assert_close(smooth_l1(d, torch.zeros(4), 1.0), torch.tensor([0.00125, 0.02, 2.0, 0.0]))
    torch.testing.assert_close(smooth_l1(d, torch.zeros(4), 0.0), d.abs())


def tiny_head(**kw) -> DetectionHead:
    # one 16 px anchor per cell at stride 16: on a 2x2 map of a 32x32 image the anchors are exactly the four
    # 16x16 quadrants (0,0,16,16), (16,0,32,16), (0,16,16,32), (16,16,32,32)
    torch.manual_seed(0)
    return DetectionHead(
        in_channels=4,
        feature_stride=16,
        num_classes=1,
        anchor_sizes=(16,),
        aspect_ratios=(1.0,),
        representation_size=8,
        **kw,
    )


def test_rpn_losses_by_hand() -> None:
    head = tiny_head()
    with torch.no_grad():
        head.rpn.head.objectness.weight.zero_()
        head.rpn.head.objectness.bias.fill_(1.0)  # every objectness logit = 1
        head.rpn.head.deltas.weight.zero_()
        head.rpn.head.deltas.bias.copy_(torch.tensor([0.1, -0.2, 0.05, 0.3]))  # every predicted delta
    gt = torch.tensor([[2.0, 0.0, 18.0, 16.0]])
    # IoU with (0,0,16,16): 14·16 / (256 + 256 - 224) = 224/288 = .78 -> positive; (16,0,32,16): 32/480 -> negative;
    # the two lower quadrants: 0 -> negative. All 4 sampled (256 budget).
    targets = [{"boxes": gt, "labels": torch.tensor([1]), "difficult": torch.tensor([False])}]
    head.train()
    _, losses = head(torch.randn(1, 4, 2, 2), [(32, 32)], targets)
    # BCE: positive -log σ(1) = softplus(-1), negatives -log(1 - σ(1)) = softplus(1); mean over the 4 sampled
    assert losses["rpn_objectness"].item() == pytest.approx((softplus(-1) + 3 * softplus(1)) / 4, rel=1e-6)
    # target deltas of the positive: centre 8 -> 10 over width 16: (0.125, 0, 0, 0). Differences to the prediction:
    # 0.025 (4.5·d² = 0.0028125), 0.2 (0.2 - 1/18), 0.05 (0.01125), 0.3 (0.3 - 1/18); sum / 4 sampled
    expected = (4.5 * 0.025**2 + (0.2 - 1 / 18) + 4.5 * 0.05**2 + (0.3 - 1 / 18)) / 4
    assert losses["rpn_box"].item() == pytest.approx(expected, rel=1e-5)


def test_roi_losses_by_hand() -> None:
    head = tiny_head()
    rh = head.roi_heads
    with torch.no_grad():
        for fc in (rh.box_head.fc6, rh.box_head.fc7):
            fc.weight.zero_()
            fc.bias.zero_()
        rh.predictor.cls_score.weight.zero_()
        rh.predictor.cls_score.bias.copy_(torch.tensor([1.0, 0.0]))  # logits (background 1, class-1 0)
        rh.predictor.bbox_pred.weight.zero_()
        # background slot 7s (must never enter the loss), class-1 slot (0.5, 0, 0, -1.5)
        rh.predictor.bbox_pred.bias.copy_(torch.tensor([7.0, 7.0, 7.0, 7.0, 0.5, 0.0, 0.0, -1.5]))
    gt = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    targets = [{"boxes": gt, "labels": torch.tensor([1]), "difficult": torch.tensor([False])}]
    proposals = [torch.tensor([[4.0, 0.0, 20.0, 16.0], [16.0, 16.0, 32.0, 32.0]])]
    # RoIs = proposals + gt: (4,0,20,16) IoU 12·16/320 = .6 -> fg; (16,16,32,32) IoU 0 -> bg; gt itself -> fg.
    losses = rh.losses(torch.randn(1, 4, 2, 2), proposals, targets)
    # CE: fg -log softmax(1, 0)[1] = softplus(1); bg -log softmax(1, 0)[0] = softplus(-1); mean over 3
    assert losses["roi_cls"].item() == pytest.approx((2 * softplus(1) + softplus(-1)) / 3, rel=1e-6)
    # targets with weights (10, 10, 5, 5): proposal centre 12 -> 8 over 16: dx = 10·(-4/16) = -2.5, rest 0;
    # gt: all 0. Differences (pred - target): (3, 0, 0, -1.5) -> 2.5 + 1.0; (0.5, 0, 0, -1.5) -> 0.125 + 1.0
    assert losses["roi_box"].item() == pytest.approx((3.5 + 1.125) / 3, rel=1e-6)


def test_image_without_boxes_has_zero_box_losses() -> None:
    head = tiny_head()
    head.train()
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    _, losses = head(torch.randn(1, 4, 2, 2), [(32, 32)], empty)
    assert set(losses) == {"rpn_objectness", "rpn_box", "roi_cls", "roi_box"}
    assert losses["rpn_box"].item() == 0.0 and losses["roi_box"].item() == 0.0
    assert losses["rpn_objectness"].item() > 0 and losses["roi_cls"].item() > 0  # all negatives, still trained
    sum(losses.values()).backward()


def test_difficult_only_image_has_no_positives() -> None:
    head = tiny_head()
    with torch.no_grad():
        head.rpn.head.objectness.weight.zero_()
        head.rpn.head.objectness.bias.fill_(0.0)  # logit 0: each sampled anchor costs log 2
        head.rpn.head.deltas.weight.zero_()
        head.rpn.head.deltas.bias.fill_(0.3)
    targets = [
        {"boxes": torch.tensor([[0.0, 0, 16, 16]]), "labels": torch.tensor([1]), "difficult": torch.tensor([True])}
    ]
    head.train()
    _, losses = head(torch.randn(1, 4, 2, 2), [(32, 32)], targets)
    # the anchor on the difficult box is ignored, the other three are negatives: BCE log 2 each, no box loss
    assert losses["rpn_objectness"].item() == pytest.approx(math.log(2), rel=1e-6)
    assert losses["rpn_box"].item() == 0.0
    assert losses["roi_box"].item() == 0.0  # the difficult box is not added as a RoI


def test_low_quality_match_uses_the_best_visible_anchor() -> None:
    # stride 16, anchors 16 and 48 px (square) on a 2x2 map of a 32x32 image: every 48 px anchor crosses the border
    # and is ignored. Box (0, 0, 30, 30): its best anchors overall are 48 px ones (IoU 900/2304 = .39); among the
    # visible 16 px anchors the best is (0,0,16,16) with 256/900 = .28 < .3. Faster R-CNN matches after dropping
    # cross-boundary anchors, so that anchor is the box's positive; the other three visible ones (IoU .24, .24,
    # .20) are negatives.
    torch.manual_seed(0)
    head = DetectionHead(
        in_channels=4,
        feature_stride=16,
        num_classes=1,
        anchor_sizes=(16, 48),
        aspect_ratios=(1.0,),
        representation_size=8,
    )
    with torch.no_grad():
        head.rpn.head.objectness.weight.zero_()
        head.rpn.head.objectness.bias.fill_(1.0)
        head.rpn.head.deltas.weight.zero_()
        head.rpn.head.deltas.bias.zero_()
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 30.0, 30.0]]), "labels": torch.tensor([1])}]
    head.train()
    _, losses = head(torch.randn(1, 4, 2, 2), [(32, 32)], targets)
    assert losses["rpn_objectness"].item() == pytest.approx((softplus(-1) + 3 * softplus(1)) / 4, rel=1e-6)
    # positive (0,0,16,16) -> (0,0,30,30): dx = dy = (15 - 8)/16 = 0.4375, dw = dh = log(30/16) = 0.6286;
    # smooth L1 (beta 1/9): |d| - 1/18 each; sum / 4 sampled
    d = math.log(30 / 16)
    assert losses["rpn_box"].item() == pytest.approx((2 * (0.4375 - 1 / 18) + 2 * (d - 1 / 18)) / 4, rel=1e-5)
