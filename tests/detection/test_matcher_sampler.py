"""Matcher thresholds, low-quality matches, difficult boxes, and the balanced sampler's counts."""

from __future__ import annotations

import torch

from ubernet.detection import BalancedSampler, Matcher, match_with_difficult

NEG, IGN = Matcher.NEGATIVE, Matcher.IGNORE


def test_rpn_thresholds_on_designed_iou() -> None:
    # 2 gt x 6 anchors
    iou = torch.tensor(
        [
            [0.80, 0.69, 0.30, 0.29, 0.00, 0.10],
            [0.10, 0.75, 0.20, 0.00, 0.00, 0.50],
        ]
    )
    m = Matcher(0.7, 0.3)(iou)
    # a0 -> gt0 (.80); a1 -> gt1 (.75 beats .69); a2 .30 in [.3, .7) ignored; a3 .29 negative; a4 negative;
    # a5 best .50 ignored
    assert m.tolist() == [0, 1, IGN, NEG, NEG, IGN]
    # low-quality: gt1's best is a1 (.75, already positive); gt0's best a0. Add a gt whose best is only .5:
    iou2 = torch.cat((iou, torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 0.5]])))
    m2 = Matcher(0.7, 0.3, allow_low_quality_matches=True)(iou2)
    # a5 is claimed by gt2 (its best, .5); the element is matched to *its* best box: gt1 and gt2 tie at .5 and
    # max() returns the first, gt1
    assert m2.tolist() == [0, 1, IGN, NEG, NEG, 1]


def test_low_quality_ignores_boxes_that_overlap_nothing() -> None:
    iou = torch.tensor([[0.0, 0.0, 0.0]])
    assert Matcher(0.7, 0.3, allow_low_quality_matches=True)(iou).tolist() == [NEG, NEG, NEG]


def test_roi_thresholds_with_background_floor() -> None:
    iou = torch.tensor([[0.5, 0.49, 0.1, 0.09, 0.0]])
    assert Matcher(0.5, 0.5)(iou).tolist() == [0, NEG, NEG, NEG, NEG]
    # Fast R-CNN's background range [0.1, 0.5): below 0.1 ignored
    assert Matcher(0.5, 0.5, negative_low=0.1)(iou).tolist() == [0, NEG, NEG, IGN, IGN]


def test_no_ground_truth_means_all_negative() -> None:
    m = Matcher(0.5, 0.5, negative_low=0.1)(torch.zeros(0, 4))
    assert m.tolist() == [NEG] * 4


def test_difficult_boxes_are_neither_positive_nor_negative() -> None:
    gt = torch.tensor([[0.0, 0, 10, 10], [20.0, 0, 30, 10], [1.0, 0, 11, 10]])
    difficult = torch.tensor([False, True, True])
    elements = torch.tensor(
        [
            [0.0, 0, 10, 10],  # IoU 1 with the ordinary box 0 -> positive 0 (though .82 with difficult box 2)
            [20.0, 0, 30, 10],  # IoU 1 with difficult box 1, 0 with box 0 -> would be negative -> ignored
            [40.0, 0, 50, 10],  # far from everything -> negative
            [21.0, 0, 31, 10],  # IoU 90/110 = .82 with difficult box 1 -> ignored
            [26.0, 0, 36, 10],  # IoU 40/160 = .25 < .3 with difficult box 1 -> negative
            [23.0, 0, 33, 10],  # IoU 70/130 = .54 with box 1: in [.3, .7) -> ignored (as it would be anyway)
        ]
    )
    m = match_with_difficult(Matcher(0.7, 0.3, allow_low_quality_matches=True), gt, difficult, elements)
    assert m.tolist() == [0, IGN, NEG, IGN, NEG, IGN]
    # only difficult boxes: nothing positive (no low-quality match for them either)
    m = match_with_difficult(Matcher(0.7, 0.3, allow_low_quality_matches=True), gt[1:2], difficult[1:2], elements)
    assert m.tolist() == [NEG, IGN, NEG, IGN, NEG, IGN]


def test_sampler_counts() -> None:
    sampler = BalancedSampler(256, 0.5, generator=torch.Generator().manual_seed(0))
    many_pos = torch.cat((torch.zeros(300, dtype=torch.int64), torch.full((1000,), NEG), torch.full((50,), IGN)))
    few_pos = torch.cat((torch.zeros(10, dtype=torch.int64), torch.full((1000,), NEG)))
    no_neg = torch.zeros(500, dtype=torch.int64)
    little = torch.cat((torch.zeros(3, dtype=torch.int64), torch.full((20,), NEG), torch.full((5,), IGN)))
    pos, neg = sampler([many_pos, few_pos, no_neg, little])
    counts = [(int(p.sum()), int(n.sum())) for p, n in zip(pos, neg)]
    # 128 + 128; 10 + 246 (negatives fill up); 128 + 0; everything available: 3 + 20
    assert counts == [(128, 128), (10, 246), (128, 0), (3, 20)]
    for p, n, m in zip(pos, neg, [many_pos, few_pos, no_neg, little]):
        assert (m[p] >= 0).all() and (m[n] == NEG).all() and not (p & n).any()
    # the RoI sampler: 128 with 25 % foreground
    pos, neg = BalancedSampler(128, 0.25)([many_pos])
    assert (int(pos[0].sum()), int(neg[0].sum())) == (32, 96)


def test_sampler_is_deterministic_given_seed() -> None:
    m = torch.cat((torch.zeros(300, dtype=torch.int64), torch.full((1000,), NEG)))
    torch.manual_seed(7)
    a = BalancedSampler(256, 0.5)([m])
    torch.manual_seed(7)
    b = BalancedSampler(256, 0.5)([m])
    assert torch.equal(a[0][0], b[0][0]) and torch.equal(a[1][0], b[1][0])
    c = BalancedSampler(256, 0.5, generator=torch.Generator().manual_seed(1))([m])
    d = BalancedSampler(256, 0.5, generator=torch.Generator().manual_seed(1))([m])
    assert torch.equal(c[0][0], d[0][0])
