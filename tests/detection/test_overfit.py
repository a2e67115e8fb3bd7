"""Overfit check: a small trunk + DetectionHead trained for 150 steps on 4 synthetic images detects their objects
(VOC mAP >= 0.9 on those images, with the project's VOC metric).

Data: the first 4 ``voc-like`` samples of the synthetic world at 128x128 (2-7 objects each, 9 classes, some
difficult, several touching the image border). Trunk: a 4-layer conv stack at stride 8 with GroupNorm (batch
statistics would make train and eval modes disagree on a 4-image problem). Single-threaded (see conftest.py).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ubernet.data.synth import CLASSES, generate
from ubernet.detection import DetectionHead
from ubernet.metrics.voc import VOCDetectionMetric, from_continuous

SIZE = 128


def conv_block(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(4, cout), nn.ReLU()]


def test_overfit_four_synthetic_images_reaches_map_090() -> None:
    samples = [generate(seed, source="voc-like", size=(SIZE, SIZE)) for seed in range(4)]
    images = torch.stack([torch.from_numpy(s.image).permute(2, 0, 1).float() / 255 for s in samples])
    targets = [
        {
            "boxes": torch.from_numpy(s.targets["boxes"]).float(),
            "labels": torch.from_numpy(s.targets["labels"]).long(),
            "difficult": torch.from_numpy(s.targets["difficult"]),
        }
        for s in samples
    ]
    torch.manual_seed(0)
    trunk = nn.Sequential(*conv_block(3, 16, 2), *conv_block(16, 32, 2), *conv_block(32, 32, 2), *conv_block(32, 32, 1))
    head = DetectionHead(
        in_channels=32,
        feature_stride=8,
        num_classes=len(CLASSES) - 1,
        anchor_sizes=(16, 32, 64),
        representation_size=128,
        rpn_batch_size_per_image=128,
        rpn_pre_nms_top_n=(600, 600),
        rpn_post_nms_top_n=(150, 100),
        roi_batch_size_per_image=64,
    )
    steps = 150
    opt = torch.optim.Adam([*trunk.parameters(), *head.parameters()], lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.15)
    sizes = [(SIZE, SIZE)] * len(samples)
    trunk.train()
    head.train()
    for _ in range(steps):
        _, losses = head(trunk(images), sizes, targets)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
        sched.step()
    trunk.eval()
    head.eval()
    with torch.no_grad():
        detections, _ = head(trunk(images), sizes)
    metric = VOCDetectionMetric(CLASSES[1:])
    for s, d in zip(samples, detections):
        t = s.targets
        metric.update(
            s.id,
            from_continuous(d["boxes"].numpy()),
            d["scores"].numpy(),
            d["labels"].numpy(),
            from_continuous(t["boxes"]),
            t["labels"],
            np.asarray(t["difficult"], bool),
        )
    result = metric.compute()
    assert result["map_voc10"] >= 0.9, result["ap_voc10"]
    assert result["map_voc07"] >= 0.9, result["ap_voc07"]
