"""DetectionHead end to end: output format, gradients, padded batches of different sizes, determinism, errors."""

from __future__ import annotations

import pytest
import torch

from ubernet.detection import DetectionHead

C = 8  # feature channels


def make_head(**kw) -> DetectionHead:
    torch.manual_seed(0)
    opts = dict(
        in_channels=C,
        feature_stride=8,
        num_classes=3,
        anchor_sizes=(16, 32, 64),
        representation_size=32,
        rpn_pre_nms_top_n=(600, 300),
        rpn_post_nms_top_n=(200, 100),
    )
    opts.update(kw)
    return DetectionHead(**opts)


def targets_for(boxes: list[list[float]], labels: list[int], difficult: list[bool] | None = None) -> dict:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "difficult": torch.tensor(difficult or [False] * len(labels)),
    }


@pytest.mark.parametrize("pooler", ["align", "pool"])
def test_gradient_reaches_every_parameter(pooler: str) -> None:
    head = make_head(pooler=pooler)
    head.train()
    feats = torch.randn(2, C, 16, 16, requires_grad=True)
    targets = [targets_for([[10, 12, 50, 44], [70, 60, 120, 118]], [1, 3]), targets_for([[30, 30, 70, 60]], [2])]
    _, losses = head(feats, [(128, 128), (120, 100)], targets)
    assert set(losses) == {"rpn_objectness", "rpn_box", "roi_cls", "roi_box"}
    sum(losses.values()).backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    assert feats.grad is not None and feats.grad.abs().sum() > 0


def test_eval_output_format() -> None:
    head = make_head(score_thresh=0.0, detections_per_img=50)
    head.eval()
    dets, losses = head(torch.randn(2, C, 16, 16), [(128, 128), (100, 90)])
    assert losses == {} and len(dets) == 2
    for d, (h, w) in zip(dets, [(128, 128), (100, 90)]):
        n = d["boxes"].shape[0]
        assert d["boxes"].shape == (n, 4) and d["scores"].shape == (n,) and d["labels"].shape == (n,)
        assert 0 < n <= 50 and d["labels"].dtype == torch.int64
        assert d["labels"].min() >= 1 and d["labels"].max() <= 3
        b = d["boxes"]
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        assert (d["scores"][:-1] >= d["scores"][1:]).all()
    # training mode returns detections only when asked
    head.train()
    dets, _ = head(torch.randn(1, C, 16, 16), [(128, 128)])
    assert dets == []
    dets, _ = head(torch.randn(1, C, 16, 16), [(128, 128)], return_detections=True)
    assert len(dets) == 1


def test_padded_batch_of_different_sizes_matches_single_images() -> None:
    # Image B is 100x90: its trunk features are 13x12 at stride 8; in the batch they sit top-left in a 16x16
    # canvas padded with zeros. Anchors whose centre is in the padding never become proposals, proposals are
    # clipped to each image's real size, so B's detections must not change (A fills the canvas).
    head = make_head(score_thresh=0.0)
    head.eval()
    gen = torch.Generator().manual_seed(3)
    fa = torch.randn(1, C, 16, 16, generator=gen)
    fb = torch.randn(1, C, 13, 12, generator=gen)
    batch = torch.zeros(2, C, 16, 16)
    batch[0] = fa[0]
    batch[1, :, :13, :12] = fb[0]
    both, _ = head(batch, [(128, 128), (100, 90)])
    alone_a, _ = head(fa, [(128, 128)])
    alone_b, _ = head(fb, [(100, 90)])
    for got, want in ((both[0], alone_a[0]), (both[1], alone_b[0])):
        assert got["boxes"].shape == want["boxes"].shape
        torch.testing.assert_close(got["boxes"], want["boxes"], atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(got["scores"], want["scores"], atol=1e-5, rtol=1e-5)
        assert torch.equal(got["labels"], want["labels"])
    assert (both[1]["boxes"][:, 2] <= 90).all() and (both[1]["boxes"][:, 3] <= 100).all()


def test_padding_does_not_change_training_losses() -> None:
    head = make_head()
    head.train()
    gen = torch.Generator().manual_seed(4)
    fb = torch.randn(1, C, 13, 12, generator=gen)
    padded = torch.zeros(1, C, 16, 16)
    padded[0, :, :13, :12] = fb[0]
    t = [targets_for([[20, 30, 60, 80]], [2])]
    torch.manual_seed(11)
    _, plain = head(fb, [(100, 90)], t)
    torch.manual_seed(11)
    _, pad = head(padded, [(100, 90)], t)
    for k in plain:
        torch.testing.assert_close(pad[k], plain[k], atol=1e-5, rtol=1e-5)


def test_deterministic_given_seed() -> None:
    feats = torch.randn(1, C, 16, 16)
    t = [targets_for([[10, 12, 50, 44], [70, 60, 120, 118]], [1, 3], [False, True])]
    results = []
    for _ in range(2):
        head = make_head()
        head.train()
        torch.manual_seed(5)
        _, losses = head(feats, [(128, 128)], t)
        results.append(torch.stack(list(losses.values())))
    assert torch.equal(results[0], results[1])


def test_cross_boundary_anchors_are_ignored_in_training() -> None:
    # stride 16, one 32 px anchor per cell, 2x2 map of a 32x32 image: every anchor crosses the image border
    # (centres 8 and 24). With allowed_border 0 nothing is sampled -> zero losses; with inf they are used.
    kw = dict(
        in_channels=C, feature_stride=16, num_classes=1, anchor_sizes=(32,), aspect_ratios=(1.0,), representation_size=8
    )
    t = [targets_for([[0, 0, 16, 16]], [1])]
    feats = torch.randn(1, C, 2, 2)
    head = DetectionHead(**kw)
    head.train()
    _, losses = head(feats, [(32, 32)], t)
    assert losses["rpn_objectness"].item() == 0.0 and losses["rpn_box"].item() == 0.0
    head = DetectionHead(**kw, rpn_allowed_border=float("inf"))
    head.train()
    _, losses = head(feats, [(32, 32)], t)
    assert losses["rpn_objectness"].item() > 0.0 and losses["rpn_box"].item() > 0.0


def test_bad_targets_fail_clearly() -> None:
    head = make_head()
    head.train()
    feats = torch.randn(1, C, 16, 16)
    with pytest.raises(ValueError, match="labels must lie in 1..3"):
        head(feats, [(128, 128)], [targets_for([[0, 0, 10, 10]], [0])])
    with pytest.raises(ValueError, match="x2 > x1"):
        head(feats, [(128, 128)], [targets_for([[10, 0, 5, 10]], [1])])
    with pytest.raises(ValueError, match="image_sizes has 2 entries"):
        head(feats, [(128, 128), (64, 64)])
    with pytest.raises(ValueError, match="pooler"):
        make_head(pooler="max")
